"""The script calls that move a task through its life: enqueue, lease (dequeue, extend,
recover, requeue, forward), settle (done, retry, archive_active), report progress, and trim
finished tasks at the end of their retention.

The pieces every call shares live here too: the batch limits, the daily counters' expiry, the
archive's limits and a final outcome as recorded for dependants. Callers import all of it
through :mod:`rq_sched.ops`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from rq_sched import scripts
from rq_sched.clock import to_ms, utc_day
from rq_sched.durations import duration_seconds
from rq_sched.errors import ValidationError
from rq_sched.keys import QueueKeys
from rq_sched.message import TaskMessage, unique_of
from rq_sched.options import Prepared
from rq_sched.scripts import Arg, Call

DAILY_COUNTER_DAYS = 90
"""How long daily processed/failed counters are kept."""
BATCH_LIMIT = 500
"""Most tasks one batch script call moves; callers loop while a call comes back full."""
ENQUEUE_BATCH_LIMIT = 1000
"""Most tasks per enqueue_batch call; about 3 ms of Redis time with 100-byte payloads."""


def day_expire_at(now_s: float) -> int:
    """Epoch seconds at which today's daily counters expire."""
    return (int(now_s) // 86400 + 1 + DAILY_COUNTER_DAYS) * 86400


def enqueue(keys: QueueKeys, task: Prepared, guard: tuple[str, int] | None = None) -> Call:
    if guard is None and task.message.unique is None:
        # The common case, on the hot path: the same keys for every task of the queue.
        key_list = _PLAIN_ENQUEUE_KEYS.get(keys.prefix) or _plain_enqueue_keys(keys)
        return (
            scripts.load("enqueue"),
            key_list,
            (task.id, task.encoded, task.due_ms, 0, "", task.message.key or ""),
        )
    guard_key, guard_value = guard if guard else ("", "")
    return (
        scripts.load("enqueue"),
        (
            *_enqueue_state_keys(keys),
            keys.unique(task.message.unique),
            keys.guard(guard_key),
            keys.held,
            *keys.keyed,
        ),
        (
            task.id,
            task.encoded,
            task.due_ms,
            task.unique_ttl_ms,
            guard_value,
            task.message.key or "",
        ),
    )


def claim_tick(keys: QueueKeys, guard: str, fire_ms: int) -> Call:
    """Claim a periodic entry's tick without enqueueing (the entry is paused)."""
    return scripts.load("claim_tick"), (keys.guard(guard),), (fire_ms,)


def _enqueue_state_keys(keys: QueueKeys) -> tuple[str, ...]:
    return (
        keys.msg,
        keys.pending,
        keys.scheduled,
        keys.marker,
        keys.archived,
        keys.result,
    )


_PLAIN_ENQUEUE_KEYS: dict[str, tuple[str, ...]] = {}


def _plain_enqueue_keys(keys: QueueKeys) -> tuple[str, ...]:
    if len(_PLAIN_ENQUEUE_KEYS) > 10_000:  # bounded: queue names are few, but be safe
        _PLAIN_ENQUEUE_KEYS.clear()
    found = (
        *_enqueue_state_keys(keys),
        keys.unique(None),
        keys.guard(""),
        keys.held,
        *keys.keyed,
    )
    _PLAIN_ENQUEUE_KEYS[keys.prefix] = found
    return found


def enqueue_batch(keys: QueueKeys, tasks: Sequence[Prepared]) -> Call:
    args: list[Arg] = []
    for task in tasks:
        args += (task.id, task.encoded, task.due_ms, task.message.key or "")
    return (
        scripts.load("enqueue_batch"),
        (*_enqueue_state_keys(keys), keys.held, *keys.keyed),
        args,
    )


def dequeue(keys: QueueKeys, lease_ms: int, count: int) -> Call:
    """Lease up to ``count`` tasks for ``lease_ms`` (counted from Redis TIME, not this host's
    clock). The reply holds five values per task: id, message, lost count, lease token,
    cancelled flag (see ``lua/dequeue.lua``)."""
    return (
        scripts.load("dequeue"),
        (
            keys.pending,
            keys.lease,
            keys.msg,
            keys.paused,
            keys.marker,
            keys.lost,
            keys.token,
            keys.seq,
            keys.cancel,
            keys.flow,
            *keys.keyed,
        ),
        (lease_ms, count),
    )


@dataclass(frozen=True, slots=True)
class Leased:
    """One task a dequeue leased to this caller."""

    id: str
    data: bytes
    """The stored message, still encoded."""
    lost: int
    """How many times an earlier lease of it expired."""
    token: int
    """The fencing token of this lease; every settle and extend must present it."""
    cancelled: bool
    """An operator cancelled it: archive it as cancelled without running it."""


def parse_dequeue(reply: Sequence[Any]) -> list[Leased]:
    """The tasks in a :func:`dequeue` reply (a non-list reply, PAUSED, means none); a flow
    hold that may follow them is read by :func:`rq_sched.flow.dequeue_hold`."""
    if not isinstance(reply, list):
        return []
    return [
        Leased(
            reply[i].decode(),
            reply[i + 1],
            int(reply[i + 2]),
            int(reply[i + 3]),
            bool(reply[i + 4]),
        )
        for i in range(0, len(reply) - len(reply) % 5, 5)
    ]


@dataclass(frozen=True, slots=True)
class Ack:
    """One finished task for :func:`done`."""

    id: str
    token: int
    """The fencing token of the lease under which the task ran."""
    keep_until_ms: int = 0
    """0 deletes the task; otherwise it is kept as completed until then."""
    result: bytes = b""
    unique: str | None = None
    """Digest of the uniqueness lock to release, if the task holds one."""


def done(keys: QueueKeys, acks: Sequence[Ack], now_s: float) -> Call:
    """Acknowledge finished tasks; the reply is ``[settled, *ids not settled]`` (an id is not
    settled when its lease is gone or ``token`` is stale)."""
    key_list = [
        keys.lease,
        keys.msg,
        keys.completed,
        keys.result,
        keys.lost,
        keys.processed,
        keys.processed_on(utc_day(now_s)),
        keys.token,
        keys.cancel,
        keys.waiters,
        keys.progress,
        *keys.outbox_keys,
        keys.flow,
        keys.marker,
        *keys.keyed,
    ]
    args: list[Arg] = [day_expire_at(now_s), keys.final_prefix]
    for ack in acks:
        lock_index = 0
        if ack.unique:
            key_list.append(keys.unique(ack.unique))
            lock_index = len(key_list)
        args += (ack.id, ack.token, ack.keep_until_ms, ack.result, lock_index)
    return scripts.load("done"), key_list, args


def retry(
    keys: QueueKeys, task_id: str, token: int, *, encoded: bytes, due_ms: int, now_s: float
) -> Call:
    """Record a failed attempt and schedule the next; NOT_ACTIVE when ``token`` is stale."""
    return (
        scripts.load("retry"),
        (
            keys.lease,
            keys.msg,
            keys.retry,
            keys.pending,
            keys.marker,
            keys.failed,
            keys.failed_on(utc_day(now_s)),
            keys.token,
            keys.progress,
            keys.flow,
            *keys.keyed,
        ),
        (task_id, token, encoded, due_ms, day_expire_at(now_s)),
    )


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """How much the archive keeps: at most ``max_size`` tasks, none older than ``max_age_s``.

    The janitor stores its server's limits in the queue (``ns:{q}:limits``); archiving scripts
    use the stored ones and fall back to the limits passed only when none are stored."""

    max_size: int = 10_000
    max_age_s: float = 90 * 86400

    def __post_init__(self) -> None:
        size = self.max_size
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_ARCHIVE:
            raise ValidationError(
                f"archive max_size must be an int >= 0 (0 keeps no archived task; at most "
                f"{MAX_ARCHIVE}), got {size!r}"
            )
        duration_seconds(self.max_age_s, "archive max_age_s", allow_zero=False, allow_text=False)


MAX_ARCHIVE = 10**12
"""The largest archive size accepted (Lua keeps numbers as doubles, exact to 2**53)."""


def archive_active(
    keys: QueueKeys,
    task_id: str,
    token: int,
    *,
    encoded: bytes,
    unique: str | None,
    now_s: float,
    limits: ArchiveLimits,
    count_failure: bool,
    error: str = "",
) -> Call:
    """A worker archives the task it holds (``encoded`` = its updated message, ``error`` its
    error text, reported to dependants); NOT_ACTIVE when ``token`` is stale, 2 when the outcome
    was recorded for dependants (deliver it)."""
    return (
        scripts.load("archive_active"),
        (
            keys.msg,
            keys.lease,
            keys.token,
            keys.archived,
            keys.result,
            keys.lost,
            keys.cancel,
            keys.unique(unique),
            keys.failed,
            keys.failed_on(utc_day(now_s)),
            keys.limits,
            keys.waiters,
            keys.progress,
            *keys.outbox_keys,
            keys.flow,
            keys.marker,
            *keys.keyed,
        ),
        (
            task_id,
            token,
            encoded,
            to_ms(now_s),
            day_expire_at(now_s),
            limits.max_size,
            int(limits.max_age_s * 1000),
            "1" if count_failure else "0",
            keys.final_prefix,
            outcome_entry("archived", error),
        ),
    )


CORRUPT_TYPE = "rq_sched:corrupt"
"""Type given to an archived task whose stored message could not be decoded (kept as payload)."""


def archive_corrupt(
    keys: QueueKeys,
    task_id: str,
    token: int,
    *,
    raw: bytes,
    error: str,
    now_s: float,
    limits: ArchiveLimits,
) -> Call:
    """A worker archives a leased task whose message does not decode: the raw bytes are kept
    as the payload of a :data:`CORRUPT_TYPE` message (so listings still read it), and the
    uniqueness lock is released when the raw message still names one."""
    message = TaskMessage(type=CORRUPT_TYPE, payload=raw, max_retry=0).failed(error, to_ms(now_s))
    return archive_active(
        keys,
        task_id,
        token,
        encoded=message.encode(),
        unique=unique_of(raw),
        now_s=now_s,
        limits=limits,
        count_failure=True,
        error=error,
    )


def requeue(keys: QueueKeys, leases: Sequence[tuple[str, int]]) -> Call:
    """Hand leased tasks (id, token) back to the front of the queue."""
    args: list[Arg] = []
    for task_id, token in leases:
        args += (task_id, token)
    return (
        scripts.load("requeue"),
        (keys.lease, keys.pending, keys.marker, keys.token, *keys.keyed),
        args,
    )


def forward(keys: QueueKeys, now_ms: int, limit: int = BATCH_LIMIT) -> Call:
    return (
        scripts.load("forward"),
        (keys.scheduled, keys.retry, keys.pending, keys.marker),
        (now_ms, limit),
    )


def extend(keys: QueueKeys, lease_ms: int, leases: Sequence[tuple[str, int]]) -> Call:
    """Renew leases (id, token) to Redis TIME + ``lease_ms``. The reply is ``[gone ids,
    cancelled ids]``: leases no longer this caller's, and renewed tasks with a cancel recorded."""
    args: list[Arg] = [lease_ms]
    for task_id, token in leases:
        args += (task_id, token)
    return scripts.load("extend"), (keys.lease, keys.token, keys.cancel), args


def recover(keys: QueueKeys, limit: int = BATCH_LIMIT, *, lease_ms: int = 10_000) -> Call:
    """End leases expired by Redis TIME. The reply is ``[requeued ids, [id, message, token,
    ...]]``, the second list naming tasks with a recorded cancel, now leased to the caller for
    ``lease_ms``: archive each as cancelled with :func:`archive_active` (see
    ``lua/recover.lua``)."""
    return (
        scripts.load("recover"),
        (
            keys.lease,
            keys.pending,
            keys.marker,
            keys.lost,
            keys.token,
            keys.cancel,
            keys.seq,
            keys.msg,
            *keys.keyed,
        ),
        (limit, lease_ms),
    )


def trim(keys: QueueKeys, now_ms: int, limits: ArchiveLimits, limit: int = BATCH_LIMIT) -> Call:
    return (
        scripts.load("trim"),
        (keys.completed, keys.archived, keys.msg, keys.result, keys.limits),
        (now_ms, limits.max_size, int(limits.max_age_s * 1000), limit),
    )


def progress(keys: QueueKeys, task_id: str, token: int, encoded: bytes) -> Call:
    """A running handler's progress report; NOT_ACTIVE when ``token`` is stale."""
    return scripts.load("progress"), (keys.token, keys.progress), (task_id, token, encoded)


def unwait(keys: QueueKeys, task_id: str) -> Call:
    """Withdraw one waiter's registration for ``task_id``'s final state."""
    return scripts.load("unwait"), (keys.waiters,), (task_id,)


def outcome_entry(outcome: str, data: bytes | str | None) -> bytes:
    """A final outcome as recorded for dependants: msgpack ``[outcome, data]``."""
    return bytes(msgpack.packb([outcome, data], use_bin_type=True))
