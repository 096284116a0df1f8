"""The worker and a bad network: a shutdown during a fetch whose reply is still on its way hands
the leased task back; a silently dropped connection does not block a worker for ever.
"""

from __future__ import annotations

import threading

import redis

from rq_sched import Client, Router, Task
from rq_sched.keys import QueueKeys
from tests.net_proxy import proxy_to
from tests.worker_support import Recorder, queue_state, running_server, wait_until

HOLD_BACK = 0.5
"""Seconds the proxy keeps the dequeue's reply back once the shutdown starts (a slow link)."""


def test_a_shutdown_during_an_in_flight_fetch_hands_the_leased_task_back(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    ran = Recorder()
    router = Router()

    @router.task("n:run")
    async def run(task: Task) -> None:
        ran.add(task.id)

    keys = QueueKeys(namespace, "default")
    task_id = f"{namespace}-in-flight"
    with proxy_to(redis_url) as proxy:
        release = threading.Timer(HOLD_BACK, proxy.release)
        try:
            with running_server(proxy.url, router, namespace=namespace):
                proxy.hold_replies_with(task_id.encode())  # the dequeue's reply names the task
                Client(r, namespace=namespace).enqueue("n:run", None, task_id=task_id)
                wait_until(
                    lambda: r.zscore(keys.lease, task_id) is not None,
                    what="Redis ran the dequeue (its reply is held back)",
                )
                release.start()  # the reply arrives while the server shuts down
        finally:
            release.cancel()
            proxy.release()
    assert ran.items == []
    state = queue_state(r, namespace)
    assert (state["lease"], state["pending"]) == (0, 1), "the task was left leased to nobody"
