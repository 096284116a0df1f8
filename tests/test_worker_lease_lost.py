"""A handler never starts under a lease its worker already knows it lost (found by the chaos
soak's loop stalls).

A task leased here can wait before its handler starts (for a process slot, a thread). If its
lease is lost meanwhile (the worker stalled, the task was recovered, run elsewhere and settled),
the lease keeper reports it gone; starting the handler after that would run the task after its
final settle. The handler must not start, and the stale run's outcome is dropped.
"""

from __future__ import annotations

import threading
import time

import redis

from rq_sched import Client, Router, Task, ops, scripts
from rq_sched.keys import QueueKeys
from tests.worker_support import running_server, wait_until


def record_start(task: Task) -> None:
    """Records its task id in Redis, then works ``payload["sleep"]`` seconds."""
    with redis.Redis.from_url(task.payload["url"]) as conn:
        conn.rpush(task.payload["starts"], task.id)
    time.sleep(float(task.payload["sleep"]))


def test_a_task_waiting_for_a_process_slot_never_starts_once_its_lease_is_lost(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    router = Router()
    router.add("ll:work", record_start, process=True)
    keys = QueueKeys(namespace, "default")
    starts = f"{namespace}:starts"
    client = Client(r, namespace=namespace)
    with running_server(
        redis_url, router, namespace=namespace, processes=1, concurrency=2, lease_duration=1.0
    ) as server:
        first = client.enqueue("ll:work", {"url": redis_url, "starts": starts, "sleep": 3})
        assert r.blpop([starts], timeout=20) is not None, "the first task never started"
        waiting = client.enqueue("ll:work", {"url": redis_url, "starts": starts, "sleep": 0})
        wait_until(lambda: r.zscore(keys.lease, waiting.id) is not None, what="waiting leased")
        # Its lease ends (as after a stall); another worker recovers it, runs it, settles it.
        r.zadd(keys.lease, {waiting.id: 1}, xx=True)
        assert scripts.run(r, *ops.recover(keys)) == [[waiting.id.encode()], []]
        [other] = ops.parse_dequeue(scripts.run(r, *ops.dequeue(keys, 60_000, 1)))
        assert other.id == waiting.id
        assert scripts.run(r, *ops.done(keys, [ops.Ack(other.id, other.token)], time.time())) == [1]
        processor = server.processor
        assert processor is not None
        wait_until(lambda: r.zscore(keys.lease, first.id) is None, timeout=20, what="first done")
        wait_until(lambda: processor.busy() == 0, timeout=20, what="every slot free")
    assert r.lrange(starts, 0, -1) == [], "the task started here after its lease was lost"


def test_a_task_leased_before_a_loop_stall_does_not_start_after_it_was_settled_elsewhere(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    # The worker's event loop is blocked (a handler calling time.sleep) with a second task
    # leased and about to start. Meanwhile its lease expires, another worker recovers, runs
    # and settles it. When the loop runs again, the task must not start here.
    router = Router()
    stalled = threading.Event()
    started: list[str] = []

    @router.task("ll:stall")
    async def stall(task: Task) -> None:
        stalled.set()
        time.sleep(2.5)  # blocks the loop, on purpose

    @router.task("ll:victim")
    async def victim(task: Task) -> None:
        started.append(task.id)

    keys = QueueKeys(namespace, "default")
    client = Client(r, namespace=namespace)
    client.enqueue("ll:stall", None, max_retry=0)
    task = client.enqueue("ll:victim", None)
    with running_server(
        redis_url, router, namespace=namespace, concurrency=2, lease_duration=1.0
    ) as server:
        assert stalled.wait(10), "the stalling handler never started"
        wait_until(lambda: r.zscore(keys.lease, task.id) is not None, what="victim leased")
        r.zadd(keys.lease, {task.id: 1}, xx=True)
        requeued, _ = scripts.run(r, *ops.recover(keys))
        assert task.id.encode() in requeued
        [other] = ops.parse_dequeue(scripts.run(r, *ops.dequeue(keys, 60_000, 1)))
        assert other.id == task.id
        assert scripts.run(r, *ops.done(keys, [ops.Ack(other.id, other.token)], time.time())) == [1]
        processor = server.processor
        assert processor is not None
        wait_until(lambda: processor.busy() == 0, timeout=20, what="every slot free")
    assert started == [], "the task started here after another worker settled it"
