"""Operator actions on many tasks, or on a whole queue: bulk run / delete / archive per state
(over every shard of a sharded queue), cancelling an active task, and deleting a queue.

Bulk actions never run one unbounded script: they read the state's ids a bounded batch at a
time and run the same per-task scripts as the single-task actions, a batch per pipeline. Tasks
that change state meanwhile (a worker took it, another operator moved it) are skipped, counted,
and left where they are. "archive" trims the archive by the queue's own stored limits, and
every task that trim deletes is counted in the result (``BulkResult.trimmed``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.cluster import RedisCluster
from redis.exceptions import ResponseError

from rq_sched import errors, ops, scripts
from rq_sched.errors import (
    RqSchedError,
    TaskNotFoundError,
    TaskStateError,
    ValidationError,
)
from rq_sched.inspector.lists import count_state, parse_state, pending_window, state_key
from rq_sched.inspector.models import BulkResult
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.message import unique_of
from rq_sched.models import TaskState, encode_cancel
from rq_sched.scripts import Call, SyncRedis

BULK_BATCH = 200
"""Tasks read and acted on per round trip in bulk actions."""
DELETE_BATCH = 500
"""Keys deleted per DEL when removing a queue's pattern keys."""

BULK_ACTIONS: dict[str, frozenset[TaskState]] = {
    "run": frozenset({TaskState.SCHEDULED, TaskState.RETRY, TaskState.ARCHIVED}),
    "delete": frozenset(
        {
            TaskState.PENDING,
            TaskState.SCHEDULED,
            TaskState.RETRY,
            TaskState.ARCHIVED,
            TaskState.COMPLETED,
        }
    ),
    "archive": frozenset({TaskState.PENDING, TaskState.SCHEDULED, TaskState.RETRY}),
}
"""Which states each bulk action applies to (active tasks are cancelled one by one)."""


def check_bulk(state: object, action: object) -> tuple[TaskState, str]:
    """Validate a bulk request.

    Raises:
        ValidationError: unknown state or action, or an action that does not apply to the state.
    """
    parsed = parse_state(state)
    if action not in BULK_ACTIONS:
        raise ValidationError(f"unknown bulk action {action!r}; use one of: run, delete, archive")
    name = str(action)
    if parsed not in BULK_ACTIONS[name]:
        allowed = ", ".join(sorted(s.value for s in BULK_ACTIONS[name]))
        raise ValidationError(
            f"{name} does not apply to {parsed.value} tasks; it applies to: {allowed}"
        )
    return parsed, name


def bulk(
    redis: SyncRedis,
    keys: QueueKeys,
    state: TaskState,
    action: str,
    *,
    now_s: float,
    limits: ops.ArchiveLimits,
    batch: int = BULK_BATCH,
    limit: int | None = None,
) -> BulkResult:
    """Apply ``action`` to every task in ``state`` (as many as there were when it started), or
    to at most ``limit`` of them (callers loop to keep each request short; the result then
    says how many remain).

    Raises:
        ValidationError: the action does not apply to the state.
        RqSchedError: a script failed unexpectedly.
    """
    state, action = check_bulk(state, action)
    total = count_state(redis, keys, state)
    total = total if limit is None else min(total, limit)
    done = skipped = trimmed = 0
    while done + skipped < total:
        ids = _window(redis, keys, state, skipped, min(batch, total - done - skipped))
        if not ids:
            break
        calls = _calls(redis, keys, action, ids, now_s=now_s, limits=limits)
        applied, dropped = _count_applied(ids, _run_calls(redis, calls), action)
        done += applied
        trimmed += dropped
        # Tasks the action skipped stay at the front of the window; step over them.
        skipped += len(ids) - applied
    remaining = None
    if limit is not None:  # the caller loops: say what is left (keyed ready tasks included)
        remaining = int(count_state(redis, keys, state))
    return BulkResult(keys.queue, state, action, done, skipped, trimmed, remaining)


def bulk_each(
    redis: SyncRedis,
    queues: Sequence[QueueKeys],
    state: TaskState,
    action: str,
    *,
    now_s: float,
    limits: ops.ArchiveLimits,
    limit: int | None,
) -> list[BulkResult]:
    """:func:`bulk` on each of ``queues`` (the shards of one queue) in turn; ``limit`` is
    shared, each queue taking what the ones before it left."""
    parts: list[BulkResult] = []
    budget = limit
    for keys in queues:
        part = bulk(
            redis,
            keys,
            state,
            action,
            now_s=now_s,
            limits=limits,
            limit=None if budget is None else max(budget, 0),
        )
        parts.append(part)
        if budget is not None:
            budget -= part.done + part.skipped
    return parts


def _window(
    redis: SyncRedis, keys: QueueKeys, state: TaskState, offset: int, count: int
) -> list[str]:
    """``count`` ids of ``state`` after the first ``offset`` (oldest end of pending)."""
    if state is TaskState.PENDING:
        return pending_window(redis, keys, offset, count)
    raw: list[Any] = list(redis.zrange(state_key(keys, state), offset, offset + count - 1))
    return [i.decode() if isinstance(i, bytes) else str(i) for i in raw]


def _calls(
    redis: SyncRedis,
    keys: QueueKeys,
    action: str,
    ids: Sequence[str],
    *,
    now_s: float,
    limits: ops.ArchiveLimits,
) -> list[Call]:
    if action == "run":
        return [ops.run_now(keys, task_id) for task_id in ids]
    uniques = _unique_digests(redis, keys, ids)
    if action == "delete":
        return [ops.delete(keys, i, u) for i, u in zip(ids, uniques, strict=True)]
    return [
        ops.archive(keys, i, unique=u, now_s=now_s, limits=limits)
        for i, u in zip(ids, uniques, strict=True)
    ]


def _unique_digests(redis: SyncRedis, keys: QueueKeys, ids: Sequence[str]) -> list[str | None]:
    """The uniqueness digest each task holds (None when none, missing or unreadable)."""
    found: list[Any] = redis.hmget(keys.msg, list(ids))
    return [unique_of(data) if data else None for data in found]


def _run_calls(redis: SyncRedis, calls: Sequence[Call]) -> list[Any]:
    """Results of ``calls`` in order, script errors as values (like ``run_pipeline``)."""
    if not isinstance(redis, RedisCluster):
        return scripts.run_pipeline(redis, calls)
    # redis-py refuses EVALSHA in cluster pipelines, so a cluster gets one call per task.
    out: list[Any] = []
    for script, keys, args in calls:
        try:
            out.append(scripts.run(redis, script, keys, args))
        except ResponseError as exc:
            out.append(exc)
    return out


def _count_applied(ids: Sequence[str], results: Sequence[Any], action: str) -> tuple[int, int]:
    """(tasks applied, archived tasks trimmed) from a batch's replies; failure codes count as
    skipped."""
    applied = trimmed = 0
    for task_id, result in zip(ids, results, strict=True):
        if isinstance(result, Exception):
            raise RqSchedError(f"bulk {action} failed on task {task_id!r}: {result}") from result
        if isinstance(result, list):  # archive: [1, trimmed]
            applied += 1
            trimmed += int(result[1])
        else:
            applied += int(result == 1)
    return applied, trimmed


def read_limits(redis: SyncRedis, keys: QueueKeys, default: ops.ArchiveLimits) -> ops.ArchiveLimits:
    """The archive limits stored for the queue by its workers' janitor, else ``default``."""
    size, age_ms = redis.hmget(keys.limits, ["max_size", "max_age_ms"])
    return ops.ArchiveLimits(
        max_size=int(size) if size is not None else default.max_size,
        max_age_s=int(age_ms) / 1000 if age_ms is not None else default.max_age_s,
    )


def cancel(
    redis: SyncRedis,
    global_keys: GlobalKeys,
    keys: QueueKeys,
    task_id: str,
    unique: str | None = None,
) -> int:
    """Record the cancellation of an active task in Redis, then announce it to every worker
    server. The record holds even if nobody hears the announcement: the worker running it
    finds it when it renews the lease, and if that worker is gone the recoverer archives the
    task as cancelled; it never runs again.

    Returns:
        How many servers received the announcement (the one running the task cancels it).

    Raises:
        TaskNotFoundError: no such task.
        TaskStateError: the task is not active (delete or archive it instead).
    """
    script, key_list, args = ops.cancel(keys, task_id, unique)
    code = scripts.run(redis, script, key_list, args)
    if code == errors.NOT_FOUND:
        raise TaskNotFoundError(f"no task {task_id!r} in queue {keys.queue!r}")
    if code == errors.WRONG_STATE:
        raise TaskStateError(
            f"task {task_id!r} in queue {keys.queue!r} is not active, so there is nothing to "
            "cancel; delete or archive it instead"
        )
    return int(redis.publish(global_keys.cancel_channel, encode_cancel(keys.queue, task_id)))


def check_idle(redis: SyncRedis, keys: QueueKeys) -> None:
    """Refuse to delete a queue that has active tasks.

    Raises:
        TaskStateError: the queue has active tasks.
    """
    active = int(redis.zcard(keys.lease))
    if active:
        raise TaskStateError(
            f"queue {keys.queue!r} has {active} active task(s); stop its workers first, "
            "or force the deletion (their results will be dropped)"
        )


def delete_queue(redis: SyncRedis, global_keys: GlobalKeys, keys: QueueKeys, *, force: bool) -> int:
    """Delete every key of a queue and drop it from the registry; returns keys deleted.

    Raises:
        TaskStateError: the queue has active tasks and ``force`` is false.
    """
    if not force:
        check_idle(redis, keys)
    redis.srem(global_keys.queues, keys.queue)
    deleted = int(redis.delete(*keys.all_fixed()))
    found: list[Any] = []
    for key in redis.scan_iter(match=keys.pattern(), count=1000):
        found.append(key)
        if len(found) >= DELETE_BATCH:
            deleted += int(redis.delete(*found))
            found = []
    if found:
        deleted += int(redis.delete(*found))
    return deleted
