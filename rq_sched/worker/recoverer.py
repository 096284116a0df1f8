"""The recoverer: returns tasks whose lease expired (their worker died or hung) to pending.

Expiry is judged by Redis TIME inside ``lua/recover.lua``, so the recovering host's clock plays
no part; the injected clock only paces the component. A task an operator cancelled is archived
as cancelled instead of being run again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from rq_sched import ops, scripts
from rq_sched.clock import Clock
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
        """Recover every lease of ``queue`` that expired by Redis TIME; returns the ids put back
        to pending (tasks with a recorded cancel are archived as cancelled instead)."""
        recovered: list[str] = []
        cancelled: list[str] = []
        while True:
            script, key_list, args = ops.recover(keys)
            requeued, archived = await scripts.arun(self.redis, script, key_list, args)
            recovered += [i.decode() for i in requeued]
            for i in range(0, len(archived), 2):
                task_id, digest = archived[i].decode(), archived[i + 1].decode()
                cancelled.append(task_id)
                if digest:
                    await scripts.arun(self.redis, *ops.release_unique(keys, digest, task_id))
            if len(requeued) + len(archived) // 2 < ops.BATCH_LIMIT:
                break
        if cancelled:
            log.warning(
                "archived %d cancelled task(s) of %s whose worker stopped renewing the lease: %s",
                len(cancelled),
                queue,
                ", ".join(cancelled[:10]),
            )
        if recovered:
            log.warning(
                "recovered %d task(s) of %s whose worker stopped renewing the lease: %s",
                len(recovered),
                queue,
                ", ".join(recovered[:10]),
            )
            self.on_recovered()
        return recovered
