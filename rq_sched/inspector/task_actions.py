"""Operator actions on single tasks: running one task's script with its failure code turned
into an error, reading the uniqueness lock a delete or archive releases, deleting a task (a
held orphan too), archiving one, and the dashboard's selection (one action on each of a list
of ids).

Bulk actions on a whole state, cancelling and queue-wide actions are in
:mod:`rq_sched.inspector.actions`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rq_sched import ops, scripts
from rq_sched.clock import Clock
from rq_sched.connection import translate_errors
from rq_sched.errors import TaskNotFoundError, TaskStateError, ValidationError, raise_for_code
from rq_sched.inspector import waiting
from rq_sched.inspector.models import SelectionResult
from rq_sched.keys import QueueKeys
from rq_sched.message import unique_of
from rq_sched.options import check_stored_id
from rq_sched.scripts import Call, SyncRedis

MAX_SELECTION = 500
"""Most task ids one selection action takes (one page at the largest page size)."""


def run(redis: SyncRedis, call: Call, queue: str, task_id: str) -> Any:
    """The reply of ``call``, a script on task ``task_id`` of ``queue``.

    Raises:
        TaskNotFoundError, TaskStateError, ...: the script answered a failure code.
    """
    script, keys, args = call
    with translate_errors(redis):
        reply = scripts.run(redis, script, keys, args)
    if isinstance(reply, int):
        raise_for_code(reply, queue=queue, task_id=task_id)
    return reply


def unique(redis: SyncRedis, keys: QueueKeys, task_id: str) -> str | None:
    """The uniqueness lock of task ``task_id`` (None: it has none).

    Raises:
        TaskNotFoundError: no such task.
    """
    with translate_errors(redis):
        data = redis.hget(keys.msg, task_id)
    if data is None:
        raise TaskNotFoundError(f"no task {task_id!r} in queue {keys.queue!r}")
    # Not decode(): a corrupt message must not stop an operator deleting or archiving it.
    return unique_of(data) if data else None  # type: ignore[arg-type]


def delete(redis: SyncRedis, keys: QueueKeys, task_id: str) -> None:
    """Delete task ``task_id`` (not active), or drop it while it waits for its parents.

    Raises:
        TaskNotFoundError: no such task.
        TaskStateError: the task is active.
    """
    with translate_errors(redis):
        held = waiting.is_waiting(redis, keys, task_id)
    if held:
        run(redis, ops.dep_drop(keys, task_id), keys.queue, task_id)
        return
    lock = unique(redis, keys, task_id)
    run(redis, ops.delete(keys, task_id, lock), keys.queue, task_id)


def archive(
    redis: SyncRedis, keys: QueueKeys, task_id: str, clock: Clock, limits: ops.ArchiveLimits
) -> int:
    """Archive task ``task_id`` (pending, scheduled or retry) at ``clock``'s now, releasing its
    uniqueness lock; returns how many older archived tasks the trim to ``limits`` deleted.

    Raises:
        TaskNotFoundError: no such task.
        TaskStateError: the task is active, archived or completed.
    """
    lock = unique(redis, keys, task_id)
    call = ops.archive(keys, task_id, unique=lock, now_s=clock.now(), limits=limits)
    return int(run(redis, call, keys.queue, task_id)[1])


def check_selection(actions: Mapping[str, object], task_ids: Sequence[str], action: str) -> None:
    """Refuse a selection with an unknown ``action`` or too few or too many ids.

    Raises:
        ValidationError: unknown action, or no ids / more than MAX_SELECTION.
    """
    if action not in actions:
        raise ValidationError(f"unknown action {action!r}; use run, archive, delete or cancel")
    if not 1 <= len(task_ids) <= MAX_SELECTION:
        raise ValidationError(f"select between 1 and {MAX_SELECTION} tasks")


def select(
    act: Callable[[str, str], object], queue: str, task_ids: Sequence[str], action: str
) -> SelectionResult:
    """``act`` (the action named ``action``) applied to each of ``task_ids`` of ``queue``, once
    every id is checked; ids it does not apply to (not found, wrong state) are reported in the
    result.

    Raises:
        ValidationError: a bad id (nothing acted on).
    """
    for task_id in task_ids:
        check_stored_id(task_id)  # all checked before any is acted on
    done: list[str] = []
    failed: dict[str, str] = {}
    for task_id in task_ids:
        try:
            act(queue, str(task_id))
        except (TaskNotFoundError, TaskStateError) as exc:
            failed[str(task_id)] = str(exc)
        else:
            done.append(str(task_id))
    return SelectionResult(queue, action, done, failed)
