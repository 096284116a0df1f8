"""A cancel recorded in Redis reaches the worker running the task even when the pub/sub
notification is missed (issue #10, case 17): the lease renewal reports it."""

from __future__ import annotations

import asyncio

import redis

from rq_sched import Client, Inspector, Router, Task, TaskState, ops, scripts
from rq_sched.keys import QueueKeys
from rq_sched.message import unique_of
from tests.worker_support import running_server, wait_until


def test_a_running_task_is_cancelled_by_the_record_alone(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    router = Router()

    @router.task("c:long")
    async def long(task: Task) -> None:
        await asyncio.sleep(30)

    task = Client(r, namespace=namespace).enqueue("c:long", None, max_retry=3)
    keys = QueueKeys(namespace, "default")
    with running_server(redis_url, router, namespace=namespace, lease_duration=1.0):
        wait_until(lambda: r.zscore(keys.lease, task.id) is not None, what="the task leased")
        # Recorded as Inspector.cancel_task records it, but never announced on pub/sub.
        assert scripts.run(r, *ops.cancel(keys, task.id, None)) == 1
        wait_until(lambda: r.zscore(keys.archived, task.id) is not None, what="archived")
    info = Inspector(r, namespace=namespace).get_task("default", task.id)
    assert info.state is TaskState.ARCHIVED
    assert info.last_error is not None and "cancelled" in info.last_error
    assert r.hexists(keys.cancel, task.id) == 0


def test_a_cancelled_task_of_a_dead_worker_is_archived_with_a_cancel_reason(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    # Found by the chaos soak's cancel storm: the recoverer archived such a task with no error
    # at all, so it read as archived without a reason (neither failed nor cancelled).
    client = Client(r, namespace=namespace)
    task = client.enqueue("c:any", None, max_retry=3, unique=60)
    keys = QueueKeys(namespace, "default")
    # A worker that died holding the task: leased, then never renewed; then the cancel.
    [leased] = ops.parse_dequeue(scripts.run(r, *ops.dequeue(keys, 1, 1)))
    assert leased.id == task.id
    assert scripts.run(r, *ops.cancel(keys, task.id, unique_of(leased.data))) == 1
    with running_server(redis_url, Router(), namespace=namespace, lease_duration=1.0):
        wait_until(lambda: r.zscore(keys.archived, task.id) is not None, what="archived")
    info = Inspector(r, namespace=namespace).get_task("default", task.id)
    assert info.state is TaskState.ARCHIVED
    assert info.last_error is not None and info.last_error.startswith("TaskCancelledError")
    assert r.hexists(keys.cancel, task.id) == 0
    assert not r.keys(f"{namespace}:{{default}}:unique:*")
    assert client.enqueue("c:any", None, unique=60).id != task.id  # the lock was released
