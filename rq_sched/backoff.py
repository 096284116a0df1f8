"""Retry delays: exponential backoff with jitter by default, overridable per task type."""

from __future__ import annotations

import random
from collections.abc import Callable

from rq_sched.task import Task

Backoff = Callable[[int, BaseException, Task], float]
"""``(attempt, error, task) -> seconds`` until the next attempt; attempt 1 is the first retry."""


def exponential(base: float = 5.0, cap: float = 3600.0, jitter: float = 0.25) -> Backoff:
    """``base * 2**(attempt-1)`` seconds, capped, spread by +/- ``jitter`` (a fraction)."""
    if base <= 0 or cap <= 0 or not 0 <= jitter < 1:
        raise ValueError("exponential backoff needs base > 0, cap > 0 and 0 <= jitter < 1")

    def delay(attempt: int, error: BaseException, task: Task) -> float:
        raw = min(cap, base * 2 ** min(max(attempt - 1, 0), 40))
        return float(raw * random.uniform(1 - jitter, 1 + jitter))

    return delay


default_backoff: Backoff = exponential()
