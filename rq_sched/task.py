"""The task as a handler sees it."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rq_sched.message import encode_result


@dataclass(slots=True, eq=False)
class Task:
    """One task handed to a handler.

    Handlers read ``type``, ``payload`` and the metadata. A handler whose task was enqueued with
    ``retention`` keeps a result by returning it or with :meth:`write_result`: bytes are stored
    as they are, a str as UTF-8, and any other msgpack-encodable value as msgpack (the contract
    is :func:`rq_sched.message.encode_result`). A result that cannot be stored fails the task,
    alone, with an error saying so. Long-running sync handlers should check
    :meth:`is_cancelled` now and then: Python cannot stop a thread from outside.
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
    result: Any = None
    """The value to keep as the result (None: none); encoded when the task is acknowledged."""
    # A plain flag, not a threading.Event: it is only ever set and polled, and an Event per task
    # cost ~12% of a busy worker's time. Reading a bool set by another thread is safe in CPython.
    _cancelled: bool = field(default=False, repr=False)
    _may_start: Callable[[], Coroutine[Any, Any, bool]] | None = field(default=None, repr=False)
    """Set by the worker: asked right before the handler starts; False means the task was
    given up (its lease lost, or cancelled) and the handler must not start."""
    _fresh: Callable[[], bool] | None = field(default=None, repr=False)
    """Set by the worker: True while a start needs no new check (see ``_may_start``); asked
    on a handler thread right before a sync handler starts."""

    def write_result(self, data: object) -> None:
        """Keep ``data`` as the task's result (stored when the task has ``retention``).

        Raises:
            ValidationError: ``data`` cannot be stored (see
                :func:`~rq_sched.message.encode_result`).
        """
        self.result = encode_result(data)

    def is_cancelled(self) -> bool:
        """True once the task was cancelled or timed out; sync handlers should then return."""
        return self._cancelled

    def _cancel(self) -> None:
        self._cancelled = True
