"""Durations: the one parser and validator for every duration rq_sched accepts.

A duration is a ``timedelta``, a number of seconds, or (where text is natural: config files,
the CLI, ``@every``) a string such as ``"90s"``, ``"10m"``, ``"1h30m"``, ``"1.5h"``, ``"2d"`` or
``"500ms"``. Every duration is checked the same way wherever it enters: finite (``inf`` and
``nan`` would overflow or poison arithmetic deep inside a loop, and TOML spells both), not
negative, and at most :data:`MAX_DURATION_S` (about 100 years), so that epoch milliseconds built
from it stay exact integers in Redis and in Lua's doubles. The client, the scheduler, the
config loader and the CLI all come here.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

from rq_sched.errors import ValidationError

MAX_DURATION_S = 100 * 365 * 86_400
"""The longest duration accepted (100 years, 3,153,600,000 s)."""

MIN_DURATION_S = 0.001
"""The shortest duration accepted where zero is not (one millisecond, the stored unit)."""

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


def parse_duration_ms(text: str) -> int:
    """``"1h30m"`` -> 5400000. Units: ms, s, m, h, d; parts may repeat and have decimals.

    Raises:
        ValidationError: ``text`` is not such a duration.
    """
    compact = text.strip().replace(" ", "")
    if not _WHOLE.fullmatch(compact):
        raise ValidationError(
            f"{text!r} is not a duration; write e.g. '30s', '1h30m', '1.5h', '2d' or '500ms'"
        )
    total = sum(float(num) * _UNIT_MS[unit] for num, unit in _PART.findall(compact))
    if not math.isfinite(total):
        raise ValidationError(f"{text!r} is too long to be a duration")
    return round(total)


def duration_seconds(
    value: object, name: str, *, allow_zero: bool = True, allow_text: bool = True
) -> float:
    """``value`` (a timedelta, seconds, or with ``allow_text`` a string like ``"10m"``) as
    seconds, checked to be finite, not negative (nor under 1 ms unless ``allow_zero``) and at most
    :data:`MAX_DURATION_S`.

    Raises:
        ValidationError: any of those checks fails; the message names ``name`` and says what
            to pass.
    """
    if isinstance(value, timedelta):
        result = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            result = float(value)
        except OverflowError:
            # An int beyond a double's range (10**400): as out of range as inf.
            result = math.inf if value > 0 else -math.inf
    elif isinstance(value, str) and allow_text:
        try:
            result = parse_duration_ms(value) / 1000
        except ValidationError as exc:
            raise ValidationError(f"{name}: {exc}") from None
    else:
        kinds = "seconds (a number), a timedelta or a duration string like '10m'"
        if not allow_text:
            kinds = "a timedelta or a number of seconds"
        raise ValidationError(f"{name} must be {kinds}, got {value!r}")
    return check_seconds(result, name, allow_zero=allow_zero, given=value)


def check_seconds(
    seconds: float, name: str, *, allow_zero: bool = True, given: object = None
) -> float:
    """``seconds`` if it is a finite duration in range (see :func:`duration_seconds`).

    Raises:
        ValidationError: it is not; the message shows ``given`` (default: ``seconds``).
    """
    shown = seconds if given is None else given
    if not math.isfinite(seconds):
        raise ValidationError(f"{name} must be a finite number of seconds, got {shown!r}")
    if seconds < MIN_DURATION_S and not allow_zero:
        # Durations are kept in whole milliseconds: 1e-300 would become 0, which means "none"
        # for a timeout and is an error for a Redis expiry.
        raise ValidationError(f"{name} must be at least 1 ms (0.001 seconds), got {shown!r}")
    if seconds < 0:
        raise ValidationError(f"{name} must be >= 0 seconds (not negative), got {shown!r}")
    if seconds > MAX_DURATION_S:
        raise ValidationError(
            f"{name} is longer than the limit of {MAX_DURATION_S} seconds (100 years), "
            f"got {shown!r}"
        )
    return seconds


def duration_ms(value: object, name: str, *, allow_zero: bool = True) -> int:
    """:func:`duration_seconds` in whole milliseconds (rounded)."""
    return round(duration_seconds(value, name, allow_zero=allow_zero) * 1000)
