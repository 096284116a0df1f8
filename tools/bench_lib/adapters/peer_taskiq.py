"""taskiq in the bench: taskiq-redis ``ListQueueBroker``, one async task, ``kiq``.

Delayed tasks need taskiq's separate scheduler process and a schedule source; not measured.
"""

from __future__ import annotations

import os
from typing import Any

from taskiq_redis import ListQueueBroker  # type: ignore[import-not-found, unused-ignore]

from bench_lib.probe import CALL, PROBE

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

broker = ListQueueBroker(URL, queue_name="bench")


async def _noop(arg: Any) -> None:
    if CALL.enabled:
        await CALL.run()
    PROBE.hit(arg)


noop = broker.register_task(_noop, task_name="noop")


class Producer:
    bulk = False
    delayed = False
    bulk_delayed = False

    async def enqueue(self, arg: Any) -> None:
        await noop.kiq(arg)

    async def enqueue_many(self, args: list[Any]) -> None:
        raise NotImplementedError

    async def enqueue_at(self, arg: Any, due: float) -> None:
        raise NotImplementedError

    async def enqueue_many_at(self, items: list[tuple[Any, float]]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await broker.shutdown()


async def make_producer(url: str) -> Producer:
    await broker.startup()
    return Producer()
