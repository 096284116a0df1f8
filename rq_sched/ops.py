"""Argument building for every Lua script, apart from executing it.

Each function returns a :data:`~rq_sched.scripts.Call` (script, KEYS, ARGV) that the sync client,
the async client, the worker and the tests all run the same way. Keeping the argument layout in
one place keeps it in step with the script headers in ``lua/``.
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


def archive(
    keys: QueueKeys, task_id: str, *, unique: str | None, now_s: float, limits: ArchiveLimits
) -> Call:
    """An operator archives a pending, scheduled or retry task. The reply is
    ``[1, archived tasks deleted by the trim]``; the trim uses the queue's stored limits
    (``limits`` only when it has none)."""
    return (
        scripts.load("archive"),
        (
            *keys.state_keys,
            keys.result,
            keys.lost,
            keys.unique(unique),
            keys.cancel,
            keys.limits,
            keys.waiters,
            *keys.outbox_keys,
            keys.progress,
            *keys.keyed,
            keys.marker,
        ),
        (
            task_id,
            to_ms(now_s),
            limits.max_size,
            int(limits.max_age_s * 1000),
            keys.final_prefix,
            outcome_entry("archived", "archived by an operator"),
        ),
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


def cancel(keys: QueueKeys, task_id: str, unique: str | None) -> Call:
    """Record a cancel request for an active task (before announcing it)."""
    return (
        scripts.load("cancel"),
        (keys.msg, keys.lease, keys.cancel),
        (task_id, unique or ""),
    )


def delete(keys: QueueKeys, task_id: str, unique: str | None) -> Call:
    return (
        scripts.load("delete"),
        (
            *keys.state_keys,
            keys.result,
            keys.lost,
            keys.unique(unique),
            keys.cancel,
            keys.waiters,
            keys.progress,
            *keys.outbox_keys,
            *keys.keyed,
            keys.marker,
        ),
        (task_id, keys.final_prefix, outcome_entry("deleted", None)),
    )


def run_now(keys: QueueKeys, task_id: str) -> Call:
    return (
        scripts.load("run_now"),
        (*keys.state_keys, keys.marker, *keys.keyed),
        (task_id,),
    )


def set_paused(keys: QueueKeys, paused: bool) -> Call:
    return scripts.load("set_paused"), (keys.paused, keys.marker), ("1" if paused else "0",)


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


def dep_hold(keys: QueueKeys, task_id: str, held: bytes, record: bytes) -> Call:
    """Store a task that waits for its parents (see ``lua/dep_hold.lua``)."""
    return (
        scripts.load("dep_hold"),
        (keys.msg, keys.archived, keys.held, keys.deps, keys.result, keys.dep_parents),
        (task_id, held, record),
    )


def dep_link(
    keys: QueueKeys,
    parent_id: str,
    child: QueueKeys,
    child_id: str,
    *,
    index: int,
    expect_new: bool,
) -> Call:
    """Register ``child_id`` (of ``child``'s queue) as a dependant of ``parent_id``."""
    return (
        scripts.load("dep_link"),
        (
            keys.msg,
            keys.lease,
            keys.scheduled,
            keys.retry,
            keys.archived,
            keys.completed,
            keys.result,
            keys.children,
            keys.outbox,
            keys.held,
            keys.dependants(parent_id),
        ),
        (parent_id, child.queue, child_id, index, "1" if expect_new else "0"),
    )


def dep_report(
    keys: QueueKeys, child_id: str, index: int, entry: bytes, outcome: str, *, parent: str
) -> Call:
    """Deliver one parent's outcome to a held child (idempotent); ``parent`` is its
    "queue/id" name, for the error text of a failed parent."""
    return (
        scripts.load("dep_report"),
        (
            keys.held,
            keys.deps,
            keys.reports,
            keys.msg,
            keys.pending,
            keys.marker,
            keys.archived,
            keys.waiters,
            *keys.outbox_keys,
            keys.dep_parents,
        ),
        (child_id, index, entry, outcome, keys.final_prefix, parent),
    )


def dep_drop(keys: QueueKeys, task_id: str) -> Call:
    """An operator deletes a held task; NOT_FOUND when none is held under ``task_id``."""
    return (
        scripts.load("dep_drop"),
        (
            keys.held,
            keys.deps,
            keys.dep_parents,
            keys.reports,
            keys.waiters,
            *keys.outbox_keys,
        ),
        (task_id, keys.final_prefix, outcome_entry("deleted", None)),
    )


def dep_ack(keys: QueueKeys, task_id: str) -> Call:
    """Drop a delivered outcome record and the list of dependants it was delivered to."""
    return scripts.load("dep_ack"), (*keys.outbox_keys, keys.dependants(task_id)), (task_id,)


def dep_due(keys: QueueKeys, grace_ms: int, limit: int = BATCH_LIMIT) -> Call:
    """Ids whose recorded outcome is older than ``grace_ms`` and still undelivered."""
    return scripts.load("dep_due"), (keys.outbox_at,), (grace_ms, limit)


def dep_read(keys: QueueKeys, task_id: str) -> Call:
    """A task's dependants and recorded outcome: ``[[msgpack (child queue, child id, index),
    ...], entry or None]``."""
    return scripts.load("dep_read"), (keys.dependants(task_id), keys.outbox), (task_id,)


def task_brief(keys: QueueKeys, task_id: str) -> Call:
    """``[held, message or None, active, archived, completed]`` of one task (workflow status)."""
    return (
        scripts.load("task_brief"),
        (keys.held, keys.msg, keys.lease, keys.archived, keys.completed),
        (task_id,),
    )


def enqueue_grouped(
    keys: QueueKeys, group: str, entry: bytes, now_ms: int, limits: tuple[int, int, int]
) -> Call:
    """Add a task to aggregation group ``group``; ``limits`` (grace ms, max delay ms, max size)
    apply when the queue stores none. The reply is the group's size."""
    return (
        scripts.load("enqueue_grouped"),
        (keys.agg_group(group), keys.agg_groups, keys.agg_first, keys.agg_conf, keys.marker),
        (group, entry, now_ms, *limits),
    )


def agg_due(keys: QueueKeys, now_ms: int, limit: int = BATCH_LIMIT) -> Call:
    """Groups due by ``now_ms``: ``[groups, next due ms or -1]``."""
    return scripts.load("agg_due"), (keys.agg_groups,), (now_ms, limit)


def agg_take(keys: QueueKeys, group: str, now_ms: int, max_size: int) -> Call:
    """Read a due group's head entries (up to its max size)."""
    return (
        scripts.load("agg_take"),
        (keys.agg_group(group), keys.agg_groups, keys.agg_conf),
        (group, now_ms, max_size),
    )


def agg_commit(
    keys: QueueKeys,
    group: str,
    *,
    now_ms: int,
    grace_ms: int,
    task: Prepared | None,
    entries: Sequence[bytes],
) -> Call:
    """Replace the group's head ``entries`` by ``task`` (None: drop them), if still its head.
    The reply is 1 committed, 0 not the head any more, or CONFLICT (``task``'s id is taken:
    nothing changed)."""
    return (
        scripts.load("agg_commit"),
        (
            keys.agg_group(group),
            keys.agg_groups,
            keys.agg_first,
            keys.agg_conf,
            keys.msg,
            keys.pending,
            keys.marker,
            keys.archived,
            keys.result,
            keys.held,
        ),
        (
            group,
            now_ms,
            grace_ms,
            task.id if task is not None else "",
            task.encoded if task is not None else b"",
            *entries,
        ),
    )


def agg_conf(keys: QueueKeys, limits: tuple[int, int, int]) -> Call:
    """Store the queue's aggregation limits (grace ms, max delay ms, max size)."""
    return scripts.load("agg_conf"), (keys.agg_conf,), limits
