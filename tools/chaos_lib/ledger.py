"""The ledger: one JSON line per event, appended to a file per process, outside the queue's Redis.

Every process (worker, handler child, producer, scheduler, operator, orchestrator) writes its own
file in the ledger directory, opened with ``O_APPEND`` and written with one ``os.write`` per
line, so a line is never interleaved or half-written by a concurrent writer, and a process
killed with ``kill -9`` loses at most the line it had not yet written. Each line carries the
writer's name and pid, a wall time (comparable across processes on one host) and a monotonic
time (the order of events inside one process).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LEDGER_ENV = "CHAOS_LEDGER_DIR"
NAME_ENV = "CHAOS_PROC_NAME"


class Ledger:
    """Appends events for one process; safe from threads and after a fork (reopens per pid)."""

    def __init__(self, directory: Path | str, name: str) -> None:
        self.directory = Path(directory)
        self.name = name
        self._fd: int | None = None
        self._pid = 0
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, default_name: str = "proc") -> Ledger | None:
        """The ledger named by the environment (``CHAOS_LEDGER_DIR``), if any."""
        directory = os.environ.get(LEDGER_ENV)
        if not directory:
            return None
        return cls(directory, os.environ.get(NAME_ENV, default_name))

    def write(self, event: str, **fields: Any) -> None:
        """Append one event line."""
        record = {
            "ev": event,
            "proc": self.name,
            "pid": os.getpid(),
            "wall": time.time(),
            "mono": time.monotonic(),
            **fields,
        }
        line = (json.dumps(record, default=str) + "\n").encode()
        with self._lock:
            os.write(self._handle(), line)

    def _handle(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._pid != pid:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{self.name}.{pid}.jsonl"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._pid = pid
        return self._fd

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


def read(directory: Path) -> Iterator[dict[str, Any]]:
    """Every event of every file, in no particular order; a torn last line is skipped."""
    for path in sorted(directory.glob("*.jsonl")):
        with path.open("rb") as handle:
            for raw in handle:
                try:
                    yield json.loads(raw)
                except ValueError:
                    continue  # a process killed mid-write leaves at most one torn line
