"""The record of one lease a worker holds (:class:`Running`): what running and settling its
task needs, shared by the processor and the writer of failures."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from rq_sched.message import TaskMessage
from rq_sched.task import Task


@dataclass(slots=True, eq=False)
class Running:
    """One lease this worker holds: everything that running and settling the task needs."""

    queue: str
    id: str
    data: bytes
    """The stored message as leased, so an outcome that cannot be encoded still archives it."""
    message: TaskMessage
    task: Task
    started_at: float
    token: int = 0
    """The lease's fencing token: every settle and extend presents it, and the store refuses
    a stale one (the task was recovered and leased again meanwhile)."""
    job: asyncio.Task[None] | None = None
    stop_reason: str | None = None
    """None while running normally; "cancel" (operator) or "shutdown"."""
    settling: bool = False
    """The outcome is being written; a cancel now is noted, never thrown into the write."""
    confirmed_at: float = field(default_factory=time.monotonic)
    """When the last read of Redis that found this lease current and the task not cancelled
    (the dequeue, or an extend) was sent, by this process's monotonic clock. Taken before the
    request, so a reply that arrives late (a slow link, a starved loop) cannot look fresh."""
    lease_lost: bool = False
    """The lease keeper found this lease gone (expired and recovered, or leased elsewhere):
    the handler must not start, and the outcome is dropped (the store would refuse it)."""
