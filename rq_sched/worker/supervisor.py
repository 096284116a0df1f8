"""Supervision of a worker server's long-running loops: nothing in the background dies silently.

Every loop (the fetch loop, the processor's ack loop, the marker watchers, the cancel listener and
every :class:`~rq_sched.worker.component.Component`) runs under one :class:`Supervisor`. A loop
handles the failures it expects (Redis unreachable) itself, pausing with :func:`retry_pause`. An
exception it does not expect is a bug or a broken environment: the supervisor logs its
traceback and restarts the loop after the same growing pause. A loop that fails more than
``failures_allowed`` times within ``window`` seconds is beyond restarting: the supervisor calls
``on_unhealthy``, and the server reports itself unhealthy, shuts down gracefully and exits
non-zero (:class:`ServerUnhealthyError`), so that a process manager starts a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from rq_sched.errors import RqSchedError

log = logging.getLogger("rq_sched")

MAX_PAUSE = 2.0
"""Longest pause between two attempts of a failing loop or call, in seconds."""


def retry_pause(failures: int) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: 0.1, 0.2, 0.4 ... up to
    :data:`MAX_PAUSE`. The one formula every retrying loop of the worker uses."""
    return min(MAX_PAUSE, 0.05 * 2.0 ** min(max(failures, 1), 16))


class ServerUnhealthyError(RqSchedError):
    """A background loop of a worker server kept failing; the server stopped gracefully so that
    a process manager can start a fresh one."""


class Supervisor:
    """Runs loops as asyncio tasks, restarting each after an unexpected exception."""

    def __init__(
        self,
        *,
        failures_allowed: int = 5,
        window: float = 60.0,
        on_unhealthy: Callable[[str], None] | None = None,
    ) -> None:
        self.failures_allowed = failures_allowed
        self.window = window
        self.on_unhealthy = on_unhealthy
        self.failed_loop: str | None = None
        """Name of the first loop that failed too often, or None while all are healthy."""
        self.restarts = 0

    def spawn(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
        """Run ``run()`` as a task, again after each unexpected exception, until it returns or
        the task is cancelled."""
        return asyncio.create_task(self._supervise(name, run), name=f"rq_sched.{name}")

    async def _supervise(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        # The window is measured on the monotonic clock, not the server's injectable clock:
        # it is about how fast a loop crashes in real time, and a frozen test clock would
        # otherwise count every failure as simultaneous.
        recent: deque[float] = deque()
        while True:
            try:
                await run()
                return
            except Exception:
                log.exception("%s failed unexpectedly; restarting it", name)
            now = time.monotonic()
            recent.append(now)
            while recent[0] < now - self.window:
                recent.popleft()
            self.restarts += 1
            if len(recent) > self.failures_allowed and self.failed_loop is None:
                self.failed_loop = name
                log.error(
                    "%s failed %d times within %.0fs; the server is unhealthy",
                    name,
                    len(recent),
                    self.window,
                )
                if self.on_unhealthy is not None:
                    self.on_unhealthy(name)
            await asyncio.sleep(retry_pause(len(recent)))
