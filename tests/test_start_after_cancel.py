"""A handler never starts more than a second after its task's cancel was recorded, even when
the worker learns of the lease late (issue #11: the chaos soak's `run_after_cancel`, a thread
handler started 2.0 s after the operator's cancel on a worker whose loop lagged).

Both tests record the cancel the way ``Inspector.cancel_task`` does but announce nothing on
pub/sub, so only the worker's own reads of Redis can find it.
"""

from __future__ import annotations

import threading
import time

import redis

from rq_sched import Client, Inspector, Router, Task, TaskState, ops, scripts
from rq_sched.keys import QueueKeys
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
