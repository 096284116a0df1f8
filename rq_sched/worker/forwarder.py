"""The forwarder: moves scheduled and retry tasks to pending at the moment they are due.

It does not poll: it sleeps until the earliest due time it knows of. It learns due times from
the "d" wake-ups of the marker sets and from each forward call's answer; a slow safety sweep
covers a wake-up lost with a crashed server.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from rq_sched import ops, scripts
from rq_sched.clock import Clock, to_ms
from rq_sched.keys import QueueKeys
from rq_sched.scripts import AnyAsyncRedis
from rq_sched.worker.component import Component


class Forwarder(Component):
    name = "forwarder"

    def __init__(
        self,
        redis: AnyAsyncRedis,
        keys: dict[str, QueueKeys],
        *,
        clock: Clock,
        sweep_interval: float,
        on_forwarded: Callable[[], None],
    ) -> None:
        super().__init__()
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.sweep_interval = sweep_interval
        self.on_forwarded = on_forwarded
        self._due = dict.fromkeys(keys, math.inf)
        self._next_sweep = 0.0  # sweep at start: catch up on whatever came due while down

    def due_at(self, queue: str, due_ms: int) -> None:
        """Something in ``queue`` is due at ``due_ms``; wake earlier if that is sooner."""
        due = due_ms / 1000
        if queue in self._due and due < self._due[queue]:
            self._due[queue] = due
            self.wake()

    async def tick(self) -> float:
        now = self.clock.now()
        sweep = now >= self._next_sweep
        if sweep:
            self._next_sweep = now + self.sweep_interval
        for queue, keys in self.keys.items():
            if sweep or self._due[queue] <= now:
                due, self._due[queue] = self._due[queue], math.inf
                try:
                    await self.forward(queue, keys)
                except BaseException:
                    # Keep what was learnt, so the tick after a failed call tries again at
                    # once instead of waiting for the next sweep.
                    self._due[queue] = min(self._due[queue], due, now if sweep else due)
                    raise
        upcoming = min(*self._due.values(), self._next_sweep)
        return max(0.0, upcoming - self.clock.now())

    async def forward(self, queue: str, keys: QueueKeys) -> int:
        """Move everything due in ``queue`` (in bounded batches); returns how many moved."""
        total = 0
        while True:
            script, key_list, args = ops.forward(keys, to_ms(self.clock.now()))
            moved, next_due = await scripts.arun(self.redis, script, key_list, args)
            total += moved
            if moved:
                self.on_forwarded()
            if moved < ops.BATCH_LIMIT:
                break
        if next_due >= 0:
            self._due[queue] = min(self._due[queue], next_due / 1000)
        return int(total)
