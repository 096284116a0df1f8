"""The demo task set that ``rq-sched dev`` runs, so a newcomer sees every state at once."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time

from rq_sched.errors import SkipRetry
from rq_sched.router import Router
from rq_sched.task import Task

log = logging.getLogger("rq_sched.demo")
router = Router()


@router.task("demo:hello")
async def hello(task: Task) -> None:
    """An async handler: greets whoever the payload names."""
    log.info("hello, %s (task %s)", task.payload, task.id)


@router.task("demo:slow")
async def slow(task: Task) -> None:
    """Sleeps a few seconds, so active tasks show up in the dashboard."""
    await asyncio.sleep(float(task.payload or 3))


@router.task("demo:flaky")
async def flaky(task: Task) -> None:
    """Fails half the time, so retries and the archive fill up."""
    if random.random() < 0.5:
        raise RuntimeError(f"flaky failure on attempt {task.retry_count + 1}")


@router.task("demo:sync")
def sync_report(task: Task) -> None:
    """A plain ``def`` handler, run in a thread; keeps a result when retention is set."""
    time.sleep(0.2)
    task.write_result(f"report for {task.payload}")


@router.task("demo:hash", process=True)
def cpu_hash(task: Task) -> bytes:
    """CPU-bound work in a child process; its return value is kept as the result."""
    data = str(task.payload).encode()
    for _ in range(200_000):
        data = hashlib.sha256(data).digest()
    return data.hex().encode()


@router.task("demo:invalid")
async def invalid(task: Task) -> None:
    """Refuses its input for good: archived at once, never retried."""
    raise SkipRetry(f"cannot handle payload {task.payload!r}")
