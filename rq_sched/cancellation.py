"""Listening for task cancellations announced to every server over pub/sub."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from rq_sched.models import decode_cancel

log = logging.getLogger("rq_sched")


class CancelListener:
    """Subscribes to the cancel channel and calls ``cancel(queue, task_id)`` per message.

    Subscribed connections send no commands while idle; after a dropped connection it
    subscribes again.
    """

    def __init__(self, redis: AsyncRedis, channel: str, cancel: Callable[[str, str], bool]) -> None:
        self.redis = redis
        self.channel = channel
        self.cancel = cancel
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        failures = 0
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                failures = 0
                async for message in pubsub.listen():
                    self._handle(message.get("data"))
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                failures += 1
                pause = min(2.0, 0.05 * 2**failures)
                log.warning("cancel listener: %s (resubscribing in %.2fs)", exc, pause)
                await asyncio.sleep(pause)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _handle(self, data: object) -> None:
        if not isinstance(data, bytes | str):
            return
        try:
            queue, task_id = decode_cancel(data)
        except ValueError as exc:
            log.warning("ignoring malformed cancel message: %s", exc)
            return
        if self.cancel(queue, task_id):
            log.info("cancelled task %s/%s", queue, task_id)
