"""Rates and their arithmetic, shared by every flow limit: parsing ``"100/s"``, checking
counts, and the tokens a GCRA (the token bucket written as one timestamp) holds at an instant.

The limits themselves are enforced in the store (``lua/includes/flow.lua`` and
``lua/includes/keyed.lua``); this module only reads and writes their numbers.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from rq_sched.durations import parse_duration_ms
from rq_sched.errors import ValidationError

MAX_RATE_PER_S = 1_000_000
"""The highest rate accepted (one task start per microsecond)."""
MAX_PERIOD_MS = 366 * 86_400_000
"""The longest rate period accepted (a year)."""
MAX_LIMIT = 1_000_000
"""The largest burst or concurrency cap accepted."""
JITTER_MS = 20
"""Lateness a token tolerates (``FLOW_JITTER_MS`` in ``lua/includes/flow.lua``): a worker
woken for the next token reaches Redis a few ms after its time, and a strict GCRA would lose
that time on every token."""

_RATE = re.compile(r"\s*(\d+)\s*/\s*(\S+)\s*")
_UNITS_MS = {
    "ms": 1,
    "s": 1000,
    "sec": 1000,
    "second": 1000,
    "m": 60_000,
    "min": 60_000,
    "minute": 60_000,
    "h": 3_600_000,
    "hour": 3_600_000,
    "d": 86_400_000,
    "day": 86_400_000,
}


def parse_rate(text: object) -> tuple[int, int]:
    """``"100/s"`` -> (100, 1000): a count of task starts per period in ms.

    The period is a unit (``ms s sec second m min minute h hour d day``) or a duration such as
    ``"30s"`` or ``"1h30m"`` (``"10/30s"``).

    Raises:
        ValidationError: not such a rate, a count of 0, or out of range (faster than
            :data:`MAX_RATE_PER_S` per second, or a period longer than a year).
    """
    if not isinstance(text, str):
        raise ValidationError(f"rate must be a string such as '100/s' or '5000/min', got {text!r}")
    match = _RATE.fullmatch(text)
    if match is None:
        raise ValidationError(
            f"rate {text!r} is not a rate; write a count per period, e.g. '100/s', "
            "'5000/min', '10/30s' or '2/h'"
        )
    count = int(match.group(1))
    unit = match.group(2).lower()
    unit = unit[:-1] if unit.endswith("s") and unit[:-1] in _UNITS_MS and len(unit) > 2 else unit
    if unit in _UNITS_MS:
        period_ms = _UNITS_MS[unit]
    else:
        try:
            period_ms = parse_duration_ms(unit)
        except ValidationError:
            raise ValidationError(
                f"rate {text!r}: unknown period {match.group(2)!r}; use s, min, h, d or a "
                "duration such as '30s'"
            ) from None
    if count < 1:
        raise ValidationError(
            f"rate {text!r}: the count must be at least 1 (to stop a queue, pause it)"
        )
    if not 1 <= period_ms <= MAX_PERIOD_MS:
        raise ValidationError(f"rate {text!r}: the period must be from 1 ms to a year")
    if count * 1000 > MAX_RATE_PER_S * period_ms:
        raise ValidationError(
            f"rate {text!r} is faster than the limit of {MAX_RATE_PER_S} per second"
        )
    return count, period_ms


def check_count(value: object, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_LIMIT:
        raise ValidationError(
            f"{name} must be an int from 1 to {MAX_LIMIT}, got {value!r}"
            + (" (for no cap, pass None)" if name.endswith("concurrency") else "")
        )


def gcra_tokens(
    interval: float | None, burst: int, tat: float, now_ms: float
) -> tuple[int | None, datetime | None]:
    """Tokens a GCRA (``interval`` ms, ``burst``, state ``tat``) holds at ``now_ms``, and when
    the next is due if it holds none."""
    if interval is None or interval <= 0:
        return None, None
    tau = (burst - 1) * interval + JITTER_MS
    theoretical = max(tat, now_ms)
    tokens = max(0, math.floor((now_ms + tau - theoretical) / interval) + 1)
    if tokens:
        return tokens, None
    return 0, datetime.fromtimestamp((theoretical - tau) / 1000, UTC)


def text(raw: object) -> str | None:
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def number(raw: object) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw.decode() if isinstance(raw, bytes) else str(raw))
    except ValueError:
        return None
    return value if math.isfinite(value) else None
