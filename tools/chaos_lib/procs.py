"""Child processes of a soak: started in their own process group, stopped by pid.

Each child leads a new session, so at the end ``killpg(pid)`` also reaches what it started
(a worker's forkserver and handler children) without touching anything else on the machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from chaos_lib.ledger import LEDGER_ENV, NAME_ENV, Ledger

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Proc:
    """One managed child: how to start it, and its current process."""

    name: str
    role: str
    argv: list[str]
    run_dir: Path
    ledger: Ledger
    popen: subprocess.Popen[bytes] | None = None
    holds: int = 0
    """Faults keeping it down on purpose right now (the supervisor leaves it alone while any
    does). A count, not a flag: two faults on one worker overlap, and the first undo must not
    hand the process back to the supervisor while the second still holds it."""
    pids: list[int] = field(default_factory=list)
    """Every pid it ever had, so teardown reaches leftovers of earlier incarnations."""

    def start(self) -> None:
        env = dict(os.environ)
        paths = (str(ROOT / "tools"), str(ROOT), env.get("PYTHONPATH", ""))
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        env[LEDGER_ENV] = str(self.run_dir / "ledger")
        env[NAME_ENV] = self.name
        logs = self.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / f"{self.name}.log").open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, *self.argv],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pids.append(self.popen.pid)
        self.ledger.write(
            "spawn", name=self.name, role=self.role, child=self.popen.pid, argv=self.argv[2:4]
        )

    @property
    def pid(self) -> int:
        return self.popen.pid if self.popen is not None else 0

    @property
    def held(self) -> bool:
        return self.holds > 0

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the exit; True if it exited."""
        if self.popen is None:
            return True
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM, wait, then SIGKILL its whole process group (every incarnation)."""
        self.signal(signal.SIGTERM)
        self.wait(timeout)
        self.kill_groups()

    def kill_groups(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(5)


def wait_all(procs: list[Proc], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.wait(max(0.0, deadline - time.monotonic()))
