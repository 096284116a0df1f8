"""The aggregator: turns each due aggregation group into one task (``enqueue(group=...)``).

It sleeps until the earliest group due time it knows of. It learns due times from the queue's
marker (the enqueue script announces a group's due time there, as a scheduled task's; the
server passes it on with :meth:`Aggregator.due_at`) and from its own reads; a periodic sweep
catches up on what came due while no server listened. Each batch is read, handed to the
router's aggregator, and committed by one script that removes exactly the entries read if they
are still the group's head (``lua/agg_commit.lua``), so servers racing for a group, or a batch
re-run after a crash, enqueue it once. See docs/workflows.md, "Task aggregation".
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from rq_sched import aggregation, ops, scripts
from rq_sched.aggregation import Aggregation
from rq_sched.clock import Clock, to_ms
from rq_sched.errors import CorruptTaskError, RqSchedError
from rq_sched.keys import QueueKeys
from rq_sched.message import decode
from rq_sched.models import NewTask
from rq_sched.options import DEFAULT_MAX_PAYLOAD_BYTES, prepare
from rq_sched.scripts import AnyAsyncRedis
from rq_sched.task import Task
from rq_sched.worker.component import Component

log = logging.getLogger("rq_sched")

FAILED_PAUSE = 30.0
"""Seconds before a group whose aggregator raised is tried again."""


class Aggregator(Component):
    name = "aggregator"

    def __init__(
        self,
        redis: AnyAsyncRedis,
        keys: dict[str, QueueKeys],
        *,
        clock: Clock,
        aggregation: Aggregation,
        sweep_interval: float,
    ) -> None:
        super().__init__()
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.aggregation = aggregation
        self.sweep_interval = sweep_interval
        self.limits = aggregation.limits.as_ms()
        self.committed = 0
        """Batches this aggregator turned into a task (or dropped, as the function said)."""
        self.lost_races = 0
        """Batches another aggregator committed first (this one's result was discarded)."""
        self._due = dict.fromkeys(keys, 0.0)  # look at start: catch up on what came due
        self._next_sweep = 0.0
        self._stored = False
        self._failed: dict[tuple[str, str], float] = {}

    def due_at(self, queue: str, due_ms: int) -> None:
        """Something in ``queue`` is due at ``due_ms``; wake earlier if that is sooner."""
        due = due_ms / 1000
        if queue in self._due and due < self._due[queue]:
            self._due[queue] = due
            self.wake()

    async def tick(self) -> float:
        if not self._stored:
            for keys in self.keys.values():
                await scripts.arun(self.redis, *ops.agg_conf(keys, self.limits))
            self._stored = True
        now = self.clock.now()
        sweep = now >= self._next_sweep
        if sweep:
            self._next_sweep = now + self.sweep_interval
        for queue, keys in self.keys.items():
            if sweep or self._due[queue] <= now:
                self._due[queue] = math.inf
                next_due = await self.aggregate(queue, keys)
                if next_due >= 0:
                    self._due[queue] = min(self._due[queue], next_due / 1000)
        upcoming = min(*self._due.values(), self._next_sweep)
        return max(0.0, upcoming - self.clock.now())

    async def aggregate(self, queue: str, keys: QueueKeys) -> int:
        """Aggregate every due group of ``queue``; returns the next due time (ms) or -1."""
        next_due = -1
        for _ in range(100):  # bounded: a group refilled to max_size meanwhile is due again
            now_ms = to_ms(self.clock.now())
            groups, next_due = await scripts.arun(self.redis, *ops.agg_due(keys, now_ms))
            names = [g.decode() for g in groups]
            todo = [g for g in names if self._failed.get((queue, g), 0.0) <= self.clock.now()]
            if not todo:
                break
            for group in todo:
                await self.flush(queue, keys, group)
        if self._failed:
            retry = min(self._failed.values()) * 1000
            next_due = int(retry) if next_due < 0 else min(next_due, int(retry))
        return int(next_due)

    async def flush(self, queue: str, keys: QueueKeys, group: str) -> bool:
        """Aggregate one due batch of ``group``; True when this call committed it."""
        now = self.clock.now()
        max_size = self.limits[2]
        entries = await scripts.arun(self.redis, *ops.agg_take(keys, group, to_ms(now), max_size))
        if not entries:
            return False
        try:
            task = await self._aggregate(queue, group, entries, now)
        except Exception:  # user code: logged, the batch stays for a retry
            log.exception(
                "aggregating group %r of %s failed; its %d task(s) stay and are tried again in %gs",
                group,
                queue,
                len(entries),
                FAILED_PAUSE,
            )
            self._failed[(queue, group)] = now + FAILED_PAUSE
            return False
        self._failed.pop((queue, group), None)
        call = ops.agg_commit(
            keys, group, now_ms=to_ms(now), grace_ms=self.limits[0], task=task, entries=entries
        )
        reply = await scripts.arun(self.redis, *call)
        if reply == 1:
            self.committed += 1
            return True
        if reply < 0:
            log.error(
                "aggregating group %r of %s: the task's id %r is taken by another task; its %d "
                "task(s) stay and are tried again in %gs",
                group, queue, task.id if task else "", len(entries), FAILED_PAUSE,
            )  # fmt: skip
            self._failed[(queue, group)] = now + FAILED_PAUSE
            return False
        self.lost_races += 1
        return False

    async def _aggregate(self, queue: str, group: str, entries: list[bytes], now: float) -> Any:
        tasks = [_task(queue, *aggregation.read_entry(e)) for e in entries]
        fn = self.aggregation.aggregate
        if inspect.iscoroutinefunction(fn):
            made = await fn(group, tasks)
        else:
            made = await asyncio.to_thread(fn, group, tasks)
            if inspect.isawaitable(made):
                made = await made
        if made is None:
            return None
        if not isinstance(made, NewTask):
            raise RqSchedError(
                f"the aggregator returned {made!r}; it must return a NewTask or None"
            )
        first_id = tasks[0].id
        made = replace(made, queue=queue, task_id=made.task_id or f"agg:{group}:{first_id}")
        return prepare(made, now_ms=to_ms(now), max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES)


def _task(queue: str, task_id: str, data: bytes) -> Task:
    try:
        message = decode(data, task_id=task_id)
    except CorruptTaskError:
        return Task(type="rq_sched:corrupt", payload=data, id=task_id, queue=queue)
    return Task(
        type=message.type,
        payload=message.payload,
        id=task_id,
        queue=queue,
        max_retry=message.max_retry,
        headers=message.headers or {},
        deadline=datetime.fromtimestamp(message.deadline / 1000, UTC) if message.deadline else None,
        timeout=message.timeout or None,
    )
