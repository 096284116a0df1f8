"""saq in the bench: an async job function, ``settings`` for the ``saq`` CLI, ``Queue.enqueue``."""

from __future__ import annotations

import os
from typing import Any

from saq import Queue  # type: ignore[import-not-found, unused-ignore]

from bench_lib.probe import CALL, PROBE

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


async def noop(ctx: dict[str, Any], *, arg: Any) -> None:
    if CALL.enabled:
        await CALL.run()
    PROBE.hit(arg)


settings = {
    "queue": Queue.from_url(URL, name="bench"),
    "functions": [noop],
    "concurrency": int(os.environ.get("BENCH_CONCURRENCY", "100")),
}


class Producer:
    bulk = False
    delayed = True
    bulk_delayed = False

    def __init__(self, url: str) -> None:
        self.queue = Queue.from_url(url, name="bench")

    async def enqueue(self, arg: Any) -> None:
        await self.queue.enqueue("noop", arg=arg)

    async def enqueue_many(self, args: list[Any]) -> None:
        raise NotImplementedError

    async def enqueue_at(self, arg: Any, due: float) -> None:
        await self.queue.enqueue("noop", arg=arg, scheduled=due)

    async def enqueue_many_at(self, items: list[tuple[Any, float]]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await self.queue.disconnect()


async def make_producer(url: str) -> Producer:
    producer = Producer(url)
    await producer.queue.connect()
    return producer
