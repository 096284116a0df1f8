"""Structured logs: one JSON object per line, carrying the running task's id, type, queue and
attempt, for log pipelines. Standard library only.

Two parts, used together::

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    router.use(TaskLogContext())  # every log line written while a task runs names the task

:class:`TaskLogContext` is router middleware: while a handler runs (on the event loop or in a
handler thread: the worker hands its context variables to the thread) it puts the task's fields
in a context variable, and optionally logs one line when a task starts and one when it ends.
:class:`JsonFormatter` writes each record as JSON with those fields when they are set. Handlers
in child processes (``process=True``) run outside it: their logs carry no task fields.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rq_sched.router import Next
from rq_sched.task import Task

__all__ = ["JsonFormatter", "TaskLogContext", "current_task_fields"]

_task_fields: contextvars.ContextVar[Mapping[str, object] | None] = contextvars.ContextVar(
    "rq_sched_task_log_fields", default=None
)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def current_task_fields() -> Mapping[str, object] | None:
    """The fields of the task running in this context (None outside a task)."""
    return _task_fields.get()


@dataclass(frozen=True, kw_only=True)
class TaskLogContext:
    """Router middleware that makes the running task's fields available to log records.

    Args:
        log_events: also log ``task started`` (DEBUG) and ``task succeeded`` (INFO) or
            ``task failed`` (WARNING, with the traceback) with the duration in ms.
        logger: the logger those event lines go to.
    """

    log_events: bool = False
    logger: str = "rq_sched.tasks"

    async def __call__(self, task: Task, call_next: Next) -> None:
        fields = {
            "task_id": task.id,
            "task_type": task.type,
            "queue": task.queue,
            "attempt": task.retry_count + 1,
            "max_retry": task.max_retry,
        }
        token = _task_fields.set(fields)
        try:
            if not self.log_events:
                await call_next(task)
                return
            await self._logged(task, call_next)
        finally:
            _task_fields.reset(token)

    async def _logged(self, task: Task, call_next: Next) -> None:
        log = logging.getLogger(self.logger)
        log.debug("task started")
        started = time.perf_counter()
        try:
            await call_next(task)
        except BaseException as exc:
            elapsed = round((time.perf_counter() - started) * 1000, 3)
            log.warning(
                "task failed: %s", type(exc).__name__, exc_info=True, extra={"duration_ms": elapsed}
            )
            raise
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        log.info("task succeeded", extra={"duration_ms": elapsed})


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line.

    Keys: ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``, ``message``; the task
    fields (``task_id``, ``task_type``, ``queue``, ``attempt``, ``max_retry``) when the record
    was written while a task ran under :class:`TaskLogContext`; ``exception`` (the formatted
    traceback) when there is one; and every ``extra=`` field (values JSON cannot hold are
    written as their ``str``).

    Args:
        static_fields: added to every line (e.g. ``{"service": "billing"}``).
    """

    def __init__(self, *, static_fields: Mapping[str, object] | None = None) -> None:
        super().__init__()
        self.static_fields = dict(static_fields or {})

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (never raises for odd ``extra`` values)."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **self.static_fields,
        }
        line.update(_task_fields.get() or {})
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        try:
            return json.dumps(line, default=str, ensure_ascii=False)
        except (TypeError, ValueError):  # e.g. a dict with non-str keys in an extra value
            return json.dumps(
                {
                    k: v if isinstance(v, str | int | float | bool | None) else repr(v)
                    for k, v in line.items()
                },
                ensure_ascii=False,
            )
