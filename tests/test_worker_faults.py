"""Worker fault tolerance with real processes: a worker killed with SIGKILL mid-task, a graceful
SIGTERM shutdown, and Redis restarted (with AOF) under a running worker. No task is lost.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import redis

from rq_sched import Client, NewTask, Router, Task
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.local_redis import RedisServer
from tests import handlers
from tests.worker_support import (
    Recorder,
    cli_worker,
    queue_state,
    running_server,
    stop_process,
    texts,
    wait_server_registered,
    wait_until,
)

EMPTY = {k: 0 for k in ("msg", "pending", "lease", "scheduled", "retry", "archived", "completed")}


def test_tasks_of_a_killed_worker_are_completed_by_another_none_lost(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    lists = {"started": f"{namespace}:started", "done": f"{namespace}:done"}
    payload = {"url": redis_url, "sleep": 0.5, **lists}
    client = Client(r, namespace=namespace)
    ids = [
        t.id
        for t in client.enqueue_many(NewTask(type="rec:slow", payload=payload) for _ in range(8))
    ]
    proc = cli_worker(redis_url, namespace, "--lease", "1", "--concurrency", "4")
    try:
        wait_until(lambda: r.llen(lists["started"]) >= 4, timeout=20, what="4 tasks started")
    finally:
        proc.send_signal(signal.SIGKILL)
        code, _ = stop_process(proc)
    killed_at = time.monotonic()
    assert code == -signal.SIGKILL
    held = set(texts(r.zrange(QueueKeys(namespace, "default").lease, 0, -1)))
    assert held, "the killed worker held no lease: the kill was not mid-task"
    with running_server(redis_url, handlers.router, namespace=namespace, recover_interval=0.2):
        wait_until(
            lambda: set(ids) <= set(texts(r.lrange(lists["done"], 0, -1))),
            timeout=20,
            what="every task done",
        )
        recovered_in = time.monotonic() - killed_at
    print(f"\nkilled worker's {len(held)} task(s) all done {recovered_in:.2f}s after SIGKILL")
    assert queue_state(r, namespace) == EMPTY
    assert r.hlen(QueueKeys(namespace, "default").lost) == 0


def test_sigterm_hands_unfinished_tasks_back_to_pending_at_once(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    started = f"{namespace}:started"
    client = Client(r, namespace=namespace)
    payload = {"url": redis_url, "started": started, "done": f"{namespace}:done", "sleep": 600}
    tasks = [NewTask(type="rec:hang", payload=payload) for _ in range(4)]
    tasks.append(NewTask(type="rec:slow", payload=payload))  # a sync handler stuck in a thread
    tasks += [NewTask(type="rec:hang", payload=payload) for _ in range(2)]  # never started
    ids = {t.id for t in client.enqueue_many(tasks)}
    proc = cli_worker(
        redis_url, namespace, "--lease", "60", "--concurrency", "5", "--shutdown-timeout", "0.2"
    )
    wait_server_registered(r, namespace, proc)
    wait_until(lambda: r.llen(started) >= 5, timeout=20, what="5 tasks running")
    signalled = time.monotonic()
    code, err = stop_process(proc, signal.SIGTERM)
    took = time.monotonic() - signalled
    keys = QueueKeys(namespace, "default")
    state = queue_state(r, namespace)
    assert code == 0, err
    assert state["lease"] == 0
    assert set(texts(r.lrange(keys.pending, 0, -1))) == ids
    # Neither the handlers nor a lease (60 s) were waited for; not even the stuck thread.
    assert took < 10, f"the worker took {took:.1f}s to exit"
    assert r.zcard(GlobalKeys(namespace).servers) == 0  # its heartbeat record is cleared
    assert "Traceback" not in err
    # What was handed back runs normally on the next worker.
    seen = Recorder()
    router = Router()

    @router.task("rec:hang")
    async def quick(task: Task) -> None:
        seen.add(task.id)

    router.add("rec:slow", quick)
    with running_server(redis_url, router, namespace=namespace):
        assert set(seen.wait_for(7)) == ids
    assert queue_state(r, namespace) == EMPTY


def test_worker_reconnects_after_redis_restarts_and_loses_nothing(
    fresh_redis: RedisServer, namespace: str
) -> None:
    seen = Recorder()
    router = Router()

    @router.task("rs:t")
    async def work(task: Task) -> None:
        await asyncio.sleep(0.05)
        seen.add(task.payload)

    def enqueue(numbers: range, **options: float) -> None:
        with Client.from_url(fresh_redis.url, namespace=namespace) as client:
            client.enqueue_many(NewTask(type="rs:t", payload=n, **options) for n in numbers)  # type: ignore[arg-type]

    options = {"concurrency": 4, "batch_size": 2}
    with running_server(fresh_redis.url, router, namespace=namespace, **options) as server:
        enqueue(range(40))
        enqueue(range(100, 102), process_in=1.5)  # due after the restart
        seen.wait_for(5)
        fresh_redis.restart()  # while tasks are running and acknowledgements are buffered
        restarted = time.monotonic()
        enqueue(range(200, 210))
        wait_until(
            lambda: {*range(40), 100, 101, *range(200, 210)} <= set(seen.items),
            timeout=30,
            what="every task run",
        )
        print(f"\nall tasks run {time.monotonic() - restarted:.2f}s after the Redis restart")
        assert server.processor is not None
        wait_until(lambda: not server.processor.unacked, what="acks written")  # type: ignore[union-attr]
    with redis.Redis.from_url(fresh_redis.url) as conn:
        assert queue_state(conn, namespace) == EMPTY


def test_a_graceful_stop_with_redis_down_ends_and_the_tasks_run_again_later(
    fresh_redis: RedisServer, namespace: str
) -> None:
    release = threading.Event()
    runs = Recorder()
    router = Router()

    @router.task("down:t")
    def work(task: Task) -> None:
        runs.add(task.id)
        release.wait(10)

    with Client.from_url(fresh_redis.url, namespace=namespace) as client:
        ids = {t.id for t in client.enqueue_many(NewTask(type="down:t") for _ in range(3))}
    context = running_server(fresh_redis.url, router, namespace=namespace, shutdown_timeout=0.5)
    server = context.__enter__()
    runs.wait_for(3)
    fresh_redis.stop()  # (AOF flushed on shutdown: the leased tasks survive)
    release.set()  # the handlers finish while their acknowledgements cannot be written
    wait_until(lambda: server.processor is not None and len(server.processor.unacked) == 3)
    asked = time.monotonic()
    context.__exit__(None, None, None)
    took = time.monotonic() - asked
    assert took < 10, f"a stop with Redis down took {took:.1f}s"
    fresh_redis.start()
    with running_server(fresh_redis.url, router, namespace=namespace):
        # At least once: unacknowledged, so run again once their lease expired.
        assert set(runs.wait_for(6, timeout=20)[3:]) == ids
        with redis.Redis.from_url(fresh_redis.url) as conn:
            wait_until(lambda: queue_state(conn, namespace) == EMPTY, what="all acknowledged")
