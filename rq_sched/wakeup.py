"""Waiting without polling: block on the queues' marker sets and report what woke us.

A marker set holds "r" (tasks are ready) and "d" (score: when the next scheduled or retry task is
due). One BZPOPMIN waits on every queue's marker at once; in Redis Cluster, where a blocking
command cannot span slots, each queue gets its own waiter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.exceptions import RedisError

from rq_sched.scripts import AnyAsyncRedis

log = logging.getLogger("rq_sched")


class MarkerWatcher:
    """Blocks on marker keys: ``on_ready()`` for "r" or a timeout, ``on_due(queue, ms)`` for "d"."""

    def __init__(
        self,
        redis: AnyAsyncRedis,
        markers: dict[str, str],
        *,
        on_ready: Callable[[], None],
        on_due: Callable[[str, int], None],
        timeout: float,
    ) -> None:
        self.redis = redis
        self._queues = {key.encode(): queue for key, queue in markers.items()}
        self._keys = list(markers)
        self.on_ready = on_ready
        self.on_due = on_due
        self.timeout = timeout

    async def run(self) -> None:
        """Wait forever (until cancelled), surviving Redis restarts."""
        failures = 0
        while True:
            try:
                reply = await self.redis.bzpopmin(self._keys, self.timeout)
                failures = 0
            except (RedisError, OSError) as exc:
                failures += 1
                pause = min(2.0, 0.05 * 2**failures)
                log.warning("wake-up wait failed: %s (retrying in %.2fs)", exc, pause)
                await asyncio.sleep(pause)
                self.on_ready()  # look once more after Redis comes back
                continue
            if reply is None:
                self.on_ready()
                continue
            key, member, score = reply
            if member == b"d":
                queue = self._queues.get(key, "") if isinstance(key, bytes) else str(key)
                self.on_due(queue, int(score))
            else:
                self.on_ready()
