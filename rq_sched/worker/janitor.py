"""The janitor: drops completed tasks whose retention ended and trims the archive."""

from __future__ import annotations

from rq_sched import ops, scripts
from rq_sched.clock import Clock, to_ms
from rq_sched.keys import QueueKeys
from rq_sched.ops import ArchiveLimits
from rq_sched.scripts import AnyAsyncRedis
from rq_sched.worker.component import Component


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

    async def tick(self) -> float:
        for keys in self.keys.values():
            await self.trim(keys)
        return self.interval

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
