"""The package tree is the architecture: subpackages import downwards only.

The store and producer modules at the top of ``rq_sched`` import no subpackage; the worker, the
scheduler and the inspector import the store but never each other; only the CLI and the web app
sit above them all. ``contrib`` (the integrations with other frameworks, each behind an optional
extra) may import any room, and no room imports it: the core never needs an integration's
package. These tests read every module's imports (statically, so a lazy import inside
a function counts too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rq_sched"
SUBPACKAGES = ("worker", "scheduler", "inspector", "web", "cli", "dq", "contrib")

# What each room must never import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "": SUBPACKAGES,  # the store and the producer
    "worker": ("scheduler", "inspector", "web", "cli", "dq", "contrib"),
    "scheduler": ("worker", "inspector", "web", "cli", "dq", "contrib"),
    "inspector": ("worker", "scheduler", "web", "cli", "dq", "contrib"),
    "web": ("worker", "scheduler", "cli", "dq", "contrib"),
    "dq": ("worker", "scheduler", "web", "cli", "contrib"),
    "cli": ("contrib",),
    # contrib: may import every room above (it sits on top); nothing imports it.
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("rq_sched.")}


def room_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else ""


def modules() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE
    )


def ruled_modules() -> list[Path]:
    return [p for p in modules() if room_of(p) in FORBIDDEN]


@pytest.mark.parametrize("path", ruled_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_only_downwards(path: Path) -> None:
    room = room_of(path)
    bad = sorted(
        name
        for name in imported_modules(path)
        if any(
            name == f"rq_sched.{other}" or name.startswith(f"rq_sched.{other}.")
            for other in FORBIDDEN[room]
        )
    )
    assert not bad, f"{path.relative_to(PACKAGE)} (room {room or 'store'!r}) imports {bad}"


def test_every_room_has_modules() -> None:
    rooms = {room_of(p) for p in modules()}
    assert set(SUBPACKAGES) <= rooms
