"""Time sources: the system clock, and a manual clock that tests and simulations advance."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

from rq_sched.errors import ValidationError


class Clock(Protocol):
    """Where rq_sched reads the time. Components take one so tests can control time."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    """The wall clock (``time.time``)."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to; for tests and model checks."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (must be >= 0)."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        self._now += seconds

    def set(self, when: float | datetime) -> None:
        """Jump to ``when`` (epoch seconds or an aware datetime)."""
        self._now = when.timestamp() if isinstance(when, datetime) else float(when)


def use_clock(clock: object) -> Clock:
    """``clock``, or the system clock for ``None``; anything without a callable ``now`` is
    refused here, where it is passed, rather than deep inside a loop at its first reading."""
    if clock is None:
        return SystemClock()
    if not callable(getattr(clock, "now", None)):
        raise ValidationError(
            f"clock must have a now() method returning epoch seconds (e.g. ManualClock()), "
            f"got {clock!r}"
        )
    return clock  # type: ignore[return-value]


def to_ms(seconds: float) -> int:
    """Epoch seconds to integer milliseconds, the unit stored in Redis.

    Rounds to the nearest millisecond: ``seconds`` is a binary float, so ``t * 1000`` for a
    time a whole millisecond after another can land a hair below the integer, and truncating
    would give two different instants the same stamp.
    """
    return round(seconds * 1000)


def from_ms(ms: int | float) -> datetime:
    """Integer milliseconds to an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def utc_day(seconds: float) -> str:
    """The UTC calendar day of ``seconds`` as ``YYYY-MM-DD`` (the daily counter suffix)."""
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))
