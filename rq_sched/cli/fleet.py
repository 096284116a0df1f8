"""``rq-sched worker --workers N``: N worker processes under one command.

One Python process runs one event loop, so one worker uses about one core. ``--workers N``
starts N ordinary ``rq-sched worker`` processes with the same arguments (each a server of its
own, with its own id, heartbeat and leases) and supervises them:

- **Shutdown is shared.** SIGTERM or SIGINT to the command is passed to every worker, which
  shuts down gracefully (its running handlers get ``--shutdown-timeout``); a worker still
  running ``STOP_GRACE`` seconds after that is killed, and its tasks run again once their
  leases expire. A terminal's Ctrl-C reaches the workers directly as well; a second signal
  changes nothing.
- **A worker that dies is started again**: killed, crashed, or stopped as unhealthy (exit 3).
  Its leased tasks are recovered by lease expiry as for any dead worker. A worker that keeps
  dying is restarted after a pause that doubles from ``RESTART_PAUSE`` up to
  ``RESTART_PAUSE_MAX`` and is forgotten once a worker has run ``STABLE_AFTER`` seconds.
- **A worker never outlives the command.** Each worker holds the read end of a pipe whose
  write end only the command holds; when the command dies, even by ``kill -9``, the pipe reads
  EOF and the worker shuts down gracefully (:func:`watch_supervisor`).
- **Bad arguments fail once, up front**: the command checks them (and imports the router)
  before starting any worker, so a typo does not become N crash loops.

The supervisor waits on signals only (SIGCHLD, SIGTERM, SIGINT through a wake-up pipe), never
polling. Exit status: 0 when every worker stopped cleanly after a shutdown signal, 1 otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger("rq_sched")

STOP_GRACE = 10.0
"""Seconds past the workers' own shutdown timeout after which a worker still running is killed."""
FLEET_FD_ENV = "RQ_SCHED_FLEET_FD"
"""Names, in a worker's environment, the descriptor that reads EOF once its command is gone."""
RESTART_PAUSE = 0.5
"""Pause before starting again a worker that died; doubled for each quick death in a row."""
RESTART_PAUSE_MAX = 30.0
STABLE_AFTER = 60.0
"""A worker that ran this long before dying is restarted after the shortest pause again."""


@dataclass(slots=True)
class _Slot:
    """One of the N places a worker process runs in."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    pause: float = RESTART_PAUSE
    due: float = 0.0
    """When a dead worker is started again (monotonic); 0 while one runs."""
    exits: list[int] = field(default_factory=list)


class Fleet:
    """Runs ``command`` (a full ``rq-sched worker`` command line) ``count`` times."""

    def __init__(self, command: Sequence[str], count: int, *, shutdown_timeout: float) -> None:
        self.command = list(command)
        self.slots = [_Slot(n) for n in range(count)]
        self.stop_after = shutdown_timeout + STOP_GRACE
        self.restarts = 0
        self._signal: int | None = None
        self._life_r = self._life_w = -1

    def run(self) -> int:
        """Supervise until SIGTERM or SIGINT; the exit status (see the module docstring)."""
        life_r, self._life_w = os.pipe()  # never written: EOF for the workers when we are gone
        self._life_r = life_r
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _SIGNALS}
        old_fd = signal.set_wakeup_fd(wake_w)
        try:
            for slot in self.slots:
                self._start(slot)
            log.info("started %d workers (pids %s)", len(self.slots), self._pids())
            while self._signal is None:
                self._wait(wake_r, self._next_due())
                self._reap_and_restart()
            log.info("signal %s: stopping %d workers", self._signal, len(self.slots))
            return self._stop_all(wake_r)
        finally:
            signal.set_wakeup_fd(old_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(wake_r)
            os.close(wake_w)
            os.close(self._life_r)
            os.close(self._life_w)
            for slot in self.slots:  # only on an unexpected error: never leave workers behind
                if slot.proc is not None and slot.proc.poll() is None:
                    slot.proc.kill()
                    slot.proc.wait()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGCHLD and self._signal is None:
            self._signal = signum

    def _start(self, slot: _Slot) -> None:
        env = {**os.environ, FLEET_FD_ENV: str(self._life_r)}
        slot.proc = subprocess.Popen(self.command, env=env, pass_fds=(self._life_r,))
        slot.started = time.monotonic()
        slot.due = 0.0

    def _pids(self) -> str:
        return ", ".join(str(s.proc.pid) for s in self.slots if s.proc is not None)

    def _next_due(self) -> float | None:
        dues = [slot.due for slot in self.slots if slot.proc is None]
        return max(0.0, min(dues) - time.monotonic()) if dues else None

    @staticmethod
    def _wait(wake_r: int, timeout: float | None) -> None:
        with contextlib.suppress(InterruptedError):
            select.select([wake_r], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(wake_r, 512):
                pass

    def _reap_and_restart(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            proc = slot.proc
            if proc is not None and proc.poll() is not None:
                slot.exits.append(proc.returncode)
                slot.proc = None
                ran = now - slot.started
                slot.pause = RESTART_PAUSE if ran >= STABLE_AFTER else slot.pause
                slot.due = now + slot.pause
                log.warning(
                    "worker %d (pid %d) exited with %s after %.1fs; starting it again in %.1fs",
                    slot.index, proc.pid, _describe(proc.returncode), ran, slot.pause,
                )  # fmt: skip
                slot.pause = min(slot.pause * 2, RESTART_PAUSE_MAX)
            elif proc is None and slot.due <= now and self._signal is None:
                self._start(slot)
                self.restarts += 1

    def _stop_all(self, wake_r: int) -> int:
        running = [slot.proc for slot in self.slots if slot.proc is not None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_after
        while any(proc.poll() is None for proc in running):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._wait(wake_r, left)
        clean = True
        for proc in running:
            if proc.poll() is None:
                log.error("worker pid %d still running %.0fs after SIGTERM: killed", proc.pid,
                          self.stop_after)  # fmt: skip
                proc.kill()
                proc.wait()
                clean = False
            elif proc.returncode != 0:
                log.error("worker pid %d stopped with %s", proc.pid, _describe(proc.returncode))
                clean = False
        return 0 if clean else 1


_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"status {code}"


def worker_command(argv: Sequence[str]) -> list[str]:
    """The command line of one worker of ``rq-sched ... worker ... --workers N``: the same
    arguments, run by this interpreter, with ``--workers 1`` (argparse keeps the last)."""
    return [sys.executable, "-m", "rq_sched.cli", *argv, "--workers", "1"]


def watch_supervisor(stop: Callable[[], None]) -> None:
    """In a worker started by ``--workers N``: call ``stop()`` (a graceful shutdown) once the
    command that started it is gone. Does nothing in a worker started any other way."""
    raw = os.environ.pop(FLEET_FD_ENV, None)
    if raw is None or not raw.isdigit():
        return
    fd = int(raw)

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(fd, 1):
                pass  # nobody writes; EOF once every write end is closed
        log.warning("the rq-sched worker --workers command that started this worker is gone: "
                    "shutting down")  # fmt: skip
        stop()

    threading.Thread(target=watch, name="rq-sched-fleet-watch", daemon=True).start()
