#!/usr/bin/env python3
"""Lint the Lua scripts in ``lua/``: contract headers, and every key a script touches from KEYS.

Rules (each failure is printed as ``file:line: message``; exit status 1 when any is found):

* every ``lua/*.lua`` opens with a contract header: ``-- <name>: <description>``, then
  ``-- KEYS[i] ...`` lines numbered 1..n (the last may be ``KEYS[n..]``: more keys follow),
  ``-- ARGV...`` lines and a ``-- Returns:`` line;
* every key argument of ``redis.call`` / ``redis.pcall`` is ``KEYS[n]``, a top-level local alias
  assigned from ``KEYS[n]`` (never reassigned), or a parameter of an enclosing function; in
  ``lua/includes/*`` only function parameters, since includes have no KEYS of their own;
* no key is a string literal or built by concatenation;
* no ``KEYS`` index above the declared count (a computed index needs a ``KEYS[n..]`` header),
  and every declared key is used;
* every ``--@include`` names an existing ``lua/includes/<name>.lua``.

Redis Cluster and proxies route a script by the keys it declares, so a key built inside the
script can land on another shard; this lint keeps that from slipping in.

Usage: ``python tools/lint_lua.py [LUA_DIR]`` (default: the repository's ``lua/``).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_FIRST = {
    "APPEND", "DECR", "DECRBY", "EXPIRE", "EXPIREAT", "EXPIRETIME", "GET", "GETDEL", "GETEX",
    "GETRANGE", "GETSET", "HDEL", "HEXISTS", "HGET", "HGETALL", "HINCRBY", "HINCRBYFLOAT",
    "HKEYS", "HLEN", "HMGET", "HMSET", "HSCAN", "HSET", "HSETNX", "HSTRLEN", "HVALS", "INCR",
    "INCRBY", "INCRBYFLOAT", "LINDEX", "LINSERT", "LLEN", "LPOP", "LPOS", "LPUSH", "LPUSHX",
    "LRANGE", "LREM", "LSET", "LTRIM", "PERSIST", "PEXPIRE", "PEXPIREAT", "PEXPIRETIME",
    "PFADD", "PSETEX", "PTTL", "RPOP", "RPUSH", "RPUSHX", "SADD", "SCARD", "SET", "SETEX",
    "SETNX", "SETRANGE", "SISMEMBER", "SMEMBERS", "SMISMEMBER", "SPOP", "SRANDMEMBER", "SREM",
    "SSCAN", "STRLEN", "TTL", "TYPE", "XADD", "XDEL", "XLEN", "XRANGE", "XREVRANGE", "XTRIM",
    "ZADD", "ZCARD", "ZCOUNT", "ZINCRBY", "ZMSCORE", "ZPOPMAX", "ZPOPMIN", "ZRANGE", "ZRANGEBYLEX",
    "ZRANGEBYSCORE", "ZRANK", "ZREM", "ZREMRANGEBYRANK", "ZREMRANGEBYSCORE", "ZREVRANGE",
    "ZREVRANGEBYSCORE", "ZREVRANK", "ZSCAN", "ZSCORE",
}  # fmt: skip
_ALL = {"DEL", "EXISTS", "MGET", "TOUCH", "UNLINK"}
_FIRST_TWO = {"COPY", "LMOVE", "RENAME", "RENAMENX", "RPOPLPUSH", "SMOVE", "ZRANGESTORE"}
_NONE = {"PUBLISH", "TIME"}

_TOKEN = re.compile(
    r"""
    (?P<comment>--\[(?P<ceq>=*)\[.*?\](?P=ceq)\]|--[^\n]*)
  | (?P<long>\[(?P<leq>=*)\[.*?\](?P=leq)\])
  | (?P<string>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')
  | (?P<number>0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+)
  | (?P<name>[A-Za-z_]\w*)
  | (?P<op>\.\.\.|\.\.|==|~=|<=|>=|::|//|<<|>>|[^\s])
  | (?P<space>\s+)
    """,
    re.VERBOSE | re.DOTALL,
)
_HEADER_FIRST = re.compile(r"^-- (?P<name>[\w.]+): \S")
_HEADER_KEY = re.compile(r"^-- KEYS\[(?P<n>\d+)(?P<more>\.\.)?\]\s+\S")
_INCLUDE = re.compile(r"^--@include\s+(?P<name>\S+)\s*$", re.MULTILINE)
_BLOCK_OPENERS = {"do", "if", "function", "repeat"}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    line: int


def tokenize(source: str) -> list[Token]:
    """Lua tokens without comments and whitespace; long strings count as strings."""
    tokens: list[Token] = []
    line = 1
    for match in _TOKEN.finditer(source):
        kind = match.lastgroup or "op"
        if kind in ("ceq", "leq"):
            kind = "comment" if match.group("comment") else "long"
        text = match.group(0)
        if kind == "long":
            kind = "string"
        if kind not in ("comment", "space"):
            tokens.append(Token(kind, text, line))
        line += text.count("\n")
    return tokens


@dataclass
class Header:
    keys: int = 0
    """Fixed KEYS declared."""
    variadic: bool = False
    problems: list[tuple[int, str]] = field(default_factory=list)


def parse_header(lines: list[str], stem: str) -> Header:
    """Check the leading comment block of a script and read its KEYS declaration."""
    header = Header()
    block: list[tuple[int, str]] = []
    for number, text in enumerate(lines, 1):
        if not text.startswith("--") or text.startswith("--@include"):
            break
        block.append((number, text))
    first = _HEADER_FIRST.match(block[0][1]) if block else None
    if first is None or first.group("name") != stem:
        header.problems.append((1, f"header must open with '-- {stem}: <what it does>'"))
    numbers: list[int] = []
    for number, text in block:
        key = _HEADER_KEY.match(text)
        if key is None:
            continue
        if header.variadic:
            header.problems.append((number, "KEYS[n..] must be the last KEYS line"))
        numbers.append(int(key.group("n")))
        header.variadic = bool(key.group("more"))
    if not numbers:
        header.problems.append((1, "header declares no KEYS: add '-- KEYS[1] <name> <what>' lines"))
    elif numbers != list(range(1, len(numbers) + 1)):
        header.problems.append((1, f"header KEYS must be numbered 1..n, got {numbers}"))
    header.keys = len(numbers) - int(header.variadic)
    texts = [text for _, text in block]
    if not any(t.startswith("-- ARGV") for t in texts):
        header.problems.append((1, "header has no ARGV lines (write '-- ARGV: none' if so)"))
    if not any(t.startswith("-- Returns:") for t in texts):
        header.problems.append((1, "header has no '-- Returns:' line"))
    return header


@dataclass
class Scope:
    opener: str
    params: set[str] = field(default_factory=set)


class ScriptChecker:
    """Walks the tokens of one file, tracking block scopes, key aliases and KEYS uses."""

    def __init__(self, tokens: list[Token], header: Header | None) -> None:
        self.tokens = tokens
        self.header = header
        """None for an include: it may use no KEYS at all."""
        self.scopes: list[Scope] = []
        self.aliases: dict[str, int] = {}
        self.used: set[int] = set()
        self.problems: list[tuple[int, str]] = []

    def problem(self, token: Token, message: str) -> None:
        self.problems.append((token.line, message))

    def run(self) -> list[tuple[int, str]]:
        i = 0
        while i < len(self.tokens):
            i = self.step(i)
        if self.header is not None:
            for n in range(1, self.header.keys + 1):
                if n not in self.used:
                    self.problems.append((1, f"KEYS[{n}] is declared but never used"))
        return self.problems

    def at(self, i: int) -> Token:
        return self.tokens[i] if i < len(self.tokens) else Token("eof", "", 0)

    def step(self, i: int) -> int:
        tok = self.at(i)
        if tok.kind == "name":
            return self.step_name(i, tok)
        if tok.text == "..":
            self.check_concat(i)
        return i + 1

    def step_name(self, i: int, tok: Token) -> int:
        text = tok.text
        if text == "function":
            return self.open_function(i)
        if text in _BLOCK_OPENERS:
            self.scopes.append(Scope(text))
        elif text == "end" or text == "until":
            if self.scopes:
                self.scopes.pop()
        elif text == "local":
            return self.local_statement(i)
        elif text == "KEYS":
            return self.keys_use(i)
        elif text == "redis" and self.at(i + 1).text == ".":
            return self.redis_call(i)
        elif text in self.aliases and self.at(i + 1).text == "=" and self.at(i - 1).text != ".":
            self.problem(tok, f"key alias '{text}' is reassigned; assign each alias once")
        return i + 1

    def open_function(self, i: int) -> int:
        j = i + 1
        while self.at(j).text != "(" and self.at(j).kind != "eof":
            j += 1
        params: set[str] = set()
        j += 1
        while self.at(j).text not in (")", ""):
            if self.at(j).kind == "name":
                params.add(self.at(j).text)
            j += 1
        self.scopes.append(Scope("function", params))
        return j + 1

    def local_statement(self, i: int) -> int:
        if self.at(i + 1).text == "function":
            return i + 1
        name, eq, keys = self.at(i + 1), self.at(i + 2), self.at(i + 3)
        if name.kind == "name" and eq.text == "=" and keys.text == "KEYS":
            index = self.at(i + 5)
            closes = self.at(i + 6).text == "]" and self.at(i + 4).text == "["
            ends = self.at(i + 7).text not in ("..", "[", ".", ":", "(")
            if closes and ends and index.kind == "number" and not self.scopes:
                self.aliases[name.text] = int(index.text)
        return i + 2  # past the declared name: declaring is not reassigning

    def keys_use(self, i: int) -> int:
        tok = self.at(i)
        if self.header is None:
            self.problem(tok, "includes get keys as function parameters, never from KEYS")
            return i + 1
        if self.at(i - 1).text == "#":
            if not self.header.variadic:
                self.problem(tok, "#KEYS needs a variadic 'KEYS[n..]' header line")
            return i + 1
        if self.at(i + 1).text != "[":
            self.problem(tok, "use KEYS only as KEYS[n]")
            return i + 1
        end = self.matching(i + 1)
        inner = self.tokens[i + 2 : end]
        if len(inner) == 1 and inner[0].kind == "number":
            n = int(float(inner[0].text))
            self.used.add(n)
            if n < 1 or (n > self.header.keys and not self.header.variadic):
                self.problem(tok, f"KEYS[{n}] is beyond the {self.header.keys} keys declared")
        elif not self.header.variadic:
            self.problem(tok, "a computed KEYS index needs a variadic 'KEYS[n..]' header line")
        else:
            self.used.add(self.header.keys + 1)
        return end + 1

    def matching(self, i: int) -> int:
        """Index of the bracket closing the one at ``i``."""
        pairs = {"(": ")", "[": "]", "{": "}"}
        stack = [pairs[self.at(i).text]]
        j = i + 1
        while stack and j < len(self.tokens):
            text = self.tokens[j].text
            if text in pairs:
                stack.append(pairs[text])
            elif text == stack[-1]:
                stack.pop()
            j += 1
        return j - 1

    def redis_call(self, i: int) -> int:
        func, paren = self.at(i + 2), self.at(i + 3)
        if func.text not in ("call", "pcall") or paren.text != "(":
            return i + 1
        end = self.matching(i + 3)
        args = self.split_args(i + 4, end)
        if not args or len(args[0]) != 1 or args[0][0].kind != "string":
            self.problem(self.at(i), "redis.call needs the command name as a string literal")
            return i + 4
        command = args[0][0].text.strip("'\"").upper()
        for arg in self.key_args(command, args[1:], self.at(i)):
            self.check_key(arg)
        return i + 4  # keep walking inside the arguments (KEYS uses, nested calls)

    def split_args(self, start: int, end: int) -> list[list[Token]]:
        args: list[list[Token]] = [[]]
        j = start
        while j < end:
            tok = self.tokens[j]
            if tok.text in ("(", "[", "{"):
                close = self.matching(j)
                args[-1].extend(self.tokens[j : close + 1])
                j = close + 1
                continue
            if tok.text == ",":
                args.append([])
            else:
                args[-1].append(tok)
            j += 1
        return args if args != [[]] else []

    def key_args(self, command: str, args: list[list[Token]], at: Token) -> list[list[Token]]:
        if command in _FIRST:
            return args[:1]
        if command in _FIRST_TWO:
            return args[:2]
        if command in _ALL:
            return args
        if command in _NONE:
            return []
        self.problem(at, f"unknown command {command}: add its key positions to tools/lint_lua.py")
        return []

    def check_key(self, arg: list[Token]) -> None:
        if not arg or self.is_key_expression(arg):
            return
        shown = " ".join(t.text for t in arg)
        if any(t.kind == "string" for t in arg):
            message = f"key {shown} is a string literal; pass it in KEYS"
        elif any(t.text == ".." for t in arg):
            message = f"key {shown} is built by concatenation; pass it in KEYS"
        else:
            message = (
                f"key {shown} does not come from KEYS; use KEYS[n], a local alias of KEYS[n], "
                "or a parameter of the enclosing function"
            )
        self.problem(arg[0], message)

    def is_key_expression(self, arg: list[Token]) -> bool:
        """``KEYS[...]`` on its own, or one name that is a key alias or a function parameter."""
        texts = [t.text for t in arg]
        if texts[0] == "KEYS" and len(arg) >= 4 and texts[1] == "[" and texts[-1] == "]":
            return self.matching_in(arg, 1) == len(arg) - 1
        return len(arg) == 1 and arg[0].kind == "name" and self.is_key_name(arg[0].text)

    @staticmethod
    def matching_in(arg: list[Token], start: int) -> int:
        depth = 0
        for j in range(start, len(arg)):
            depth += arg[j].text == "["
            depth -= arg[j].text == "]"
            if depth == 0:
                return j
        return -1

    def is_key_name(self, name: str) -> bool:
        if any(name in scope.params for scope in self.scopes):
            return True
        return self.header is not None and name in self.aliases

    def check_concat(self, i: int) -> None:
        before, after = self.at(i - 1), self.at(i + 1)
        keyish = (
            before.text in self.aliases
            or after.text in self.aliases
            or after.text == "KEYS"
            or (before.text == "]" and self.keys_bracket_before(i - 1))
        )
        if keyish and self.header is not None:
            self.problem(self.at(i), "a key is built by concatenation; pass every key in KEYS")

    def keys_bracket_before(self, close: int) -> bool:
        depth = 0
        for j in range(close, -1, -1):
            text = self.tokens[j].text
            depth += text == "]"
            depth -= text == "["
            if depth == 0:
                return self.at(j - 1).text == "KEYS"
        return False


def lint_file(path: Path, includes_dir: Path, *, is_include: bool = False) -> list[str]:
    """Problems of one file as ``path:line: message`` strings."""
    source = path.read_text()
    problems: list[tuple[int, str]] = []
    header: Header | None = None
    if is_include:
        if not source.startswith("--"):
            problems.append((1, "an include opens with a comment saying what it provides"))
    else:
        header = parse_header(source.splitlines(), path.stem)
        problems += header.problems
    for match in _INCLUDE.finditer(source):
        name = match.group("name")
        if not (includes_dir / f"{name}.lua").is_file():
            line = source.count("\n", 0, match.start()) + 1
            problems.append((line, f"--@include {name}: no file {includes_dir.name}/{name}.lua"))
    problems += ScriptChecker(tokenize(source), header).run()
    return [f"{path}:{line}: {message}" for line, message in sorted(problems)]


def lint_dir(lua_dir: Path) -> list[str]:
    """Problems of every script in ``lua_dir`` and every include in ``lua_dir/includes``."""
    includes = lua_dir / "includes"
    scripts = sorted(lua_dir.glob("*.lua"))
    problems: list[str] = []
    if not scripts:
        problems.append(f"{lua_dir}: no .lua scripts found")
    for path in scripts:
        problems += lint_file(path, includes)
    for path in sorted(includes.glob("*.lua")):
        problems += lint_file(path, includes, is_include=True)
    return problems


def main(argv: list[str]) -> int:
    lua_dir = Path(argv[0]) if argv else REPO / "lua"
    problems = lint_dir(lua_dir)
    for problem in problems:
        print(problem)
    if problems:
        print(f"lint_lua: {len(problems)} problem(s) in {lua_dir}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
