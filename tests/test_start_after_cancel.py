"""A handler never starts more than a second after its task's cancel was recorded, even when
the worker learns of the lease late (issue #11: the chaos soak's `run_after_cancel`, a thread
handler started 2.0 s after the operator's cancel on a worker whose loop lagged).

Both tests record the cancel the way ``Inspector.cancel_task`` does but announce nothing on
pub/sub, so only the worker's own reads of Redis can find it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from multiprocessing import Pipe

import redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from rq_sched import Client, Inspector, Router, Task, TaskState, ops, scripts
from rq_sched.clock import SystemClock
from rq_sched.connection import aconnect
from rq_sched.keys import QueueKeys
from rq_sched.local_redis import RedisServer
from rq_sched.message import decode
from rq_sched.worker import runners
from rq_sched.worker.config import ServerConfig
from rq_sched.worker.processor import Processor
from rq_sched.worker.runners import Runners
from rq_sched.worker.server import CONNECTION_OPTIONS
from tests.net_proxy import proxy_to
from tests.worker_support import running_server, wait_until

LATE = 1.3
"""Seconds the worker learns late of a lease: beyond the 1 s in which a start needs no check."""


def _record_cancel(r: redis.Redis, keys: QueueKeys, task_id: str) -> None:
    assert scripts.run(r, *ops.cancel(keys, task_id, None)) == 1


def _settled(r: redis.Redis, keys: QueueKeys, task_id: str) -> bool:
    return r.zscore(keys.lease, task_id) is None


def test_a_dequeue_reply_that_arrives_late_is_confirmed_before_its_handler_starts(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    # The dequeue runs in Redis at once, but its reply reaches the worker 1.3 s later (a slow
    # link; a starved event loop has the same effect). The cancel is recorded meanwhile. The
    # worker must not take the lease's age from when it read the reply.
    router = Router()
    started: list[str] = []

    @router.task("c:sync")
    def run(task: Task) -> None:
        started.append(task.id)

    keys = QueueKeys(namespace, "default")
    with proxy_to(redis_url) as proxy, running_server(proxy.url, router, namespace=namespace):
        proxy.hold_replies_with(b"victim-late-reply")
        Client(r, namespace=namespace).enqueue("c:sync", None, task_id="victim-late-reply")
        wait_until(lambda: r.zscore(keys.lease, "victim-late-reply") is not None, what="leased")
        _record_cancel(r, keys, "victim-late-reply")
        time.sleep(LATE)  # the fault itself: the reply is held this long
        proxy.release()
        wait_until(lambda: _settled(r, keys, "victim-late-reply"), what="the task settled")
    assert started == []
    info = Inspector(r, namespace=namespace).get_task("default", "victim-late-reply")
    assert info.state is TaskState.ARCHIVED
    assert info.last_error is not None and info.last_error.startswith("TaskCancelledError")


def test_a_sync_call_that_waited_for_a_thread_is_confirmed_on_its_thread(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    # One thread slot; two handlers time out and keep their threads (the pool's limit is twice
    # its size), so the third call waits for a thread while its cancel is recorded. The lease
    # is long, so no lease renewal comes in between: only the check on the thread can see it.
    router = Router()
    release = threading.Event()
    started: list[str] = []

    @router.task("c:stuck", timeout=0.1)
    def stuck(task: Task) -> None:
        release.wait(30)

    @router.task("c:sync")
    def run(task: Task) -> None:
        started.append(task.id)

    keys = QueueKeys(namespace, "default")
    client = Client(r, namespace=namespace)
    options = {"concurrency": 1, "lease_duration": 60.0}
    with running_server(redis_url, router, namespace=namespace, **options):
        for n in range(2):
            client.enqueue("c:stuck", None, task_id=f"stuck-{n}", max_retry=0)
        wait_until(lambda: r.zcard(keys.archived) == 2, what="both stuck calls timed out")
        client.enqueue("c:sync", None, task_id="victim-thread")
        wait_until(lambda: r.zscore(keys.lease, "victim-thread") is not None, what="leased")
        _record_cancel(r, keys, "victim-thread")
        time.sleep(LATE)  # the fault itself: the call waits this long for a thread
        release.set()
        wait_until(lambda: _settled(r, keys, "victim-thread"), what="the task settled")
    assert started == []
    info = Inspector(r, namespace=namespace).get_task("default", "victim-thread")
    assert info.state is TaskState.ARCHIVED
    assert info.last_error is not None and info.last_error.startswith("TaskCancelledError")


def test_a_start_that_cannot_be_confirmed_waits_for_redis(
    fresh_redis: RedisServer, namespace: str
) -> None:
    # Found by the 45-minute soak (seed 2030): a renewal that failed on a dead connection let
    # the handler start "at least once", 3.6 s after its task was cancelled. Now a start
    # that needs a confirmation waits until Redis answers.
    r = redis.Redis.from_url(fresh_redis.url)
    Client(r, namespace=namespace).enqueue("c:x", None, task_id="x")
    keys = QueueKeys(namespace, "default")
    [leased] = ops.parse_dequeue(scripts.run(r, *ops.dequeue(keys, 60_000, 1)))
    config = ServerConfig(namespace=namespace, lease_duration=60.0)

    async def scenario() -> None:
        # No redis-py retries: a refused connection is an outage at once, not seconds later.
        aredis = aconnect(fresh_redis.url, retry=Retry(NoBackoff(), 0), **CONNECTION_OPTIONS)
        runners = Runners(threads=1, processes=1)
        runners.close()
        processor = Processor(
            aredis, config=config, router=Router(), runners=runners, clock=SystemClock(),
            keys={"default": keys},
        )  # fmt: skip
        # Confirmed 5 s ago: the start needs a new read of Redis first.
        entry = processor._running("default", leased, decode(leased.data), time.monotonic() - 5)
        assert entry.task._may_start is not None
        fresh_redis.stop()
        gate = asyncio.ensure_future(entry.task._may_start())
        finished, _ = await asyncio.wait({gate}, timeout=LATE)
        assert not finished, "the start was allowed with Redis down"
        fresh_redis.start()
        assert await asyncio.wait_for(gate, 15) is True  # the lease is still current
        await aredis.aclose()

    asyncio.run(scenario())


def test_a_child_that_reads_its_go_too_late_asks_again() -> None:
    # The child's side (_go_ahead) and the worker's (_converse) over a real pipe: a GO whose
    # start-by time has passed when the child reads it is answered STALE, and the worker
    # confirms the lease again before the next GO.
    confirmations = 0
    deadlines = iter([time.monotonic() - 1.0, time.monotonic() + 30.0])

    async def confirm() -> bool:
        nonlocal confirmations
        confirmations += 1
        return True

    task = Task(type="t", payload=None, id="x", queue="q")
    task._may_start = confirm
    task._start_by = lambda: next(deadlines)
    worker_end, child_end = Pipe(duplex=True)
    answers: list[bool] = []

    def child() -> None:
        answers.append(runners._go_ahead(child_end))
        child_end.send(("ok", None))

    thread = threading.Thread(target=child)
    thread.start()
    reply = asyncio.run(runners._converse(worker_end, task))
    thread.join(5)
    assert answers == [True]
    assert reply == ("ok", None)
    assert confirmations == 2
