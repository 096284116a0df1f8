"""The recoverer: returns tasks whose lease expired (their worker died or hung) to pending.

Expiry is judged by Redis TIME inside ``lua/recover.lua``, so the recovering host's clock plays
no part; the injected clock only paces the component. A task an operator cancelled is not run
again: the script leases it to this recoverer, which archives it as cancelled, its message
recording why, under that lease's fencing token (a recoverer that dies first leaves a lease
that expires, and the next recover hands the task on, its cancel still recorded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from rq_sched import ops, scripts
from rq_sched.clock import Clock, to_ms
from rq_sched.errors import CorruptTaskError
from rq_sched.keys import QueueKeys
from rq_sched.message import decode
from rq_sched.ops import ArchiveLimits
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
        lease_duration: float,
        limits: ArchiveLimits,
        on_recovered: Callable[[], None],
    ) -> None:
        super().__init__()
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.interval = interval
        self.lease_ms = max(1, int(lease_duration * 1000))
        self.limits = limits
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
            script, key_list, args = ops.recover(keys, lease_ms=self.lease_ms)
            requeued, leased = await scripts.arun(self.redis, script, key_list, args)
            recovered += [i.decode() for i in requeued]
            for i in range(0, len(leased), 3):
                task_id = leased[i].decode()
                await self._archive_cancelled(keys, task_id, leased[i + 1], int(leased[i + 2]))
                cancelled.append(task_id)
            if len(requeued) + len(leased) // 3 < ops.BATCH_LIMIT:
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

    async def _archive_cancelled(
        self, keys: QueueKeys, task_id: str, data: bytes, token: int
    ) -> None:
        """Archive a cancelled task the recover script leased to us, as a worker archives a
        task cancelled before it started (not counted as failed)."""
        now = self.clock.now()
        reason = "TaskCancelledError: cancelled; its worker stopped renewing the lease"
        try:
            message = decode(data, task_id=task_id)
        except CorruptTaskError as exc:
            call = ops.archive_corrupt(
                keys, task_id, token, raw=data, error=f"{reason}; {exc}", now_s=now,
                limits=self.limits,
            )  # fmt: skip
        else:
            call = ops.archive_active(
                keys,
                task_id,
                token,
                encoded=message.failed(reason, to_ms(now)).encode(),
                unique=message.unique,
                now_s=now,
                limits=self.limits,
                count_failure=False,
                error=reason,
            )
        await scripts.arun(self.redis, *call)
