"""Schedule specs: parsing them and computing when they fire next, across time zones and DST.

A spec is one of:

- a 5-field cron expression ``minute hour day-of-month month day-of-week`` (``30 2 * * *``);
- a 6-field cron expression with **seconds first** (``*/10 * * * * *`` = every 10 seconds), the
  order Quartz, Spring and Go's robfig/cron use;
- a named schedule: ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily``
  (``@midnight``), ``@hourly``;
- ``@every <duration>`` with a duration such as ``30s``, ``1h30m``, ``1.5h``, ``2d`` (at least 1 s).

Fire times are integer epoch milliseconds. Cron specs are evaluated in the entry's IANA time zone
(``zoneinfo``) by croniter. ``@every`` ticks are anchored to the Unix epoch, not to when a
scheduler started, so every scheduler process computes the same ticks (they are multiples of the
interval: ``@every 30s`` fires at :00 and :30 of each minute; the time zone plays no part).

Daylight saving time (what croniter does, and the one thing changed here):

- A spec that fires in **every hour** (hour field ``*``: ``*/15 * * * *``, ``@hourly``, most
  seconds specs) follows real time. Wall-clock times skipped by the spring-forward jump do not
  fire; in the repeated fall-back hour it fires in both passes (a 15-minute job keeps firing every
  15 real minutes). This is croniter's behaviour.
- A spec that names **particular hours** (``30 2 * * *``) fires once per calendar day at its wall
  time. If that time is skipped (02:30 on a spring-forward day in Europe/Berlin or
  America/New_York), it fires once at the first instant after the gap (03:00 local); several
  skipped times collapse into that one fire. This is croniter's behaviour. If the time occurs twice
  (01:30 on the America/New_York fall-back day), it fires **once**, at the first occurrence
  (daylight time). croniter alone fires it twice; :meth:`CronSchedule.next_after` drops the second.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from rq_sched.durations import MAX_DURATION_S, duration_seconds, parse_duration_ms
from rq_sched.errors import ValidationError

__all__ = [
    "CronSchedule",
    "IntervalSchedule",
    "Schedule",
    "duration_seconds",
    "parse_duration_ms",
    "parse_spec",
    "zone",
]

EVERY_PREFIX = "@every"
NAMED_SPECS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
MIN_INTERVAL_MS = 1000
MAX_SECOND_PASS_SKIPS = 20_000
"""Upper bound on fires dropped in one repeated hour (a per-second job in a 2-hour fold: 7200)."""

_HOUR_FIELD = 1
"""Index of the hour field in croniter's expanded form (seconds, if any, are moved to the end)."""


class Schedule(Protocol):
    """When an entry fires."""

    @property
    def spec(self) -> str:
        """The spec as written."""
        ...

    def next_after(self, after_ms: int) -> int:
        """The first fire time strictly after ``after_ms`` (epoch ms)."""
        ...


def zone(name: object) -> ZoneInfo:
    """The IANA time zone ``name``.

    Raises:
        ValidationError: no such zone.
    """
    if isinstance(name, str) and name.strip():
        try:
            return ZoneInfo(name.strip())
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise ValidationError(
        f"unknown time zone {name!r}; use an IANA name such as 'UTC', 'Europe/Berlin' or "
        "'America/New_York'"
    )


@dataclass(frozen=True, slots=True)
class IntervalSchedule:
    """``@every <duration>``: multiples of the interval since the Unix epoch."""

    spec: str
    interval_ms: int

    def next_after(self, after_ms: int) -> int:
        return (after_ms // self.interval_ms + 1) * self.interval_ms


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A cron expression in a time zone (see the module docstring for DST)."""

    spec: str
    expression: str
    tz: ZoneInfo
    with_seconds: bool
    every_hour: bool
    """True when the hour field is ``*``: the spec follows real time through the repeated hour."""

    def next_after(self, after_ms: int) -> int:
        start = datetime.fromtimestamp(after_ms / 1000, self.tz)
        it = croniter(self.expression, start, ret_type=float, second_at_beginning=self.with_seconds)
        for _ in range(MAX_SECOND_PASS_SKIPS):
            fire_ms = round(it.get_next(float) * 1000)
            if fire_ms > after_ms and (self.every_hour or not self._second_pass(fire_ms)):
                return fire_ms
        raise RuntimeError(f"cron spec {self.spec!r}: no fire time found after {after_ms} ms")

    def _second_pass(self, fire_ms: int) -> bool:
        # zoneinfo sets fold=1 exactly for the second occurrence of a repeated wall time.
        return datetime.fromtimestamp(fire_ms / 1000, self.tz).fold == 1


def parse_spec(spec: object, timezone: str = "UTC") -> Schedule:
    """Parse a spec (see the module docstring) in the IANA time zone ``timezone``.

    Raises:
        ValidationError: the spec or the time zone is invalid, or the spec never fires.
    """
    tz = zone(timezone)
    if not isinstance(spec, str) or not spec.strip():
        raise ValidationError(f"spec must be a non-empty string, got {spec!r}")
    text = " ".join(spec.split())
    lowered = text.lower()
    if lowered.startswith(EVERY_PREFIX):
        return _interval(text, text[len(EVERY_PREFIX) :])
    if lowered.startswith("@"):
        if lowered not in NAMED_SPECS:
            raise ValidationError(
                f"unknown named spec {text!r}; use one of {', '.join(NAMED_SPECS)} "
                "or '@every <duration>'"
            )
        return _cron(text, lowered, tz, with_seconds=False)
    fields = text.split(" ")
    if len(fields) not in (5, 6):
        raise ValidationError(
            f"cron spec {text!r} has {len(fields)} fields; use 5 (minute hour day month weekday) "
            "or 6 with seconds first (second minute hour day month weekday)"
        )
    return _cron(text, text, tz, with_seconds=len(fields) == 6)


def _interval(spec: str, rest: str) -> IntervalSchedule:
    if not rest.strip():
        raise ValidationError(
            f"spec {spec!r}: give an interval, e.g. '@every 30s' or '@every 1h30m'"
        )
    try:
        interval_ms = parse_duration_ms(rest)
    except ValidationError as exc:
        raise ValidationError(f"spec {spec!r}: {exc}") from None
    if interval_ms < MIN_INTERVAL_MS:
        raise ValidationError(f"spec {spec!r}: the interval must be at least 1s")
    if interval_ms > MAX_DURATION_S * 1000:
        # Fire times past year 9999 overflow the datetimes every record and listing is built of.
        raise ValidationError(f"spec {spec!r}: the interval must be at most 100 years")
    return IntervalSchedule(spec, interval_ms)


def _cron(spec: str, expression: str, tz: ZoneInfo, *, with_seconds: bool) -> CronSchedule:
    try:
        expanded, _ = croniter.expand(expression, second_at_beginning=with_seconds)
    except CroniterError as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ValidationError(f"invalid cron spec {spec!r}: {detail}") from None
    schedule = CronSchedule(
        spec=spec,
        expression=expression,
        tz=tz,
        with_seconds=with_seconds,
        every_hour=expanded[_HOUR_FIELD] == ["*"],
    )
    try:
        schedule.next_after(round(datetime.now(tz).timestamp() * 1000))
    except CroniterError:
        raise ValidationError(
            f"cron spec {spec!r} never fires (e.g. a day that does not exist, like 30 February)"
        ) from None
    return schedule
