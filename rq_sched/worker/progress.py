"""Writing the progress handlers report (``task.report_progress``) to Redis, coalesced.

A handler may report from the event loop, from a worker thread, or (relayed by the runner) from
a child process; reports are handed to the loop thread-safely and written one task at a time by
a single writer, which always writes a task's latest report and skips those it superseded, so a
handler reporting in a tight loop costs at most one write in flight per task. The write is
fenced by the lease token (``lua/progress.lua``): a run whose lease was lost cannot overwrite
the progress of the run that replaced it. Progress is advisory: a write that fails is logged and
dropped, never retried and never allowed to fail the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from rq_sched import ops, scripts
from rq_sched.keys import QueueKeys
from rq_sched.message import encode_progress
from rq_sched.scripts import AnyAsyncRedis

log = logging.getLogger("rq_sched")

Key = tuple[str, str, int]
"""(queue, task id, lease token)"""


class ProgressWriter:
    """Takes progress reports from any thread and writes each task's latest one."""

    def __init__(self, redis: AnyAsyncRedis, keys: dict[str, QueueKeys]) -> None:
        self.redis = redis
        self.keys = keys
        self.written = 0
        self._latest: dict[Key, bytes] = {}
        self._writer: asyncio.Task[None] | None = None

    def reporter(
        self, loop: asyncio.AbstractEventLoop, queue: str, task_id: str, token: int
    ) -> Callable[[Any, str | None], None]:
        """The callback a task's ``report_progress`` calls (from any thread)."""
        key = (queue, task_id, token)

        def report(value: Any, message: str | None) -> None:
            encoded = encode_progress(token, value, message, int(time.time() * 1000))
            # A closed loop: the worker is gone, and so is the task's lease.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._note, key, encoded)

        return report

    def _note(self, key: Key, encoded: bytes) -> None:
        self._latest[key] = encoded
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        while self._latest:
            key = next(iter(self._latest))
            encoded = self._latest.pop(key)
            queue, task_id, token = key
            call = ops.progress(self.keys[queue], task_id, token, encoded)
            try:
                await scripts.arun(self.redis, *call)
                self.written += 1
            except (RedisError, OSError) as exc:
                log.warning("task %s/%s: progress not written: %s", queue, task_id, exc)
