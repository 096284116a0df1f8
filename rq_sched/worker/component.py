"""The shape every background component of a worker server shares: start, stop, tick, wake.

A component's ``tick()`` does one iteration and says how long to sleep; tests call ``tick()``
directly. ``wake()`` runs the next tick at once. Redis errors are logged and retried with a
growing pause, so a Redis restart stalls a component but never kills it; anything else a tick
raises goes to the :class:`~rq_sched.worker.supervisor.Supervisor`, which logs the traceback and
restarts the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from redis.exceptions import RedisError

from rq_sched.errors import RqSchedError
from rq_sched.worker.supervisor import Supervisor, retry_pause

log = logging.getLogger("rq_sched")


class Component:
    """Base class: subclasses implement :meth:`tick`."""

    name = "component"

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def tick(self) -> float:
        """Do one iteration; return the seconds until the next one."""
        raise NotImplementedError

    def start(self, supervisor: Supervisor | None = None) -> None:
        """Run ticks in the background on the current event loop, under ``supervisor`` (the
        server's; a component started on its own gets a supervisor of its own)."""
        if self._task is None:
            self._task = (supervisor or Supervisor()).spawn(self.name, self._loop)

    async def stop(self) -> None:
        """Stop after the current tick (or at once, when sleeping)."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])

    def wake(self) -> None:
        """Run the next tick now instead of after the sleep."""
        self._wake.set()

    async def _loop(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            try:
                delay = await self.tick()
                failures = 0
            except (RedisError, RqSchedError, OSError) as exc:
                failures += 1
                delay = retry_pause(failures)
                log.warning("%s: %s (retrying in %.2fs)", self.name, exc, delay)
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], timeout: float = 10.0) -> None:
    """Cancel ``tasks`` and wait until they end (at most ``timeout`` seconds), ignoring how.

    A cancellation can be swallowed: on Python 3.11, ``asyncio.wait_for`` (which redis-py uses
    to send commands when a socket timeout is set) drops a cancel that arrives just as the
    command completes, and the task carries on. So the cancel is repeated until the task ends.
    """
    tasks = list(tasks)
    pending = {t for t in tasks if not t.done()}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
    for task in pending:
        log.warning("%s did not stop within %.0fs", task.get_name(), timeout)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved, so asyncio does not report it as never retrieved
