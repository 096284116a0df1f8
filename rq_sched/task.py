"""The task as a handler sees it."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rq_sched.message import ParentOutcome, check_progress, encode_result


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
    parents: tuple[ParentOutcome, ...] = ()
    """For a task enqueued with ``depends_on`` (a chain link, a group's callback): each
    parent's ``(outcome, data, queue, id)`` in ``depends_on`` order; outcome "completed" (data:
    its result bytes, or None), "archived" (data: its error text) or "deleted". See
    :meth:`parent_results`."""
    key: str | None = None
    """The fairness key it was enqueued with (``enqueue(key=...)``), if any."""
    # A plain flag, not a threading.Event: it is only ever set and polled, and an Event per task
    # cost ~12% of a busy worker's time. Reading a bool set by another thread is safe in CPython.
    _cancelled: bool = field(default=False, repr=False)
    _may_start: Callable[[], Coroutine[Any, Any, bool]] | None = field(default=None, repr=False)
    """Set by the worker: asked right before the handler starts; False means the task was
    given up (its lease lost, or cancelled) and the handler must not start."""
    _start_by: Callable[[], float] | None = field(default=None, repr=False)
    """Set by the worker: the monotonic time until which the handler may start without a new
    check (see ``_may_start``); checked right before a sync handler starts, on its thread or in
    its child process (CLOCK_MONOTONIC is the same in every process)."""
    _progress: Callable[[Any, str | None], None] | None = field(default=None, repr=False)
    """Set by the worker: takes a progress report to write (from any thread)."""

    def write_result(self, data: object) -> None:
        """Keep ``data`` as the task's result (stored when the task has ``retention``).

        Raises:
            ValidationError: ``data`` cannot be stored (see
                :func:`~rq_sched.message.encode_result`).
        """
        self.result = encode_result(data)

    def parent_results(self) -> list[bytes | None]:
        """The results of this task's parents in ``depends_on`` order (a chain link's previous
        result is ``parent_results()[0]``; a group callback's are its members'); None for a
        parent that kept no result or did not complete (see :attr:`parents` for why)."""
        return [data if outcome == "completed" else None for outcome, data, _, _ in self.parents]  # type: ignore[misc]

    def report_progress(self, value: Any, message: str | None = None) -> None:
        """Report how far the handler got, shown by the inspector, the CLI and the dashboard
        while the task runs (and cleared when it settles).

        ``value`` is yours to choose: a fraction such as ``0.42``, a count, or any other
        msgpack-encodable value; ``message`` an optional line of text. Reports are written in
        the background, the latest one winning, so reporting often is cheap; it works the same
        from async, thread and process handlers.

        Raises:
            ValidationError: ``value`` cannot be stored or ``message`` is not a str.
        """
        check_progress(value, message)
        report = self._progress
        if report is not None:
            report(value, message)

    def is_cancelled(self) -> bool:
        """True once the task was cancelled or timed out; sync handlers should then return."""
        return self._cancelled

    def _cancel(self) -> None:
        self._cancelled = True
