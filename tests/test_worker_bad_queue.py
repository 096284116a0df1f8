"""A queue whose keys Redis refuses to use (someone else's data under its name: WRONGTYPE)
does not stop the worker from serving its other queues (found while reviewing issue #11's
soak: the fetch loop retried the whole fetch, and under strict priority the bad queue came
first every time)."""

from __future__ import annotations

import redis

from rq_sched import Client, Router, Task
from rq_sched.keys import QueueKeys
from tests.worker_support import running_server, wait_until


def test_a_queue_with_a_key_of_the_wrong_type_is_skipped_and_the_others_served(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    router = Router()
    ran: list[str] = []

    @router.task("c:run")
    async def run(task: Task) -> None:
        ran.append(task.id)

    client = Client(r, namespace=namespace)
    client.enqueue("c:run", None, queue="first", task_id="soon-stuck")
    bad = QueueKeys(namespace, "first")
    r.delete(bad.pending)
    r.set(bad.pending, "not a list")  # someone else's data where the queue keeps its ids
    task = client.enqueue("c:run", None, queue="second")
    queues = {"first": 9, "second": 1}
    options = {"queues": queues, "strict_priority": True}
    with running_server(redis_url, router, namespace=namespace, **options):
        wait_until(lambda: task.id in ran, timeout=10, what="the second queue's task run")
        later = client.enqueue("c:run", None, queue="second")
        wait_until(lambda: later.id in ran, timeout=10, what="a later task run")
        assert r.get(bad.pending) == b"not a list"  # nothing of it was touched
        r.delete(bad.pending)  # the operator removes the foreign data
        again = client.enqueue("c:run", None, queue="first")
        wait_until(lambda: again.id in ran, timeout=20, what="the repaired queue served again")
