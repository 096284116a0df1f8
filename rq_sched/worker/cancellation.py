"""Listening for task cancellations announced to every server over pub/sub.

A subscribed connection waits for messages with no deadline, so a connection dropped without a
FIN or RST (a firewall or NAT that forgot it) would leave the listener deaf for ever. The
listener therefore PINGs over the subscription after ``ping_interval`` seconds of silence and
subscribes again on a fresh connection when the PONG does not come within another interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, cast

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from rq_sched.models import decode_cancel
from rq_sched.scripts import AnyAsyncRedis
from rq_sched.worker.supervisor import retry_pause

log = logging.getLogger("rq_sched")

PING_INTERVAL = 15.0
"""Seconds of silence on the subscription before the listener checks it with a PING."""


class CancelListener:
    """Subscribes to the cancel channel and calls ``cancel(queue, task_id)`` per message.

    Subscribed connections send no commands while idle; after a dropped connection it
    subscribes again.
    """

    def __init__(
        self,
        redis: AnyAsyncRedis,
        channel: str,
        cancel: Callable[[str, str], bool],
        *,
        ping_interval: float = PING_INTERVAL,
    ) -> None:
        self.redis = redis
        self.channel = channel
        self.cancel = cancel
        self.ping_interval = ping_interval
        self.subscribed = asyncio.Event()
        self.subscriptions = 0
        """How many times the listener has subscribed (1 + reconnections)."""

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
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                self.subscriptions += 1
                self.subscribed.set()
                failures = 0
                await self._listen(pubsub)
            except (RedisError, OSError) as exc:
                failures = await self._failed(failures, exc)
            finally:
                self.subscribed.clear()
                # typed from redis-py 8.2 on, untyped before: called through Any for both
                await cast(Any, pubsub).aclose()

    async def _listen(self, pubsub: Any) -> None:
        heard = time.monotonic()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=self.ping_interval / 2)
            now = time.monotonic()
            if message is not None:  # anything, a PONG included, proves the link alive
                heard, pinged = now, False
                if message.get("type") == "message":
                    self._handle(message.get("data"))
            elif now - heard >= 2 * self.ping_interval and pinged:
                raise RedisConnectionError(
                    f"no reply to PING within {self.ping_interval:g}s: the connection is dead"
                )
            elif now - heard >= self.ping_interval and not pinged:
                await pubsub.ping()
                pinged = True

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
