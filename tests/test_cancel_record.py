"""A cancel recorded in Redis reaches the worker running the task even when the pub/sub
notification is missed (issue #10, case 17): the lease renewal reports it."""

from __future__ import annotations

import asyncio

import redis

from rq_sched import Client, Inspector, Router, Task, TaskState, ops, scripts
from rq_sched.keys import QueueKeys
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
