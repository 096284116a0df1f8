"""tools/lint_lua.py: passes the real scripts, and rejects each kind of bad script."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOL = REPO / "tools" / "lint_lua.py"

HEADER = """\
-- demo: a script for the lint tests.
--
-- KEYS[1] first   a key
-- KEYS[2] second  another key
-- ARGV[1] a value
-- Returns: 1
"""


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("lint_lua", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lint_lua"] = module
    spec.loader.exec_module(module)
    return module


lint = _load()


@pytest.fixture
def lua_dir(tmp_path: Path) -> Path:
    (tmp_path / "includes").mkdir()
    (tmp_path / "includes" / "helper.lua").write_text(
        "-- helper: reads a key it is given.\nlocal function helper(key)\n"
        "  return redis.call('GET', key)\nend\n"
    )
    return tmp_path


def problems(lua_dir: Path, body: str, *, header: str = HEADER) -> list[str]:
    (lua_dir / "demo.lua").write_text(header + body)
    found: list[str] = lint.lint_dir(lua_dir)
    return found


GOOD_BODY = """\
--@include helper
local first = KEYS[1]
local function touch(key, value)
  redis.call('SET', key, value)
end
touch(first, ARGV[1])
redis.call('HSET', KEYS[2], 'field', helper(first) .. ':suffix')
redis.pcall('DEL', first, KEYS[2])
-- a comment naming KEYS[9] and a string 'KEYS[9]' are not uses
local text = 'KEYS[9]'
return 1
"""


def test_real_scripts_pass() -> None:
    assert lint.lint_dir(REPO / "lua") == []


def test_good_script_passes(lua_dir: Path) -> None:
    assert problems(lua_dir, GOOD_BODY) == []


def test_command_line_exit_status(lua_dir: Path) -> None:
    ok = subprocess.run([sys.executable, str(TOOL)], capture_output=True, text=True, check=False)
    assert (ok.returncode, ok.stdout) == (0, "")
    (lua_dir / "demo.lua").write_text(HEADER + "return redis.call('GET', 'literal')\n")
    bad = subprocess.run(
        [sys.executable, str(TOOL), str(lua_dir)], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 1
    assert "demo.lua:7: key 'literal' is a string literal" in bad.stdout
    assert "problem(s)" in bad.stderr


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (HEADER.replace("-- demo: a script", "-- a script"), "header must open with '-- demo:"),
        (HEADER.replace("-- demo:", "-- other:"), "header must open with '-- demo:"),
        (HEADER.replace("KEYS[2]", "KEYS[3]"), r"numbered 1..n, got [1, 3]"),
        (HEADER.replace("-- ARGV[1] a value\n", ""), "header has no ARGV lines"),
        (HEADER.replace("-- Returns: 1\n", ""), "no '-- Returns:' line"),
        ("-- demo: no keys.\n-- ARGV: none\n-- Returns: 1\n", "header declares no KEYS"),
        (HEADER.replace("KEYS[1] first", "KEYS[1..] first"), "must be the last KEYS line"),
    ],
)
def test_bad_header_is_rejected(lua_dir: Path, header: str, message: str) -> None:
    found = problems(lua_dir, "redis.call('GET', KEYS[1])\nreturn KEYS[2]\n", header=header)
    assert any(message in p for p in found), found


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("redis.call('GET', 'rqs:{q}:msg')", "is a string literal"),
        ("redis.call('GET', KEYS[1] .. ':x')", "built by concatenation"),
        ("local k = KEYS[1]\nredis.call('GET', k .. ARGV[1])", "built by concatenation"),
        ("local k = KEYS[1] .. ':x'\nredis.call('GET', k)", "does not come from KEYS"),
        ("local k = KEYS[1]\nlocal j = k .. ':x'\nreturn j", "built by concatenation"),
        ("redis.call('GET', ARGV[1])", "ARGV [ 1 ] does not come from KEYS"),
        ("local k = ARGV[1]\nredis.call('GET', k)", "k does not come from KEYS"),
        ("redis.call('GET', KEYS[3])", "KEYS[3] is beyond the 2 keys declared"),
        ("redis.call('GET', KEYS[0])", "KEYS[0] is beyond"),
        ("redis.call('GET', KEYS[tonumber(ARGV[1])])", "computed KEYS index needs a variadic"),
        ("return #KEYS", "#KEYS needs a variadic"),
        ("local cmd = 'GET'\nredis.call(cmd, KEYS[1])", "command name as a string literal"),
        ("redis.call('FROBNICATE', KEYS[1])", "unknown command FROBNICATE"),
        ("redis.call('DEL', KEYS[1], 'other')", "'other' is a string literal"),
        ("local k = KEYS[1]\nk = 'x'\nredis.call('GET', k)", "alias 'k' is reassigned"),
        ("local function f(key)\n  return 1\nend\nredis.call('GET', key)", "key does not come"),
        ("--@include nothere", "--@include nothere: no file includes/nothere.lua"),
    ],
)
def test_bad_key_use_is_rejected(lua_dir: Path, body: str, message: str) -> None:
    found = problems(lua_dir, body + "\nreturn {KEYS[1], KEYS[2]}\n")
    assert any(message in p for p in found), found


def test_declared_key_never_used_is_rejected(lua_dir: Path) -> None:
    assert problems(lua_dir, "return redis.call('GET', KEYS[1])\n") == [
        f"{lua_dir / 'demo.lua'}:1: KEYS[2] is declared but never used"
    ]


def test_variadic_header_allows_computed_index(lua_dir: Path) -> None:
    header = HEADER.replace("KEYS[2] second", "KEYS[2..] second")
    body = "redis.call('GET', KEYS[1])\nfor i = 2, #KEYS do\n  redis.call('DEL', KEYS[i])\nend\n"
    assert problems(lua_dir, body, header=header) == []


@pytest.mark.parametrize(
    ("include", "message"),
    [
        ("local function f()\n  return redis.call('GET', KEYS[1])\nend\n", "never from KEYS"),
        ("-- f: reads.\nlocal function f(a)\n  return redis.call('GET', b)\nend\n", "b does not"),
        ("-- f: reads.\nlocal function f()\n  return redis.call('GET', 'k')\nend\n", "literal"),
        ("local x = 1\n", "an include opens with a comment"),
        ("-- f: nests.\n--@include missing\n", "--@include missing: no file"),
    ],
)
def test_bad_include_is_rejected(lua_dir: Path, include: str, message: str) -> None:
    (lua_dir / "includes" / "helper.lua").write_text(include)
    found = problems(lua_dir, GOOD_BODY)
    assert any("helper.lua" in p and message in p for p in found), found


def test_asynq_style_key_building_in_a_real_script_is_rejected(lua_dir: Path) -> None:
    source = (REPO / "lua" / "delete.lua").read_text()
    source = source.replace(
        "redis.call('HDEL', msg, id)", "redis.call('DEL', KEYS[1] .. ':t:' .. id)"
    )
    (lua_dir / "delete.lua").write_text(source)
    for include in (REPO / "lua" / "includes").glob("*.lua"):
        (lua_dir / "includes" / include.name).write_text(include.read_text())
    found = lint.lint_dir(lua_dir)
    assert any("delete.lua" in p and "concatenation" in p for p in found), found
