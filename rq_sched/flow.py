"""Flow control of a queue: a distributed rate limit and a global concurrency cap.

Both are enforced inside the dequeue script (``lua/includes/flow.lua``), so they hold across
every worker process and host, with Redis ``TIME`` as the only clock:

- **Rate limit** (``rate="100/s"``): a GCRA (generic cell rate algorithm, the token bucket
  written as one timestamp): tasks start at most ``count`` per ``period``, with up to ``burst``
  at once after a pause. A task held back stays pending, in its place, and is no failure.
- **Concurrency cap** (``concurrency=5``): at most that many tasks of the queue are leased at
  once across all workers. The count is the size of the queue's lease set, not a counter of its
  own, so every end of a lease frees the slot, including the recovery of a crashed worker's.

Limits are stored per queue in Redis (``ns:{q}:flow``), so an operator changes them at run
time (:meth:`rq_sched.Inspector.set_flow`, ``rq-sched flow``) and every worker obeys at its next
dequeue. A worker held back sleeps: until the time the script reports for the next token (one
worker per token time, no thundering herd), or until a lease of a capped queue ends (the
ending script wakes one worker through the marker). See docs/flow.md.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rq_sched import scripts
from rq_sched.durations import parse_duration_ms
from rq_sched.errors import ValidationError
from rq_sched.keys import QueueKeys
from rq_sched.options import check_type
from rq_sched.scripts import Call, SyncRedis

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


MAX_TYPE_LIMITS = 256
"""The most task types one queue may limit."""
TYPE_LANE_PREFIX = "\x00type\x00"
"""Prefix of the implicit fairness key a limited type's tasks are served under
(``KEYED_TYPE_PREFIX`` in ``lua/includes/keyed.lua``); user keys refuse control characters, so
none can be one."""


@dataclass(frozen=True, slots=True)
class TypeLimits:
    """The limits of one task type within a queue (``FlowLimits(types={...})``).

    ``rate``/``burst`` as a queue's, counted over that type's task starts only; ``concurrency``:
    most tasks of that type running at once, across all workers. At least one is set.
    """

    rate: str | None = None
    burst: int = 1
    concurrency: int | None = None

    def __post_init__(self) -> None:
        if self.rate is not None:
            parse_rate(self.rate)
        _check_count(self.burst, "burst")
        if self.concurrency is not None:
            _check_count(self.concurrency, "concurrency")
        if self.rate is None and self.concurrency is None:
            raise ValidationError(
                "TypeLimits needs a rate or a concurrency (e.g. TypeLimits(rate='10/s') or "
                "TypeLimits(concurrency=2)); to lift a type's limits, leave it out of types"
            )

    @property
    def interval_ms(self) -> float | None:
        """Milliseconds between task starts of the type, or None without a rate limit."""
        if self.rate is None:
            return None
        count, period_ms = parse_rate(self.rate)
        return period_ms / count

    def spec(self) -> str:
        """The limits as stored: ``"interval|burst|cap|rate"`` (empty parts for none)."""
        interval = self.interval_ms
        return "|".join(
            (
                "" if interval is None else repr(interval),
                str(self.burst) if interval is not None else "",
                "" if self.concurrency is None else str(self.concurrency),
                self.rate or "",
            )
        )


def type_lane_digest(task_type: str) -> str:
    """The digest of the lane a limited type's tasks are served in (``keyed_type_lane``)."""
    lane = (TYPE_LANE_PREFIX + task_type).encode("utf-8")
    return hashlib.sha1(lane, usedforsecurity=False).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class FlowLimits:
    """The flow limits of one queue; ``None`` means no such limit.

    ``rate``: task starts per period across all workers, e.g. ``"100/s"`` or ``"5000/min"``.
    ``burst``: how many may start at once after a pause (default 1: evenly spaced).
    ``concurrency``: most tasks leased at once across all workers.

    Per key, for the queue's keyed tasks (``enqueue(key=...)``), each key on its own:
    ``key_rate`` and ``key_burst`` as ``rate`` and ``burst``; ``key_concurrency``: most tasks
    of one key running at once (1: one at a time, in the key's order);
    ``key_hold_on_retry``: a task waiting for a retry keeps its key's slot, so the key's later
    tasks wait for it (needs ``key_concurrency``).

    Per task type: ``types={"sync:crm": TypeLimits(rate="10/s", concurrency=2)}`` limits the
    queue's tasks of that type (their own rate and cap, on top of the queue's). A limited
    type's tasks are served in a lane of their own, in order, taking turns with the queue's
    other tasks and keys; so per-type limits cannot be combined with per-key limits (a keyed
    task of a limited type is served in its type's lane, outside its key's).
    """

    rate: str | None = None
    burst: int = 1
    concurrency: int | None = None
    key_rate: str | None = None
    key_burst: int = 1
    key_concurrency: int | None = None
    key_hold_on_retry: bool = False
    types: Mapping[str, TypeLimits] | None = None

    def __post_init__(self) -> None:
        if self.types is not None:
            object.__setattr__(self, "types", _check_types(self.types) or None)
        if self.types and (self.key_rate is not None or self.key_concurrency is not None):
            raise ValidationError(
                "per-type limits (types=) and per-key limits (key_rate, key_concurrency) "
                "cannot both be set on one queue: a keyed task of a limited type is served in "
                "its type's lane, outside its key's; put the limited type in a queue of its "
                "own (enqueue(..., queue=...)) and limit it there"
            )
        if self.rate is not None:
            parse_rate(self.rate)
        _check_count(self.burst, "burst")
        if self.concurrency is not None:
            _check_count(self.concurrency, "concurrency")
        if self.key_rate is not None:
            parse_rate(self.key_rate)
        _check_count(self.key_burst, "key_burst")
        if self.key_concurrency is not None:
            _check_count(self.key_concurrency, "key_concurrency")
        if not isinstance(self.key_hold_on_retry, bool):
            raise ValidationError(
                f"key_hold_on_retry must be True or False, got {self.key_hold_on_retry!r}"
            )
        if self.key_hold_on_retry and self.key_concurrency is None:
            raise ValidationError(
                "key_hold_on_retry holds a key's slot, so it needs key_concurrency (e.g. "
                "FlowLimits(key_concurrency=1, key_hold_on_retry=True) for strict order)"
            )

    @property
    def interval_ms(self) -> float | None:
        """Milliseconds between task starts, or None without a rate limit."""
        if self.rate is None:
            return None
        count, period_ms = parse_rate(self.rate)
        return period_ms / count

    @property
    def key_interval_ms(self) -> float | None:
        """Milliseconds between task starts of one key, or None without a per-key rate."""
        if self.key_rate is None:
            return None
        count, period_ms = parse_rate(self.key_rate)
        return period_ms / count

    @property
    def unlimited(self) -> bool:
        return (
            self.rate is None
            and self.concurrency is None
            and self.key_rate is None
            and self.key_concurrency is None
            and not self.types
        )


def _check_types(types: object) -> dict[str, TypeLimits]:
    if not isinstance(types, Mapping):
        raise ValidationError(
            "types must map task types to rq_sched.TypeLimits, e.g. "
            f"types={{'sync:crm': TypeLimits(rate='10/s')}}, got {types!r}"
        )
    if len(types) > MAX_TYPE_LIMITS:
        raise ValidationError(
            f"types limits {len(types)} task types; a queue may limit at most "
            f"{MAX_TYPE_LIMITS} (give the busiest types queues of their own)"
        )
    checked: dict[str, TypeLimits] = {}
    for task_type, limits in types.items():
        name = check_type(task_type)
        if not isinstance(limits, TypeLimits):
            raise ValidationError(
                f"types[{task_type!r}] must be rq_sched.TypeLimits(rate=..., burst=..., "
                f"concurrency=...), got {limits!r}"
            )
        checked[name] = limits
    return dict(sorted(checked.items()))


def _check_count(value: object, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_LIMIT:
        raise ValidationError(
            f"{name} must be an int from 1 to {MAX_LIMIT}, got {value!r}"
            + (" (for no cap, pass None)" if name.endswith("concurrency") else "")
        )


def check_limits(limits: object) -> FlowLimits:
    """``limits`` if it is a :class:`FlowLimits`.

    Raises:
        ValidationError: it is not.
    """
    if not isinstance(limits, FlowLimits):
        raise ValidationError(
            "flow limits must be rq_sched.FlowLimits(rate='100/s', burst=1, concurrency=5), "
            f"got {limits!r}"
        )
    return limits


def set_flow(keys: QueueKeys, limits: FlowLimits) -> Call:
    """Store ``limits`` as the queue's flow limits (replacing any); a fresh rate starts with a
    full burst. Wakes a worker, since looser limits may let tasks start."""
    interval = limits.interval_ms
    key_interval = limits.key_interval_ms
    return (
        scripts.load("set_flow"),
        (keys.flow, keys.marker, *keys.keyed),
        (
            "" if interval is None else repr(interval),
            limits.burst,
            "" if limits.concurrency is None else limits.concurrency,
            limits.rate or "",
            "" if key_interval is None else repr(key_interval),
            limits.key_burst,
            "" if limits.key_concurrency is None else limits.key_concurrency,
            limits.key_rate or "",
            "1" if limits.key_hold_on_retry else "",
            *(
                part
                for task_type, type_limits in (limits.types or {}).items()
                for part in (task_type, type_limits.spec(), type_lane_digest(task_type))
            ),
        ),
    )


def refuse_sharded(queue: str, shards: int) -> None:
    """Refuse flow limits for ``queue`` when it is stored as ``shards`` > 1 shards.

    Raises:
        ValidationError: ``queue`` is sharded (a limit kept per shard would not be the
            queue's limit).
    """
    if shards > 1:
        raise ValidationError(
            f"queue {queue!r} is sharded: flow limits cannot span its shards (each is its "
            "own slot); limit an unsharded queue, or set the queue back to 1 shard"
        )


@dataclass(frozen=True, slots=True)
class Hold:
    """Why a dequeue left ready tasks behind, and how long the caller may sleep."""

    reason: str
    """"rate" (no token now) or "cap" (the concurrency cap is reached): the queue's limits,
    or, when only keyed tasks are left and none of their keys may start one, the keys'."""
    wait_s: float | None
    """Seconds until the caller should ask again; None: until a marker wakes it."""


def dequeue_hold(reply: object) -> Hold | None:
    """The flow hold a dequeue reply ends with, if any (see ``lua/dequeue.lua``)."""
    if not isinstance(reply, list) or len(reply) % 5 != 1:
        return None
    last = reply[-1]
    if not isinstance(last, list) or len(last) != 2:
        return None
    reason = last[0].decode() if isinstance(last[0], bytes) else str(last[0])
    wait_ms = int(last[1])
    return Hold(reason, None if wait_ms < 0 else wait_ms / 1000)


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


@dataclass(frozen=True, slots=True)
class FlowStatus:
    """A queue's flow limits and where they stand now."""

    queue: str
    rate: str | None
    """The rate limit as it was set, e.g. ``"100/s"``."""
    interval_ms: float | None
    burst: int
    concurrency: int | None
    tokens: int | None
    """Tasks that may start right now by the rate limit (None without one)."""
    next_token_at: datetime | None
    """When the next token is due, if none is available now."""
    active: int
    """Tasks leased now (what the concurrency cap counts)."""
    pending: int
    held: bool
    """Ready tasks wait for a slot of the concurrency cap."""
    key_rate: str | None = None
    key_interval_ms: float | None = None
    key_burst: int = 1
    key_concurrency: int | None = None
    key_hold_on_retry: bool = False
    keyed_pending: int = 0
    """Keyed ready tasks (also counted in ``pending``)."""
    keys_ready: int = 0
    """Keys with ready tasks whose turn may come now (in the round robin)."""
    keys_waiting: int = 0
    """Keys held by their rate limit until their next token."""
    types: tuple[TypeStatus, ...] = ()
    """The limited task types (``FlowLimits.types``), by name."""

    @property
    def limited(self) -> bool:
        return self.interval_ms is not None or self.concurrency is not None

    @property
    def key_limited(self) -> bool:
        return self.key_interval_ms is not None or self.key_concurrency is not None


def read_status(redis: SyncRedis, keys: QueueKeys) -> FlowStatus:
    """The flow status of one queue, read by one script (``lua/flow_status.lua``) at one instant
    of the Redis clock that judges the limits."""
    call = (scripts.load("flow_status"), (keys.flow, keys.lease, keys.pending, *keys.keyed), ())
    raw, active, pending, now_ms, keyed, types = scripts.run(redis, *call)
    return status_from(
        keys.queue, raw, int(active), int(pending), float(now_ms), keyed=keyed, types=types
    )


def status_from(
    queue: str,
    raw: Sequence[Any],
    active: int,
    pending: int,
    now_ms: float,
    *,
    keyed: Sequence[Any] = (0, 0, 0),
    types: Sequence[Any] = (),
) -> FlowStatus:
    """Build a :class:`FlowStatus` from the flow hash fields (interval, burst, max_active, tat,
    held, rate, key_interval, key_burst, key_max_active, key_rate, key_hold) and the counts
    (``keyed``: keyed ready tasks, keys in turn, keys waiting for a token; ``pending``
    includes the first); ``now_ms`` is Redis TIME."""
    interval = _number(raw[0])
    burst = int(_number(raw[1]) or 1)
    cap = _number(raw[2])
    tokens, next_at = _tokens(interval, burst, _number(raw[3]) or 0.0, now_ms)
    key_interval = _number(raw[6]) if len(raw) > 6 else None
    key_cap = _number(raw[8]) if len(raw) > 8 else None
    rate_text = raw[5].decode() if isinstance(raw[5], bytes) else raw[5]
    if interval is not None and not rate_text:
        rate_text = f"1/{interval:g}ms"
    return FlowStatus(
        queue=queue,
        rate=rate_text if interval is not None else None,
        interval_ms=interval,
        burst=burst,
        concurrency=None if cap is None else int(cap),
        tokens=tokens,
        next_token_at=next_at,
        active=active,
        pending=pending,
        held=raw[4] not in (None, b"", ""),
        key_rate=_text(raw[9]) if key_interval is not None else None,
        key_interval_ms=key_interval,
        key_burst=int(_number(raw[7]) or 1),
        key_concurrency=None if key_cap is None else int(key_cap),
        key_hold_on_retry=_text(raw[10]) == "1",
        keyed_pending=int(keyed[0]),
        keys_ready=int(keyed[1]),
        keys_waiting=int(keyed[2]),
        types=tuple(sorted((_type_status(row, now_ms) for row in types), key=lambda t: t.type)),
    )


def _tokens(
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


def _type_status(row: Sequence[Any], now_ms: float) -> TypeStatus:
    """One row of ``flow_status.lua``'s types: type, spec, ready, running, tat, parked."""
    task_type = _text(row[0]) or ""
    interval_text, burst_text, cap_text, rate_text = ((_text(row[1]) or "").split("|") + [""] * 4)[
        :4
    ]
    interval = _number(interval_text) if interval_text else None
    burst = int(_number(burst_text) or 1) if burst_text else 1
    cap = int(cap_text) if cap_text.isdigit() else None
    pending = int(_number(row[2]) or 0)
    parked = _text(row[5]) if len(row) > 5 else None
    tokens, next_at = _tokens(
        interval, burst, (_number(row[4]) or 0.0) if len(row) > 4 else 0.0, now_ms
    )
    if pending == 0:
        state = "idle"
    elif parked == "c":
        state = "capped"
    elif parked == "w":
        state = "rate"
    else:
        state = "ready"
    return TypeStatus(
        type=task_type,
        rate=(rate_text or f"1/{interval:g}ms") if interval is not None else None,
        interval_ms=interval,
        burst=burst,
        concurrency=cap,
        pending=pending,
        running=int(_number(row[3]) or 0),
        state=state,
        tokens=tokens,
        next_token_at=next_at,
    )


def _text(raw: object) -> str | None:
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _number(raw: object) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw.decode() if isinstance(raw, bytes) else str(raw))
    except ValueError:
        return None
    return value if math.isfinite(value) else None
