"""Waiting without polling: block on the queues' marker sets and report what woke us.

A marker set holds "r" (tasks are ready) and "d" (score: when the next scheduled or retry task is
due). One BZPOPMIN waits on every queue's marker at once; in Redis Cluster, where a blocking
command cannot span slots, each queue gets its own waiter.

A single BZPOPMIN never blocks longer than the client's socket read timeout allows (redis-py
defaults to 5 s): a longer block would end in a read timeout, a dropped connection and a
reconnect. Short blocks are simply repeated until ``timeout`` has passed in total. Each call is
also bounded on the client side (block + :data:`REPLY_GRACE`), so a connection dropped without
a FIN or RST cannot hold the watcher even when the client has no socket timeout.

With a :class:`~rq_sched.worker.prefetch.Prefetcher` (the fetcher, on a plain client), the
wait carries the fetcher's dequeue behind it (:mod:`rq_sched.worker.prefetch`): a wake-up
then costs one round trip.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from rq_sched.scripts import AnyAsyncRedis
from rq_sched.worker.prefetch import Prefetch, Prefetcher, PrefetchingWait
from rq_sched.worker.supervisor import retry_pause

log = logging.getLogger("rq_sched")

READ_TIMEOUT_MARGIN = 1.0
"""Seconds a blocking call ends before the client's socket read timeout would cut it off."""
REPLY_GRACE = 5.0
"""Seconds past its block time a BZPOPMIN reply may take before the connection counts as dead."""


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
        prefetcher: Prefetcher | None = None,
    ) -> None:
        self.redis = redis
        self._queues = {key.encode(): queue for key, queue in markers.items()}
        self._keys = list(markers)
        self.on_ready = on_ready
        self.on_due = on_due
        self.timeout = timeout
        self.block = block_limit(redis, timeout)
        """Longest single BZPOPMIN, in seconds."""
        self.prefetching = (
            PrefetchingWait(redis, self._keys, prefetcher) if prefetcher is not None else None
        )

    def kick(self) -> None:
        """End a wait that carries a dequeue, so the dequeue runs now."""
        if self.prefetching is not None:
            self.prefetching.kick()

    async def run(self) -> None:
        """Wait forever (until cancelled), surviving Redis restarts."""
        failures = 0
        idle_until = time.monotonic() + self.timeout
        active = False
        """The last wait was ended by a marker or a kick: send the dequeue with the next one.
        A worker whose waits time out waits plainly (one command per wait, not five), so an
        idle worker costs what it did; the first task after an idle spell takes two round
        trips, the ones that follow it one."""
        while True:
            plan = None
            if self.prefetching is not None and active and await self.prefetching.check():
                await self.prefetching.prefetcher.settle()
                plan = self.prefetching.prefetcher.plan_prefetch()
            # A wait with a dequeue behind is bounded like a plain one: a connection that died
            # without a FIN or RST must not hold the slots it reserved for long.
            block = max(0.01, min(self.block, idle_until - time.monotonic()))
            try:
                reply = await self._wait_once(plan, block)
                failures = 0
            except (RedisError, OSError) as exc:  # TimeoutError is an OSError
                active = False
                failures += 1
                pause = retry_pause(failures)
                log.warning("wake-up wait failed: %s (retrying in %.2fs)", exc, pause)
                await asyncio.sleep(pause)
                self.on_ready()  # look once more after Redis comes back
                continue
            active = reply is not None or (plan is not None and self._kicked())
            if reply is None:
                if time.monotonic() >= idle_until:
                    idle_until = time.monotonic() + self.timeout
                    if plan is None:  # a prefetched dequeue has just looked
                        self.on_ready()
                continue
            idle_until = time.monotonic() + self.timeout
            key, member, score = reply
            queue = self._queues.get(key, "") if isinstance(key, bytes) else str(key)
            if member in (b"d", "d"):
                self.on_due(queue, int(float(score)))
            elif plan is None or queue != plan.queue:  # else its dequeue has taken them
                self.on_ready()

    def _kicked(self) -> bool:
        return self.prefetching is not None and self.prefetching.kicked

    async def _wait_once(self, plan: Prefetch | None, block: float) -> Any:
        """One wait: with ``plan``'s dequeue behind it, or a plain BZPOPMIN of at most
        :attr:`block` seconds."""
        if plan is not None and self.prefetching is not None:
            reply = await self.prefetching.wait(plan, block, REPLY_GRACE)
            if self.prefetching.kicked_late:  # its dequeue ran before the kick's reason
                self.on_ready()
            return reply
        async with asyncio.timeout(block + REPLY_GRACE):
            return await self.redis.bzpopmin(self._keys, block)


def block_limit(redis: AnyAsyncRedis, timeout: float) -> float:
    """The longest single blocking call ``redis`` can wait through: ``timeout``, or less when the
    client's socket read timeout is shorter."""
    read_timeout = socket_timeout(redis)
    if not isinstance(read_timeout, int | float) or read_timeout <= 0:
        return timeout
    return max(0.1, min(timeout, float(read_timeout) - READ_TIMEOUT_MARGIN))


def socket_timeout(redis: AnyAsyncRedis) -> object:
    """The socket read timeout of ``redis``'s connections: set explicitly, or redis-py's default
    (which is not in the connection kwargs when the URL does not name one)."""
    kwargs = redis.get_connection_kwargs()
    if "socket_timeout" in kwargs:
        return kwargs["socket_timeout"]
    pool = getattr(redis, "connection_pool", None)
    connection_class = getattr(pool, "connection_class", AbstractConnection)
    for cls in connection_class.__mro__:
        init = vars(cls).get("__init__")
        param = inspect.signature(init).parameters.get("socket_timeout") if init else None
        if param is not None and param.default is not inspect.Parameter.empty:
            return param.default
    return None
