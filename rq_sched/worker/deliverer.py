"""The deliverer: hands a settled task's recorded outcome to its dependants (docs/workflows.md).

The settling scripts record the outcome of a task that has dependants in the task's own slot,
in the step that makes it final, and tell the worker so; the worker then asks this component to
deliver it at once (:meth:`Deliverer.notify`). A worker killed between the two leaves the
record undelivered: every server's deliverer also sweeps its queues for records older than a
grace period (``lua/dep_due.lua``) and delivers them. Delivery is idempotent, so the sweep and
the worker may both deliver the same record.
"""

from __future__ import annotations

import logging

from rq_sched import ops, scripts, workflows
from rq_sched.keys import QueueKeys
from rq_sched.scripts import AnyAsyncRedis
from rq_sched.worker.component import Component

log = logging.getLogger("rq_sched")


class Deliverer(Component):
    name = "deliverer"

    def __init__(
        self,
        redis: AnyAsyncRedis,
        keys: dict[str, QueueKeys],
        *,
        namespace: str,
        sweep_interval: float,
        grace: float,
    ) -> None:
        super().__init__()
        self.redis = redis
        self.keys = keys
        self.namespace = namespace
        self.sweep_interval = sweep_interval
        self.grace_ms = max(0, int(grace * 1000))
        self.delivered = 0
        """Outcome records delivered by this component (at once or by the sweep)."""
        self.swept = 0
        """Of those, records the sweep found undelivered past the grace period."""
        self._pending: dict[tuple[str, str], None] = {}

    def notify(self, queue: str, task_id: str) -> None:
        """``task_id`` settled with dependants: deliver its outcome now."""
        self._pending[(queue, task_id)] = None
        self.wake()

    async def tick(self) -> float:
        await self.deliver_pending()
        await self.sweep()
        return self.sweep_interval

    async def deliver_pending(self) -> int:
        """Deliver what this worker's settles reported; returns how many records."""
        done = 0
        while self._pending:
            queue, task_id = next(iter(self._pending))
            # Dropped only once delivered: a Redis error keeps it for the next tick.
            done += await workflows.adeliver(self.redis, self.namespace, queue, task_id)
            self._pending.pop((queue, task_id), None)
        self.delivered += done
        return done

    async def sweep(self) -> int:
        """Deliver records left undelivered past the grace period (their worker died)."""
        done = 0
        for queue, keys in self.keys.items():
            while True:
                ids = await scripts.arun(self.redis, *ops.dep_due(keys, self.grace_ms))
                for raw in ids:
                    task_id = raw.decode()
                    log.warning(
                        "task %s/%s: delivering its outcome to its dependants (left "
                        "undelivered, its worker probably died after settling it)",
                        queue,
                        task_id,
                    )
                    done += await workflows.adeliver(self.redis, self.namespace, queue, task_id)
                if len(ids) < ops.BATCH_LIMIT:
                    break
        self.swept += done
        self.delivered += done
        return done
