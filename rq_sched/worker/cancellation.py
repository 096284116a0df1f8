"""Listening for task cancellations announced to every server over pub/sub."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.exceptions import RedisError

from rq_sched.models import decode_cancel
from rq_sched.scripts import AnyAsyncRedis
from rq_sched.worker.supervisor import retry_pause

log = logging.getLogger("rq_sched")


class CancelListener:
    """Subscribes to the cancel channel and calls ``cancel(queue, task_id)`` per message.

    Subscribed connections send no commands while idle; after a dropped connection it
    subscribes again.
    """

    def __init__(
        self, redis: AnyAsyncRedis, channel: str, cancel: Callable[[str, str], bool]
    ) -> None:
        self.redis = redis
        self.channel = channel
        self.cancel = cancel
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        """Listen until cancelled, subscribing again after any failure."""
        failures = 0
        while True:
            # A cluster client learns its nodes on its first command; pub/sub is not one.
            try:
                await self.redis.initialize()
            except (RedisError, OSError) as exc:
                failures = await self._failed(failures, exc)
                continue
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                failures = 0
                async for message in pubsub.listen():
                    self._handle(message.get("data"))
            except (RedisError, OSError) as exc:
                failures = await self._failed(failures, exc)
            finally:
                self.subscribed.clear()
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _failed(self, failures: int, exc: BaseException) -> int:
        self.subscribed.clear()
        failures += 1
        pause = retry_pause(failures)
        log.warning("cancel listener: %s (resubscribing in %.2fs)", exc, pause)
        await asyncio.sleep(pause)
        return failures

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
