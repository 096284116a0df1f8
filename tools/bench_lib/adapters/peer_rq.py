"""RQ in the bench: a plain function as the job; Queue.enqueue / enqueue_many / enqueue_at.

Workers are RQ's own CLI (``rq worker``, fork Worker or SimpleWorker; see bench_lib.systems).
``result_ttl=0``: nobody reads the results, as RQ's docs suggest for fire-and-forget jobs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq import Queue  # type: ignore[import-not-found, unused-ignore]

from bench_lib.probe import CALL, PROBE

FUNC = "bench_lib.adapters.peer_rq.noop"


def noop(arg: Any) -> None:
    if CALL.enabled:
        CALL.sync()
    PROBE.hit(arg)


class Producer:
    bulk = True
    delayed = True
    bulk_delayed = False

    def __init__(self, url: str) -> None:
        self.redis = Redis.from_url(url)
        self.queue = Queue("bench", connection=self.redis)

    async def enqueue(self, arg: Any) -> None:
        self.queue.enqueue(FUNC, arg, result_ttl=0)

    async def enqueue_many(self, args: list[Any]) -> None:
        data = [Queue.prepare_data(FUNC, (a,), result_ttl=0) for a in args]
        self.queue.enqueue_many(data)

    async def enqueue_at(self, arg: Any, due: float) -> None:
        self.queue.enqueue_at(datetime.fromtimestamp(due, UTC), FUNC, arg, result_ttl=0)

    async def enqueue_many_at(self, items: list[tuple[Any, float]]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        self.redis.close()


async def make_producer(url: str) -> Producer:
    return Producer(url)
