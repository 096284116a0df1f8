"""Celery in the bench: Redis broker, one task, ``apply_async`` (``eta=`` for delayed tasks).

The worker is Celery's CLI with the gevent pool, which Celery's docs recommend for I/O-bound
tasks. No result backend is configured, so no results are written.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from celery import Celery  # type: ignore[import-not-found, unused-ignore]

from bench_lib.probe import CALL, PROBE

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("bench", broker=URL)
app.conf.update(
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


def _noop(arg: Any) -> None:
    if CALL.enabled:
        CALL.sync()
    PROBE.hit(arg)


noop = app.task(name="bench.noop")(_noop)


class Producer:
    bulk = False
    delayed = True
    bulk_delayed = False

    async def enqueue(self, arg: Any) -> None:
        noop.apply_async((arg,))

    async def enqueue_many(self, args: list[Any]) -> None:
        raise NotImplementedError

    async def enqueue_at(self, arg: Any, due: float) -> None:
        noop.apply_async((arg,), eta=datetime.fromtimestamp(due, UTC))

    async def enqueue_many_at(self, items: list[tuple[Any, float]]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        app.close()


async def make_producer(url: str) -> Producer:
    return Producer()
