"""One task's whole record, found and read for the inspector: its message, state, lease, result
and progress read in one transaction and turned into a :class:`~rq_sched.models.TaskInfo`
(:meth:`Inspector.get_task`), and which queues hold a given id (:meth:`Inspector.find_task`).

The state is the one sorted set that holds the id (lease, scheduled, retry, archived,
completed), else pending; a task held for its parents has no record yet and is reported as
waiting, with the command that lists such tasks.
"""

from __future__ import annotations

from rq_sched.clock import from_ms
from rq_sched.connection import translate_errors
from rq_sched.errors import TaskNotFoundError
from rq_sched.inspector import lists, waiting
from rq_sched.keys import QueueKeys
from rq_sched.message import decode
from rq_sched.models import AttemptError, ParentInfo, TaskInfo, TaskState, current_progress
from rq_sched.scripts import SyncRedis

ZSET_STATES = (
    TaskState.ACTIVE,
    TaskState.SCHEDULED,
    TaskState.RETRY,
    TaskState.ARCHIVED,
    TaskState.COMPLETED,
)
"""The states kept in a sorted set, in the order :func:`read_task` reads their scores."""


def read_task(redis: SyncRedis, keys: QueueKeys, task_id: str) -> TaskInfo:
    """Everything known about task ``task_id`` of the (physical) queue of ``keys``.

    Raises:
        TaskNotFoundError: no such task in that queue (or it waits for its parents).
        CorruptTaskError: the stored message cannot be decoded.
    """
    queue = keys.queue
    with translate_errors(redis):
        pipe = redis.pipeline(transaction=True)
        pipe.hget(keys.msg, task_id)
        for key in (keys.lease, keys.scheduled, keys.retry, keys.archived, keys.completed):
            pipe.zscore(key, task_id)
        pipe.hget(keys.lost, task_id)
        pipe.hget(keys.result, task_id)
        pipe.hget(keys.token, task_id)
        pipe.hget(keys.progress, task_id)
        data, *scores, lost, result, token, progress = pipe.execute()
    if data is None:
        if waiting.is_waiting(redis, keys, task_id):
            raise TaskNotFoundError(
                f"task {task_id!r} in queue {queue!r} is waiting for its parents (it has no "
                f"state until they are final): see `rq-sched waiting {queue}`"
            )
        raise TaskNotFoundError(f"no task {task_id!r} in queue {queue!r}")
    message = decode(data, task_id=task_id)
    state, score = next(
        ((s, sc) for s, sc in zip(ZSET_STATES, scores, strict=True) if sc is not None),
        (TaskState.PENDING, None),
    )
    due = lists.when(score)
    return TaskInfo(
        id=task_id,
        queue=queue,
        type=message.type,
        state=state,
        process_at=due if state in (TaskState.SCHEDULED, TaskState.RETRY) else None,
        payload=message.payload,
        max_retry=message.max_retry,
        retry_count=message.retried,
        last_error=message.last_error,
        last_failed_at=from_ms(message.last_failed_at) if message.last_failed_at else None,
        errors=[
            AttemptError(attempt, from_ms(at) if at else None, text)
            for attempt, at, text in message.attempt_errors()
        ],
        next_process_at=due if state in (TaskState.SCHEDULED, TaskState.RETRY) else None,
        timeout=message.timeout or None,
        deadline=from_ms(message.deadline) if message.deadline else None,
        retention=float(message.retention) or None,
        unique=message.unique is not None,
        headers=dict(message.headers or {}),
        enqueued_at=from_ms(message.enqueued_at) if message.enqueued_at else None,
        lease_expires_at=due if state is TaskState.ACTIVE else None,
        lost_count=lists.count(lost),
        result=result,
        expires_at=due if state is TaskState.COMPLETED else None,
        progress=current_progress(progress, token) if state is TaskState.ACTIVE else None,
        parents=[
            ParentInfo(queue, parent_id, outcome, data if isinstance(data, str) else None)
            for outcome, data, queue, parent_id in message.parents or ()
        ],
        key=message.key,
    )


def holders(redis: SyncRedis, queues: list[QueueKeys], task_id: str) -> list[bool]:
    """Whether each of ``queues`` stores a task ``task_id`` (one round trip for all)."""
    with translate_errors(redis):
        pipe = redis.pipeline(transaction=False)
        for keys in queues:
            pipe.hexists(keys.msg, task_id)
        return [bool(found) for found in pipe.execute()]
