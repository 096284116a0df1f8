"""Argument building for every Lua script, apart from executing it.

Each function returns a :data:`~rq_sched.scripts.Call` (script, KEYS, ARGV) that the sync client,
the async client, the worker and the tests all run the same way. Keeping the argument layout in
one place keeps it in step with the script headers in ``lua/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rq_sched import scripts
from rq_sched.clock import utc_day
from rq_sched.keys import QueueKeys
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
        return scripts.load("enqueue"), key_list, (task.id, task.encoded, task.due_ms, 0, "")
    guard_key, guard_value = guard if guard else ("", "")
    return (
        scripts.load("enqueue"),
        (
            *_enqueue_state_keys(keys),
            keys.unique(task.message.unique),
            keys.guard(guard_key),
        ),
        (task.id, task.encoded, task.due_ms, task.unique_ttl_ms, guard_value),
    )


def _enqueue_state_keys(keys: QueueKeys) -> tuple[str, ...]:
    return (
        keys.msg,
        keys.pending,
        keys.scheduled,
        keys.marker,
        keys.archived,
        keys.completed,
        keys.result,
    )


_PLAIN_ENQUEUE_KEYS: dict[str, tuple[str, ...]] = {}


def _plain_enqueue_keys(keys: QueueKeys) -> tuple[str, ...]:
    if len(_PLAIN_ENQUEUE_KEYS) > 10_000:  # bounded: queue names are few, but be safe
        _PLAIN_ENQUEUE_KEYS.clear()
    found = (*_enqueue_state_keys(keys), keys.unique(None), keys.guard(""))
    _PLAIN_ENQUEUE_KEYS[keys.prefix] = found
    return found


def enqueue_batch(keys: QueueKeys, tasks: Sequence[Prepared]) -> Call:
    args: list[Arg] = []
    for task in tasks:
        args += (task.id, task.encoded, task.due_ms)
    return scripts.load("enqueue_batch"), _enqueue_state_keys(keys), args


def dequeue(keys: QueueKeys, lease_until_ms: int, count: int) -> Call:
    return (
        scripts.load("dequeue"),
        (keys.pending, keys.lease, keys.msg, keys.paused, keys.marker, keys.lost),
        (lease_until_ms, count),
    )


@dataclass(frozen=True, slots=True)
class Ack:
    """One finished task for :func:`done`."""

    id: str
    keep_until_ms: int = 0
    """0 deletes the task; otherwise it is kept as completed until then."""
    result: bytes = b""
    unique: str | None = None
    """Digest of the uniqueness lock to release, if the task holds one."""


def done(keys: QueueKeys, acks: Sequence[Ack], now_s: float) -> Call:
    key_list = [
        keys.lease,
        keys.msg,
        keys.completed,
        keys.result,
        keys.lost,
        keys.processed,
        keys.processed_on(utc_day(now_s)),
    ]
    args: list[Arg] = [day_expire_at(now_s)]
    for ack in acks:
        lock_index = 0
        if ack.unique:
            key_list.append(keys.unique(ack.unique))
            lock_index = len(key_list)
        args += (ack.id, ack.keep_until_ms, ack.result, lock_index)
    return scripts.load("done"), key_list, args


def retry(keys: QueueKeys, task_id: str, encoded: bytes, due_ms: int, now_s: float) -> Call:
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
        ),
        (task_id, encoded, due_ms, day_expire_at(now_s)),
    )


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """How much the archive keeps: at most ``max_size`` tasks, none older than ``max_age_s``."""

    max_size: int = 10_000
    max_age_s: float = 90 * 86400


def archive(
    keys: QueueKeys,
    task_id: str,
    *,
    encoded: bytes | None,
    unique: str | None,
    now_s: float,
    limits: ArchiveLimits,
    count_failure: bool,
) -> Call:
    """Archive an active task (``encoded`` = its updated message) or, with ``encoded=None``,
    a pending, scheduled or retry task by operator action."""
    return (
        scripts.load("archive"),
        (
            *keys.state_keys,
            keys.result,
            keys.lost,
            keys.unique(unique),
            keys.failed,
            keys.failed_on(utc_day(now_s)),
        ),
        (
            task_id,
            encoded or b"",
            int(now_s * 1000),
            day_expire_at(now_s),
            limits.max_size,
            int(limits.max_age_s * 1000),
            "1" if count_failure else "0",
        ),
    )


def requeue(keys: QueueKeys, ids: Sequence[str]) -> Call:
    return scripts.load("requeue"), (keys.lease, keys.pending, keys.marker), tuple(ids)


def forward(keys: QueueKeys, now_ms: int, limit: int = BATCH_LIMIT) -> Call:
    return (
        scripts.load("forward"),
        (keys.scheduled, keys.retry, keys.pending, keys.marker),
        (now_ms, limit),
    )


def extend(keys: QueueKeys, lease_until_ms: int, ids: Sequence[str]) -> Call:
    return scripts.load("extend"), (keys.lease,), (lease_until_ms, *ids)


def recover(keys: QueueKeys, now_ms: int, limit: int = BATCH_LIMIT) -> Call:
    return (
        scripts.load("recover"),
        (keys.lease, keys.pending, keys.marker, keys.lost),
        (now_ms, limit),
    )


def delete(keys: QueueKeys, task_id: str, unique: str | None) -> Call:
    return (
        scripts.load("delete"),
        (*keys.state_keys, keys.result, keys.lost, keys.unique(unique)),
        (task_id,),
    )


def run_now(keys: QueueKeys, task_id: str) -> Call:
    return (
        scripts.load("run_now"),
        (*keys.state_keys, keys.marker),
        (task_id,),
    )


def set_paused(keys: QueueKeys, paused: bool) -> Call:
    return scripts.load("set_paused"), (keys.paused, keys.marker), ("1" if paused else "0",)


def trim(keys: QueueKeys, now_ms: int, limits: ArchiveLimits, limit: int = BATCH_LIMIT) -> Call:
    return (
        scripts.load("trim"),
        (keys.completed, keys.archived, keys.msg, keys.result),
        (now_ms, limits.max_size, int(limits.max_age_s * 1000), limit),
    )
