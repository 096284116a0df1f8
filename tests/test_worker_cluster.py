"""The worker server on a real 3-master Redis Cluster: queues in different slots, one blocking
wake-up connection per queue, scheduled tasks and cancellation."""

from __future__ import annotations

import asyncio
import time

import pytest

from rq_sched import Client, Inspector, Router, Task, TaskState
from rq_sched.connection import connect
from rq_sched.local_redis import RedisCluster
from tests.worker_support import Recorder, running_server, wait_until

pytestmark = pytest.mark.cluster
QUEUES = {"alpha": 3, "beta": 2, "gamma": 1}


def test_a_worker_serves_queues_spread_over_cluster_shards(
    cluster: RedisCluster, namespace: str
) -> None:
    seen = Recorder()
    started = Recorder()
    router = Router()

    @router.task("c:t")
    async def note(task: Task) -> None:
        seen.add((task.queue, task.payload))

    @router.task("c:hang")
    async def hang(task: Task) -> None:
        started.add(task.id)
        await asyncio.sleep(600)

    conn = connect(cluster.url, cluster=True)
    try:
        client = Client(conn, namespace=namespace)
        inspector = Inspector(conn, namespace=namespace)
        options = {"queues": QUEUES, "cluster": True, "idle_timeout": 3600.0}
        with running_server(cluster.url, router, namespace=namespace, **options) as server:
            for i, queue in enumerate(list(QUEUES) * 3):
                client.enqueue("c:t", i, queue=queue)
            due = time.time() + 0.5
            client.enqueue("c:t", "later", queue="gamma", process_in=0.5)
            hanging = client.enqueue("c:hang", None, queue="beta")
            started.wait_for(1)
            wait_until(server.cancel_listener.subscribed.is_set, what="subscribed")
            assert inspector.cancel_task("beta", hanging.id) >= 1
            items = seen.wait_for(10)
            wait_until(
                lambda: inspector.get_task("beta", hanging.id).state is TaskState.ARCHIVED,
                what="the cancelled task archived",
            )
        assert sorted(map(str, items)) == sorted(
            map(str, [(q, i) for i, q in enumerate(list(QUEUES) * 3)] + [("gamma", "later")])
        )
        assert time.time() >= due
    finally:
        conn.close()
