"""Acknowledging finished tasks in batches: one script call settles up to a batch per queue.

Acknowledgements are buffered per queue and written by one writer (the ack loop, or a shutdown
waiting for the write in flight). A Redis outage keeps them buffered and retries; a refused
command (any other Redis error) is not an outage: the batch is split so that the one
acknowledgement Redis refuses is logged and dropped (its task runs again once its lease expires)
and the rest of the queue's acknowledgements go through.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rq_sched import ops, scripts
from rq_sched.clock import Clock
from rq_sched.keys import QueueKeys
from rq_sched.scripts import AnyAsyncRedis
from rq_sched.worker.supervisor import retry_pause

log = logging.getLogger("rq_sched")

OUTAGE = (RedisConnectionError, RedisTimeoutError, OSError)
"""Failures worth retrying: Redis unreachable. Any other Redis error is a refused command
that would fail the same way again."""


class AckWriter:
    """Buffers acknowledgements per queue and writes them in batches."""

    def __init__(
        self,
        redis: AnyAsyncRedis,
        keys: dict[str, QueueKeys],
        *,
        clock: Clock,
        on_written: Callable[[str, str], None],
        on_reported: Callable[[str, str], None] | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.on_written = on_written
        """Called with (queue, id) once an acknowledgement was written (or refused)."""
        self.on_reported = on_reported
        """Called with (queue, id) of a settled task whose outcome was recorded for its
        dependants (to be delivered)."""
        self.deadline: float | None = None
        """Monotonic time after which :meth:`flush` stops retrying (set by a shutdown)."""
        self._acks: dict[str, list[ops.Ack]] = {}
        self._event = asyncio.Event()
        self._lock = asyncio.Lock()

    def add(self, queue: str, ack: ops.Ack) -> None:
        self._acks.setdefault(queue, []).append(ack)
        self._event.set()

    def buffered(self) -> int:
        return sum(len(acks) for acks in self._acks.values())

    async def loop(self) -> None:
        """Write buffered acknowledgements whenever there are some (first those left by a
        previous run of the loop, when the supervisor restarts it)."""
        while True:
            self._event.clear()
            await self.flush()
            await self._event.wait()

    async def flush(self) -> bool:
        """Write every buffered acknowledgement, retrying through Redis outages (until
        :attr:`deadline`, once set). Returns whether all were written."""
        async with self._lock:  # one writer: a shutdown waits for the write in flight
            return await self._flush()

    async def _flush(self) -> bool:
        failures = 0
        while self._acks:
            if self.deadline is not None and time.monotonic() >= self.deadline:
                return False
            batches, self._acks = self._acks, {}
            try:
                for queue, acks in batches.items():
                    while acks:
                        await self._write(queue, acks[: ops.BATCH_LIMIT])
                        del acks[: ops.BATCH_LIMIT]
                failures = 0
            except OUTAGE as exc:
                self._restore(batches)
                failures += 1
                pause = retry_pause(failures)
                log.warning("acknowledging tasks failed: %s (retrying in %.2fs)", exc, pause)
                await asyncio.sleep(pause)
            except BaseException:
                self._restore(batches)  # nothing buffered is lost, whatever happened
                raise
        return True

    def _restore(self, batches: dict[str, list[ops.Ack]]) -> None:
        for queue, acks in batches.items():
            self._acks.setdefault(queue, [])[:0] = acks

    async def _write(self, queue: str, acks: list[ops.Ack]) -> None:
        script, keys, args = ops.done(self.keys[queue], acks, self.clock.now())
        try:
            reply = await scripts.arun(self.redis, script, keys, args)
        except OUTAGE:
            raise
        except RedisError as exc:
            # Refused, not unreachable: retrying the batch would jam every ack of the queue.
            if len(acks) > 1:
                for ack in acks:
                    await self._write(queue, [ack])
                return
            log.error("task %s/%s: acknowledgement refused (%s)", queue, acks[0].id, exc)
            reply = [0]
        tail = list(reply[1:])
        if tail and isinstance(tail[-1], list):
            for reported in tail.pop():
                if self.on_reported is not None:
                    self.on_reported(queue, reported.decode())
        for lost in tail:
            log.warning("task %s/%s finished after its lease was lost", queue, lost.decode())
        for ack in acks:
            self.on_written(queue, ack.id)
