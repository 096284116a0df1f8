"""Lanes with limits of their own inside a queue: per-task-type limits (:class:`TypeLimits`)
and per-key limits and weights that differ from the queue's per-key defaults
(:class:`KeyLimits`).

Both are served by the fairness machinery of keyed tasks (``lua/includes/keyed.lua``): a lane
is a fairness key, a limited type's the implicit key ``"\\0type\\0" + type``. Its limits are
stored in the queue's flow hash as one spec, ``"interval|burst|cap|rate|weight"``, under
``D:<lane digest>`` (read by the dequeue per lane visited) and under ``T:<type>`` or
``K:<key>`` (read to list them). This module checks them, writes their specs and reads them
back; :mod:`rq_sched.flow` stores them with the queue's other limits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from rq_sched.errors import ValidationError
from rq_sched.options import check_key, check_type
from rq_sched.rates import check_count, gcra_tokens, number, parse_rate, text

MAX_TYPE_LIMITS = 256
"""The most task types one queue may limit."""
MAX_KEY_LIMITS = 1000
"""The most keys one queue may give limits of their own."""
MAX_WEIGHT = 1000
"""The largest weight of a lane (how many turns it takes per turn of a weight-1 lane)."""
TYPE_LANE_PREFIX = "\x00type\x00"
"""Prefix of the implicit fairness key a limited type's tasks are served under
(``KEYED_TYPE_PREFIX`` in ``lua/includes/keyed.lua``); user keys refuse control characters, so
none can be one."""


def _check_weight(weight: object) -> None:
    if not isinstance(weight, int) or isinstance(weight, bool) or not 1 <= weight <= MAX_WEIGHT:
        raise ValidationError(
            f"weight must be an int from 1 to {MAX_WEIGHT} (turns per turn of a weight-1 "
            f"key), got {weight!r}"
        )


def _interval_ms(rate: str | None) -> float | None:
    if rate is None:
        return None
    count, period_ms = parse_rate(rate)
    return period_ms / count


def _spec(rate: str | None, burst: int, concurrency: int | None, weight: int) -> str:
    interval = _interval_ms(rate)
    return "|".join(
        (
            "" if interval is None else repr(interval),
            str(burst) if interval is not None else "",
            "" if concurrency is None else str(concurrency),
            rate or "",
            "" if weight == 1 else str(weight),
        )
    )


@dataclass(frozen=True, slots=True)
class _LaneLimits:
    """What a lane with limits of its own has: a rate and its burst, a cap, a weight."""

    rate: str | None = None
    burst: int = 1
    concurrency: int | None = None
    weight: int = 1

    def __post_init__(self) -> None:
        if self.rate is not None:
            parse_rate(self.rate)
        check_count(self.burst, "burst")
        if self.concurrency is not None:
            check_count(self.concurrency, "concurrency")
        _check_weight(self.weight)

    @property
    def interval_ms(self) -> float | None:
        """Milliseconds between task starts in the lane, or None without a rate limit."""
        return _interval_ms(self.rate)

    def spec(self) -> str:
        """The limits as stored: ``"interval|burst|cap|rate|weight"`` (empty parts for none)."""
        return _spec(self.rate, self.burst, self.concurrency, self.weight)


@dataclass(frozen=True, slots=True)
class TypeLimits(_LaneLimits):
    """The limits of one task type within a queue (``FlowLimits(types={...})``).

    ``rate``/``burst`` as a queue's, counted over that type's task starts only; ``concurrency``:
    most tasks of that type running at once, across all workers. At least one is set.
    ``weight``: the type's lane takes that many turns of the queue's round robin per turn of a
    weight-1 lane (the unkeyed tasks, other types, keys).
    """

    def __post_init__(self) -> None:
        _LaneLimits.__post_init__(self)
        if self.rate is None and self.concurrency is None:
            raise ValidationError(
                "TypeLimits needs a rate or a concurrency (e.g. TypeLimits(rate='10/s') or "
                "TypeLimits(concurrency=2)); to lift a type's limits, leave it out of types"
            )


@dataclass(frozen=True, slots=True)
class KeyLimits(_LaneLimits):
    """The limits of one fairness key, instead of the queue's per-key defaults
    (``FlowLimits(keys={"tenant:vip": KeyLimits(...)})``).

    ``rate``/``burst``/``concurrency`` as ``key_rate``/``key_burst``/``key_concurrency``, for
    this key alone; a field left None is no such limit for it (``KeyLimits()`` exempts the key
    from the defaults). ``weight``: the key takes that many turns of the round robin per turn
    of a weight-1 key, so while every key is backlogged it is served that many times as often.
    """


def lane_digest(key: str) -> str:
    """The digest a fairness key's lane is stored under (``keyed_digest`` in Lua)."""
    return hashlib.sha1(key.encode("utf-8"), usedforsecurity=False).hexdigest()[:16]


def type_lane_digest(task_type: str) -> str:
    """The digest of the lane a limited type's tasks are served in (``keyed_type_lane``)."""
    return lane_digest(TYPE_LANE_PREFIX + task_type)


def check_types(types: object) -> dict[str, TypeLimits]:
    """``FlowLimits.types`` checked, by type name.

    Raises:
        ValidationError: not a mapping of task types to :class:`TypeLimits`, or too many.
    """
    return _check_lanes(
        types,
        TypeLimits,
        check_type,
        field="types",
        what="task types",
        example="{'sync:crm': TypeLimits(rate='10/s')}",
        most=MAX_TYPE_LIMITS,
        instead="give the busiest types queues of their own",
    )


def check_keys(keys: object) -> dict[str, KeyLimits]:
    """``FlowLimits.keys`` checked, by key.

    Raises:
        ValidationError: not a mapping of fairness keys to :class:`KeyLimits`, or too many.
    """
    return _check_lanes(
        keys,
        KeyLimits,
        check_key,
        field="keys",
        what="fairness keys",
        example="{'tenant:vip': KeyLimits(concurrency=10, weight=4)}",
        most=MAX_KEY_LIMITS,
        instead="set the per-key defaults, key_rate and key_concurrency, for the rest",
    )


Lane = TypeVar("Lane", TypeLimits, KeyLimits)


def _check_lanes(
    raw: object,
    kind: type[Lane],
    check_name: Callable[[object], str],
    *,
    field: str,
    what: str,
    example: str,
    most: int,
    instead: str,
) -> dict[str, Lane]:
    """``raw`` as a mapping of checked names to ``kind``, sorted by name."""
    if not isinstance(raw, Mapping):
        raise ValidationError(
            f"{field} must map {what} to rq_sched.{kind.__name__}, e.g. {field}={example}, "
            f"got {raw!r}"
        )
    if len(raw) > most:
        raise ValidationError(
            f"{field} names {len(raw)} {what}; a queue may give at most {most} limits of "
            f"their own ({instead})"
        )
    checked: dict[str, Lane] = {}
    for name, limits in raw.items():
        if not isinstance(limits, kind):
            raise ValidationError(
                f"{field}[{name!r}] must be rq_sched.{kind.__name__}(rate=..., burst=..., "
                f"concurrency=..., weight=...), got {limits!r}"
            )
        checked[check_name(name)] = limits
    return dict(sorted(checked.items()))


def _parse_spec(raw: object) -> tuple[str | None, float | None, int, int | None, int]:
    """(rate, interval ms, burst, concurrency, weight) from a stored spec."""
    parts = ((text(raw) or "").split("|") + [""] * 5)[:5]
    interval_text, burst_text, cap_text, rate_text, weight_text = parts
    interval = number(interval_text) if interval_text else None
    rate = (rate_text or f"1/{interval:g}ms") if interval is not None else None
    burst = int(number(burst_text) or 1) if burst_text else 1
    cap = int(cap_text) if cap_text.isdigit() else None
    weight = int(weight_text) if weight_text.isdigit() else 1
    return rate, interval, burst, cap, weight


def key_limits_from(raw: object) -> KeyLimits:
    """A stored spec (``K:<key>``) as :class:`KeyLimits`."""
    rate, _, burst, cap, weight = _parse_spec(raw)
    return KeyLimits(rate=rate, burst=burst, concurrency=cap, weight=weight)


@dataclass(frozen=True, slots=True)
class TypeStatus:
    """One limited task type of a queue: its limits and its lane now."""

    type: str
    rate: str | None
    interval_ms: float | None
    burst: int
    concurrency: int | None
    pending: int
    """Its ready tasks in its lane (tasks of the type still in the pending list, not yet
    reached by a dequeue, are counted in the queue's pending only)."""
    running: int
    """Its tasks running now that were started under its limits."""
    state: str
    """"ready" (its turn comes), "capped" (waits for a running task of the type to end),
    "rate" (waits for its next token), or "idle" (no ready task in its lane)."""
    tokens: int | None = None
    """Tasks of the type its rate lets start right now (None without a rate)."""
    next_token_at: datetime | None = None
    weight: int = 1

    @property
    def limits(self) -> TypeLimits:
        """Its limits as set, to carry them over when other limits change."""
        return TypeLimits(self.rate, self.burst, self.concurrency, self.weight)


def type_status(row: Sequence[Any], now_ms: float) -> TypeStatus:
    """One row of ``flow_status.lua``'s types: type, spec, ready, running, tat, parked."""
    rate, interval, burst, cap, weight = _parse_spec(row[1])
    pending = int(number(row[2]) or 0)
    parked = text(row[5]) if len(row) > 5 else None
    tat = (number(row[4]) or 0.0) if len(row) > 4 else 0.0
    tokens, next_at = gcra_tokens(interval, burst, tat, now_ms)
    if pending == 0:
        state = "idle"
    elif parked == "c":
        state = "capped"
    elif parked == "w":
        state = "rate"
    else:
        state = "ready"
    return TypeStatus(
        type=text(row[0]) or "",
        rate=rate,
        interval_ms=interval,
        burst=burst,
        concurrency=cap,
        pending=pending,
        running=int(number(row[3]) or 0),
        state=state,
        tokens=tokens,
        next_token_at=next_at,
        weight=weight,
    )
