"""arq in the bench: an async job function, ``WorkerSettings`` for the arq CLI, ``enqueue_job``."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from arq import create_pool  # type: ignore[import-not-found, unused-ignore]
from arq.connections import RedisSettings  # type: ignore[import-not-found, unused-ignore]

from bench_lib.probe import CALL, PROBE

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


async def noop(ctx: dict[str, Any], arg: Any) -> None:
    if CALL.enabled:
        await CALL.run()
    PROBE.hit(arg)


class WorkerSettings:
    functions = [noop]  # noqa: RUF012 - arq reads class attributes
    redis_settings = RedisSettings.from_dsn(URL)
    max_jobs = int(os.environ.get("BENCH_CONCURRENCY", "100"))
    keep_result = 0
    log_results = False


class Producer:
    bulk = False
    delayed = True
    bulk_delayed = False

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def enqueue(self, arg: Any) -> None:
        await self.pool.enqueue_job("noop", arg)

    async def enqueue_many(self, args: list[Any]) -> None:
        raise NotImplementedError

    async def enqueue_at(self, arg: Any, due: float) -> None:
        await self.pool.enqueue_job("noop", arg, _defer_until=datetime.fromtimestamp(due, UTC))

    async def enqueue_many_at(self, items: list[tuple[Any, float]]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await self.pool.aclose()


async def make_producer(url: str) -> Producer:
    return Producer(await create_pool(RedisSettings.from_dsn(url)))
