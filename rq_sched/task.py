"""The task as a handler sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(slots=True, eq=False)
class Task:
    """One task handed to a handler.

    Handlers read ``type``, ``payload`` and the metadata; a handler whose task was enqueued with
    ``retention`` may keep a result with :meth:`write_result`. Long-running sync handlers should
    check :meth:`is_cancelled` now and then: Python cannot stop a thread from outside.
    """

    type: str
    payload: Any
    id: str
    queue: str
    retry_count: int = 0
    max_retry: int = 25
    headers: dict[str, str] = field(default_factory=dict)
    deadline: datetime | None = None
    timeout: float | None = None
    result: bytes | None = None
    # A plain flag, not a threading.Event: it is only ever set and polled, and an Event per task
    # cost ~12% of a busy worker's time. Reading a bool set by another thread is safe in CPython.
    _cancelled: bool = field(default=False, repr=False)

    def write_result(self, data: bytes | str) -> None:
        """Keep ``data`` as the task's result (stored when the task has ``retention``)."""
        self.result = data.encode() if isinstance(data, str) else bytes(data)

    def is_cancelled(self) -> bool:
        """True once the task was cancelled or timed out; sync handlers should then return."""
        return self._cancelled

    def _cancel(self) -> None:
        self._cancelled = True
