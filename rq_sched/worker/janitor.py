"""The janitor: drops completed tasks whose retention ended and trims the archive (warning when
another server of a queue keeps other archive limits)."""

from __future__ import annotations

import logging

from rq_sched import ops, scripts
from rq_sched.clock import Clock, to_ms
from rq_sched.keys import QueueKeys
from rq_sched.ops import ArchiveLimits
from rq_sched.scripts import AnyAsyncRedis
from rq_sched.worker.component import Component

log = logging.getLogger("rq_sched")

WARN_EVERY_S = 600.0
"""While another server's archive limits stay stored, the warning repeats this often (seconds)."""


class Janitor(Component):
    name = "janitor"

    def __init__(
        self,
        redis: AnyAsyncRedis,
        keys: dict[str, QueueKeys],
        *,
        clock: Clock,
        interval: float,
        limits: ArchiveLimits,
    ) -> None:
        super().__init__()
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.interval = interval
        self.limits = limits
        self._warned: dict[str, tuple[tuple[int, int], float]] = {}

    async def tick(self) -> float:
        for keys in self.keys.values():
            await self._check_limits(keys)
            await self.trim(keys)
        return self.interval

    async def _check_limits(self, keys: QueueKeys) -> None:
        """Warn (at once for each new value, then every :data:`WARN_EVERY_S` while it stays)
        when another server stored other archive limits for the queue: the two overwrite each
        other, and the smaller deletes what the other keeps."""
        size, age_ms = await self.redis.hmget(keys.limits, ["max_size", "max_age_ms"])
        try:
            stored = (int(size or ""), int(age_ms or ""))
        except ValueError:
            return  # none stored yet, or unreadable: the trim below stores this server's
        own = (self.limits.max_size, int(self.limits.max_age_s * 1000))
        now = self.clock.now()
        last = self._warned.get(keys.queue)
        if stored == own or (last and last[0] == stored and now - last[1] < WARN_EVERY_S):
            return
        self._warned[keys.queue] = (stored, now)
        log.warning(
            "queue %r: another server keeps other archive limits (max_size=%d, max_age=%.0fs) "
            "than this one (max_size=%d, max_age=%.0fs); each janitor stores its own, and the "
            "smaller limits delete archived tasks the larger would keep. Give every server of "
            "a queue the same archive_limits (rq-sched worker: --archive-max-size, "
            "--archive-max-age)",
            keys.queue,
            stored[0],
            stored[1] / 1000,
            own[0],
            own[1] / 1000,
        )

    async def trim(self, keys: QueueKeys) -> tuple[int, int]:
        """Trim one queue fully (in bounded batches); returns (completed, archived) dropped."""
        completed = archived = 0
        while True:
            script, key_list, args = ops.trim(keys, to_ms(self.clock.now()), self.limits)
            done, dropped = await scripts.arun(self.redis, script, key_list, args)
            completed += done
            archived += dropped
            if done < ops.BATCH_LIMIT and dropped < ops.BATCH_LIMIT:
                return completed, archived
