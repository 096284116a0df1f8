"""The deliverer: hands a settled task's recorded outcome to its dependants (docs/workflows.md).

The settling scripts record the outcome of a task that has dependants in the task's own slot,
in the step that makes it final, and tell the worker so; the worker then asks this component to
deliver it at once (:meth:`Deliverer.notify`). A worker killed between the two leaves the
record undelivered: every server's deliverer also sweeps its queues for records older than a
grace period (``lua/dep_due.lua``) and delivers them. Delivery is idempotent, so the sweep and
the worker may both deliver the same record. A record Redis refuses to deliver (a dependant's
queue holding someone else's data) or that does not decode is logged and left for the next
sweep; it never holds up the others.
"""

from __future__ import annotations

import logging

from redis.exceptions import ResponseError

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
            # Dropped only once delivered or refused: an outage keeps it for the next tick; a
            # refused record stays in the outbox, where the sweep finds it again.
            done += await self._deliver(queue, task_id) or 0
            self._pending.pop((queue, task_id), None)
        self.delivered += done
        return done

    async def _deliver(self, queue: str, task_id: str) -> int | None:
        """Deliver one record; None when Redis refused it or it does not decode (logged)."""
        try:
            return await workflows.adeliver(self.redis, self.namespace, queue, task_id)
        except (ResponseError, ValueError, TypeError) as exc:
            log.error(
                "task %s/%s: its outcome cannot be delivered to its dependants (%s); left for "
                "the next sweep, the other records go on",
                queue, task_id, exc,
            )  # fmt: skip
            return None

    async def sweep(self) -> int:
        """Deliver records left undelivered past the grace period (their worker died)."""
        done = 0
        for queue, keys in self.keys.items():
            while True:
                ids = await scripts.arun(self.redis, *ops.dep_due(keys, self.grace_ms))
                refused = 0
                for raw in ids:
                    task_id = raw.decode()
                    log.warning(
                        "task %s/%s: delivering its outcome to its dependants (left "
                        "undelivered, its worker probably died after settling it)",
                        queue,
                        task_id,
                    )
                    delivered = await self._deliver(queue, task_id)
                    if delivered is None:
                        refused += 1
                    done += delivered or 0
                # Refused records stay first in line: a batch of nothing else ends the pass.
                if len(ids) < ops.BATCH_LIMIT or refused == len(ids):
                    break
        self.swept += done
        self.delivered += done
        return done
