"""Printing an audit: the tables, the verdict, and a JSON summary for tests and CI."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chaos_lib.audit import Result


def _table(title: str, rows: Sequence[tuple[str, object]]) -> None:
    print(f"\n{title}")
    if not rows:
        print("  (none)")
    width = max((len(k) for k, _ in rows), default=0)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def print_report(result: Result, *, seed: int, aof: str, wall: float) -> None:
    _table("tasks by final state (acknowledged enqueues)", sorted(result.outcomes.items()))
    _table("faults injected", sorted(result.faults.items()))
    _table("extra runs by cause", sorted(result.extra_runs.items()))
    _table("debounce and throttle calls", sorted(result.windows.items()))
    _table("figures", [(k, v) for k, v in result.info.items()])
    violations = sorted((k, len(v)) for k, v in result.violations.items())
    _table("violations", violations)
    if aof == "everysec":
        lost = result.outcomes.get("lost to AOF everysec", 0)
        print(
            f"\nAOF everysec loss: {lost} acknowledged task(s) lost in the last second before a "
            "Redis kill (allowed by Redis's fsync contract; not a violation)"
        )
    verdict = "CLEAN" if not result.violations else f"{sum(n for _, n in violations)} VIOLATION(S)"
    print(f"\nverdict: {verdict} (seed {seed}, aof {aof}, {wall:.0f}s)")


def summary(result: Result, *, seed: int, aof: str) -> dict[str, Any]:
    return {
        "seed": seed,
        "aof": aof,
        "clean": not result.violations,
        "outcomes": dict(result.outcomes),
        "faults": dict(result.faults),
        "extra_runs": dict(result.extra_runs),
        "windows": dict(result.windows),
        "violations": {k: len(v) for k, v in result.violations.items()},
        "examples": {k: v[:5] for k, v in result.violations.items()},
        "info": result.info,
    }
