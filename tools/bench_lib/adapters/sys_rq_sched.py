"""rq_sched in the bench: an async no-op handler, a worker entry point and the sync Client."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from typing import Any

from bench_lib.probe import CALL, PROBE
from rq_sched import AsyncClient, Client, NewTask, Router, Server, Task

router = Router()


@router.task("bench:noop")
async def noop(task: Task) -> None:
    if CALL.enabled:
        await CALL.run()
    PROBE.hit(task.payload)


def _at(due: float) -> datetime:
    return datetime.fromtimestamp(due, UTC)


class Producer:
    bulk = True
    delayed = True
    bulk_delayed = True
    concurrent = True
    """``enqueue_async`` overlaps (AsyncClient coalesces concurrent calls into pipelines)."""

    def __init__(self, url: str) -> None:
        self.client = Client.from_url(url)
        self.aclient = AsyncClient.from_url(url)

    async def enqueue(self, arg: Any) -> None:
        self.client.enqueue("bench:noop", arg)

    async def enqueue_async(self, arg: Any) -> None:
        await self.aclient.enqueue("bench:noop", arg)

    async def enqueue_many(self, args: list[Any]) -> None:
        self.client.enqueue_many([NewTask(type="bench:noop", payload=a) for a in args])

    async def enqueue_at(self, arg: Any, due: float) -> None:
        self.client.enqueue("bench:noop", arg, process_at=_at(due))

    async def enqueue_many_at(self, items: list[tuple[Any, float]]) -> None:
        tasks = [NewTask(type="bench:noop", payload=a, process_at=_at(d)) for a, d in items]
        self.client.enqueue_many(tasks)

    async def close(self) -> None:
        self.client.close()
        await self.aclient.close()


async def make_producer(url: str) -> Producer:
    return Producer(url)


def worker() -> None:
    """One worker process, stopped by SIGTERM."""
    server = Server.from_url(
        os.environ["BENCH_REDIS_URL"],
        queues={"default": 1},
        concurrency=int(os.environ.get("BENCH_CONCURRENCY", "100")),
        batch_size=int(os.environ.get("BENCH_BATCH", "100")),
    )
    server.run(router)


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    worker()
