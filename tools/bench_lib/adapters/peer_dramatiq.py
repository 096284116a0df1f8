"""dramatiq in the bench: ``RedisBroker``, one actor, ``send`` (``send_with_options(delay=)``)."""

from __future__ import annotations

import os
import time
from typing import Any

import dramatiq  # type: ignore[import-not-found, unused-ignore]
from dramatiq.brokers.redis import RedisBroker  # type: ignore[import-not-found, unused-ignore]

from bench_lib.probe import CALL, PROBE

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

broker = RedisBroker(url=URL)
dramatiq.set_broker(broker)


def _noop(arg: Any) -> None:
    if CALL.enabled:
        CALL.sync()
    PROBE.hit(arg)


noop = dramatiq.actor(_noop, actor_name="noop", queue_name="bench")


class Producer:
    bulk = False
    delayed = True
    bulk_delayed = False

    async def enqueue(self, arg: Any) -> None:
        noop.send(arg)

    async def enqueue_many(self, args: list[Any]) -> None:
        raise NotImplementedError

    async def enqueue_at(self, arg: Any, due: float) -> None:
        delay_ms = max(0, round((due - time.time()) * 1000))
        noop.send_with_options(args=(arg,), delay=delay_ms)

    async def enqueue_many_at(self, items: list[tuple[Any, float]]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        broker.close()


async def make_producer(url: str) -> Producer:
    return Producer()
