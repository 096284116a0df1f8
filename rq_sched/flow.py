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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from rq_sched import scripts
from rq_sched.errors import ValidationError
from rq_sched.keys import QueueKeys
from rq_sched.lanes import (
    MAX_KEY_LIMITS,
    MAX_TYPE_LIMITS,
    TYPE_LANE_PREFIX,
    KeyLimits,
    TypeLimits,
    TypeStatus,
    check_keys,
    check_types,
    key_limits_from,
    lane_digest,
    type_lane_digest,
    type_status,
)
from rq_sched.rates import (
    JITTER_MS,
    MAX_LIMIT,
    MAX_PERIOD_MS,
    MAX_RATE_PER_S,
    check_count,
    gcra_tokens,
    number,
    parse_rate,
    text,
)
from rq_sched.scripts import Call, SyncRedis

__all__ = [
    "JITTER_MS",
    "MAX_KEY_LIMITS",
    "MAX_LIMIT",
    "MAX_PERIOD_MS",
    "MAX_RATE_PER_S",
    "MAX_TYPE_LIMITS",
    "TYPE_LANE_PREFIX",
    "FlowLimits",
    "FlowStatus",
    "Hold",
    "KeyLimits",
    "TypeLimits",
    "TypeStatus",
    "check_limits",
    "dequeue_hold",
    "parse_rate",
    "read_status",
    "set_flow",
    "status_from",
    "type_lane_digest",
]


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

    Per key, limits other than the defaults: ``keys={"tenant:vip": KeyLimits(concurrency=10,
    weight=4)}`` gives a key its own rate, burst and cap instead of ``key_*`` (a field left
    None: no such limit for it), and a weight: its share of the round robin.
    """

    rate: str | None = None
    burst: int = 1
    concurrency: int | None = None
    key_rate: str | None = None
    key_burst: int = 1
    key_concurrency: int | None = None
    key_hold_on_retry: bool = False
    types: Mapping[str, TypeLimits] | None = None
    keys: Mapping[str, KeyLimits] | None = None

    def __post_init__(self) -> None:
        if self.types is not None:
            # Read-only views: the checked limits cannot be changed behind the checks.
            types = check_types(self.types)
            object.__setattr__(self, "types", MappingProxyType(types) if types else None)
        if self.keys is not None:
            keys = check_keys(self.keys)
            object.__setattr__(self, "keys", MappingProxyType(keys) if keys else None)
        key_limits = self.key_rate is not None or self.key_concurrency is not None or self.keys
        if self.types and key_limits:
            raise ValidationError(
                "per-type limits (types=) and per-key limits (key_rate, key_concurrency, keys) "
                "cannot both be set on one queue: a keyed task of a limited type is served in "
                "its type's lane, outside its key's; put the limited type in a queue of its "
                "own (enqueue(..., queue=...)) and limit it there"
            )
        if self.rate is not None:
            parse_rate(self.rate)
        check_count(self.burst, "burst")
        if self.concurrency is not None:
            check_count(self.concurrency, "concurrency")
        if self.key_rate is not None:
            parse_rate(self.key_rate)
        check_count(self.key_burst, "key_burst")
        if self.key_concurrency is not None:
            check_count(self.key_concurrency, "key_concurrency")
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
            and not self.keys
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
                for part in ("T", task_type, type_limits.spec(), type_lane_digest(task_type))
            ),
            *(
                part
                for key, key_limits in (limits.keys or {}).items()
                for part in ("K", key, key_limits.spec(), lane_digest(key))
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
    keys: Mapping[str, KeyLimits] | None = None
    """The keys with limits of their own (``FlowLimits.keys``), by key."""

    @property
    def limited(self) -> bool:
        return self.interval_ms is not None or self.concurrency is not None

    @property
    def key_limited(self) -> bool:
        return self.key_interval_ms is not None or self.key_concurrency is not None

    def type_limits(self) -> dict[str, TypeLimits]:
        """The per-type limits as set (``FlowLimits.types``), to carry them over unchanged when
        other limits of the queue are changed."""
        return {t.type: t.limits for t in self.types}


def read_status(redis: SyncRedis, keys: QueueKeys) -> FlowStatus:
    """The flow status of one queue, read by one script (``lua/flow_status.lua``) at one instant
    of the Redis clock that judges the limits."""
    call = (scripts.load("flow_status"), (keys.flow, keys.lease, keys.pending, *keys.keyed), ())
    raw, active, pending, now_ms, keyed, types, *rest = scripts.run(redis, *call)
    return status_from(
        keys.queue,
        raw,
        int(active),
        int(pending),
        float(now_ms),
        keyed=keyed,
        types=types,
        key_limits=rest[0] if rest else (),
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
    key_limits: Sequence[Any] = (),
) -> FlowStatus:
    """Build a :class:`FlowStatus` from the flow hash fields (interval, burst, max_active, tat,
    held, rate, key_interval, key_burst, key_max_active, key_rate, key_hold) and the counts
    (``keyed``: keyed ready tasks, keys in turn, keys waiting for a token; ``pending``
    includes the first); ``now_ms`` is Redis TIME. ``types``: rows of the limited types;
    ``key_limits``: key, spec, key, spec ... of the keys with limits of their own."""
    interval = number(raw[0])
    burst = int(number(raw[1]) or 1)
    cap = number(raw[2])
    tokens, next_at = gcra_tokens(interval, burst, number(raw[3]) or 0.0, now_ms)
    key_interval = number(raw[6]) if len(raw) > 6 else None
    key_cap = number(raw[8]) if len(raw) > 8 else None
    own = {
        text(key_limits[i]) or "": key_limits_from(key_limits[i + 1])
        for i in range(0, len(key_limits) - 1, 2)
    }
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
        key_rate=text(raw[9]) if key_interval is not None else None,
        key_interval_ms=key_interval,
        key_burst=int(number(raw[7]) or 1),
        key_concurrency=None if key_cap is None else int(key_cap),
        key_hold_on_retry=text(raw[10]) == "1",
        keyed_pending=int(keyed[0]),
        keys_ready=int(keyed[1]),
        keys_waiting=int(keyed[2]),
        types=tuple(sorted((type_status(row, now_ms) for row in types), key=lambda t: t.type)),
        keys=dict(sorted(own.items())) or None,
    )
