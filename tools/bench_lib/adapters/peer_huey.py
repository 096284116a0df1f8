"""huey in the bench: ``RedisHuey`` (blocking dequeue), one task, ``schedule(eta=)`` for delayed.

``results=False``: nobody reads the results, so huey does not store them.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from huey import RedisHuey  # type: ignore[import-not-found, unused-ignore]

from bench_lib.probe import CALL, PROBE

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

huey = RedisHuey("bench", url=URL, results=False)


def _noop(arg: Any) -> None:
    if CALL.enabled:
        CALL.sync()
    PROBE.hit(arg)


noop = huey.task(name="noop")(_noop)


class Producer:
    bulk = False
    delayed = True
    bulk_delayed = False

    async def enqueue(self, arg: Any) -> None:
        noop(arg)

    async def enqueue_many(self, args: list[Any]) -> None:
        raise NotImplementedError

    async def enqueue_at(self, arg: Any, due: float) -> None:
        noop.schedule(args=(arg,), eta=datetime.fromtimestamp(due, UTC))

    async def enqueue_many_at(self, items: list[tuple[Any, float]]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        huey.storage.conn.close()


async def make_producer(url: str) -> Producer:
    return Producer()
