"""Reading the state of a queue's fairness keys (``enqueue(key=...)``) for the Inspector, the
CLI, the dashboard and the metrics.

The keys themselves are served inside the dequeue script (``lua/includes/keyed.lua``): round
robin across keys, each key's tasks in order, with the per-key limits of the queue's
:class:`~rq_sched.flow.FlowLimits`. Here only their state is read: ready tasks and running tasks
per key, and whether a key waits for a slot of its cap or for its next token.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rq_sched.flow import JITTER_MS, TYPE_LANE_PREFIX, KeyLimits, read_status
from rq_sched.keys import QueueKeys
from rq_sched.scripts import SyncRedis

MAX_FIELDS_READ = 50_000
"""Fields of the per-key state hash read at most per call (a bounded admin read: about
12,000 keys with tasks)."""


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """One fairness key of a queue and where it stands."""

    key: str
    pending: int
    """Its ready tasks (pending, waiting for their turn)."""
    running: int
    """Its running tasks, plus, with ``key_hold_on_retry``, those waiting for a retry."""
    state: str
    """"ready" (its turn comes in the round robin), "capped" (at its ``key_concurrency``:
    waits for a running task to end), "rate" (waits for its next token), or "idle"."""
    next_token_at: datetime | None = None
    """With state "rate": when its next task may start."""
    tokens: int | None = None
    """Tasks of this key its rate limit lets start right now (None without a per-key rate)."""


@dataclass(frozen=True, slots=True)
class FlowKeys:
    """The fairness keys of a queue that have ready or running tasks."""

    queue: str
    total: int
    """How many keys have ready or running tasks."""
    keys: list[KeyStatus]
    """The ones with the most ready tasks (then the most running), as many as asked for."""


def read_keys_now(redis: SyncRedis, keys: QueueKeys, limit: int) -> FlowKeys:
    """:func:`read_keys` with each key's tokens counted now: the queue's per-key rate read from
    its flow limits, the time from Redis ``TIME``."""
    status = read_status(redis, keys)
    interval = status.key_interval_ms
    rate = None if interval is None else (interval, status.key_burst)
    seconds, micros = redis.time()
    now_ms = seconds * 1000 + micros / 1000
    return read_keys(redis, keys, limit, rate=rate, now_ms=now_ms, own=status.keys)


def read_keys(
    redis: SyncRedis,
    keys: QueueKeys,
    limit: int = 20,
    *,
    rate: tuple[float, int] | None = None,
    now_ms: float = 0.0,
    own: Mapping[str, KeyLimits] | None = None,
) -> FlowKeys:
    """The keys of ``keys.queue`` with ready or running tasks, read from the per-key state (at
    most MAX_FIELDS_READ fields). With ``rate`` (the per-key interval in ms and burst) and
    ``now_ms`` (Redis TIME), each key's tokens now are counted too; a key in ``own`` (the keys
    with limits of their own) by its own rate."""
    _, kring, kwait, kstate = keys.keyed
    found: dict[str, dict[str, Any]] = {}
    for read, (raw_field, raw_value) in enumerate(redis.hscan_iter(kstate, count=1000)):
        if read >= MAX_FIELDS_READ:
            break
        field = _text(raw_field)
        kind, _, digest = field.partition(":")
        if kind in ("n", "a", "p", "k", "r") and digest:
            found.setdefault(digest, {})[kind] = _text(raw_value)
    # A limited type's lane (``FlowStatus.types`` shows it) is no key of the user's.
    busy = [
        (d, f)
        for d, f in found.items()
        if ("n" in f or "a" in f) and not f.get("k", "").startswith(TYPE_LANE_PREFIX)
    ]
    busy.sort(key=lambda item: (-int(item[1].get("n", 0)), -int(item[1].get("a", 0)), item[0]))
    shown = busy[:limit]
    if not shown:
        return FlowKeys(keys.queue, len(busy), [])
    digests = [d for d, _ in shown]
    pipe = redis.pipeline(transaction=False)
    pipe.zmscore(kring, digests)
    pipe.zmscore(kwait, digests)
    in_ring, waits = pipe.execute()
    out = []
    for (digest, fields), ring_score, wait_ms in zip(shown, in_ring, waits, strict=True):
        key = fields.get("k", digest)
        key_rate = rate
        if own and key in own:
            interval = own[key].interval_ms
            key_rate = None if interval is None else (interval, own[key].burst)
        pending = int(fields.get("n", 0))
        parked = fields.get("p")
        state = "idle"
        next_at = None
        if parked == "w" and wait_ms is not None:
            state = "rate"
            next_at = datetime.fromtimestamp(float(wait_ms) / 1000, UTC)
        elif parked == "c":
            state = "capped"
        elif ring_score is not None or pending:
            state = "ready"
        out.append(
            KeyStatus(
                key=key,
                pending=pending,
                running=int(fields.get("a", 0)),
                state=state,
                next_token_at=next_at,
                tokens=None
                if key_rate is None
                else _tokens(key_rate, float(fields.get("r", 0)), now_ms),
            )
        )
    return FlowKeys(keys.queue, len(busy), out)


def _tokens(rate: tuple[float, int], tat: float, now_ms: float) -> int:
    """The GCRA's tokens now, as ``lua/includes/keyed.lua`` counts them."""
    interval, burst = rate
    tau = (burst - 1) * interval + JITTER_MS
    return max(0, math.floor((now_ms + tau - max(tat, now_ms)) / interval) + 1)


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
