"""The recoverer: returns tasks whose lease expired (their worker died or hung) to pending."""

from __future__ import annotations

import logging
from collections.abc import Callable

from rq_sched import ops, scripts
from rq_sched.clock import Clock, to_ms
from rq_sched.keys import QueueKeys
from rq_sched.scripts import AnyAsyncRedis
from rq_sched.worker.component import Component

log = logging.getLogger("rq_sched")


class Recoverer(Component):
    name = "recoverer"

    def __init__(
        self,
        redis: AnyAsyncRedis,
        keys: dict[str, QueueKeys],
        *,
        clock: Clock,
        interval: float,
        on_recovered: Callable[[], None],
    ) -> None:
        super().__init__()
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.interval = interval
        self.on_recovered = on_recovered

    async def tick(self) -> float:
        for queue, keys in self.keys.items():
            await self.recover(queue, keys)
        return self.interval

    async def recover(self, queue: str, keys: QueueKeys) -> list[str]:
        """Recover every expired lease of ``queue``; returns the recovered ids."""
        recovered: list[str] = []
        while True:
            script, key_list, args = ops.recover(keys, to_ms(self.clock.now()))
            ids = [i.decode() for i in await scripts.arun(self.redis, script, key_list, args)]
            recovered += ids
            if len(ids) < ops.BATCH_LIMIT:
                break
        if recovered:
            log.warning(
                "recovered %d task(s) of %s whose worker stopped renewing the lease: %s",
                len(recovered),
                queue,
                ", ".join(recovered[:10]),
            )
            self.on_recovered()
        return recovered
