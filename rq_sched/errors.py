"""The one exception hierarchy of rq_sched, and the map from Lua failure codes to it.

Every error raised by rq_sched derives from :class:`RqSchedError`. Lua scripts report failures as
small negative integers (``lua/includes/codes.lua``); :func:`error_for_code` is the one table
that turns a code into an exception, used by the client and scheduler (enqueue) and the
inspector (operator actions). The worker never raises for a code: a settle or extend refused
because its lease is gone or its fencing token stale (``NOT_ACTIVE``) is logged, and the task
is left where the newer lease holder put it.
"""

from __future__ import annotations

from datetime import timedelta


class RqSchedError(Exception):
    """Base class of every error rq_sched raises."""


class ValidationError(RqSchedError, ValueError):
    """An argument is malformed; the message says which and how to fix it."""


class PayloadTooLargeError(ValidationError):
    """The encoded payload is larger than the client's ``max_payload_bytes``."""


class RedisUnavailableError(RqSchedError, ConnectionError):
    """Redis could not be reached or dropped the connection. A write in flight when the
    connection dropped may or may not have happened; the message says how to retry safely."""


class CorruptTaskError(RqSchedError):
    """Data found in Redis is not a task message this version can read."""


class TaskNotFoundError(RqSchedError):
    """No task with that id exists in that queue."""


class TaskIdConflictError(RqSchedError):
    """A live task (pending, active, scheduled or retry), or a completed task still kept by its
    ``retention``, already uses that ``task_id`` with a different message."""


class DuplicateTaskError(RqSchedError):
    """A unique task with the same type and payload is still locked (``unique=`` option)."""


class TickTakenError(RqSchedError):
    """A periodic tick was already enqueued by another scheduler instance."""


class TaskStateError(RqSchedError):
    """The action does not apply to the task in its current state (e.g. deleting it, active)."""


class LeaseLostError(RqSchedError):
    """The worker no longer holds the task's lease (it expired and the task was recovered)."""


class QueuePausedError(RqSchedError):
    """The queue is paused; dequeue returns nothing until it is unpaused."""


class ScriptError(RqSchedError):
    """A Lua script returned a failure code this version does not know."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or f"script failed with code {code}")
        self.code = code


class SkipRetry(RqSchedError):  # noqa: N818 - a control-flow signal, named as asynq names it
    """Raised by a handler: archive the task now, do not retry it."""


class Retry(RqSchedError):  # noqa: N818 - a control-flow signal
    """Raised by a handler: retry the task after ``delay`` instead of the backoff delay."""

    def __init__(self, delay: timedelta | float, reason: str = "") -> None:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        if seconds < 0:
            raise ValidationError("Retry(delay): delay must be >= 0 seconds")
        super().__init__(reason or f"retry requested in {seconds:g}s")
        self.delay = seconds


class TaskCancelledError(RqSchedError):
    """The task was cancelled while it ran; it ends archived as cancelled and is not retried."""


# Codes returned by the Lua scripts; keep in step with lua/includes/codes.lua.
CONFLICT = -1
DUPLICATE = -2
TICK_TAKEN = -3
NOT_ACTIVE = -4
PAUSED = -5
TASK_ACTIVE = -7
NOT_FOUND = -8
WRONG_STATE = -9

_CODE_MESSAGES: dict[int, tuple[type[RqSchedError], str]] = {
    CONFLICT: (
        TaskIdConflictError,
        "task id {id!r} is already used in queue {queue!r} by a live task or a completed task "
        "still retained; pick another task_id, or delete that task first "
        "(Inspector.delete_task) to run it again",
    ),
    DUPLICATE: (
        DuplicateTaskError,
        "a unique task with the same type and payload is already queued in {queue!r}; "
        "its lock is released when that task finishes or the unique TTL ends",
    ),
    TICK_TAKEN: (TickTakenError, "tick already enqueued for {id!r} in queue {queue!r}"),
    NOT_ACTIVE: (
        LeaseLostError,
        "task {id!r} in queue {queue!r} is no longer leased to this worker "
        "(its lease expired and it was recovered, or leased again: stale fencing token)",
    ),
    PAUSED: (QueuePausedError, "queue {queue!r} is paused; unpause it to resume processing"),
    TASK_ACTIVE: (
        TaskStateError,
        "task {id!r} in queue {queue!r} is active; cancel it instead, or wait until it ends",
    ),
    NOT_FOUND: (TaskNotFoundError, "no task {id!r} in queue {queue!r}"),
    WRONG_STATE: (
        TaskStateError,
        "task {id!r} in queue {queue!r} is not in a state this action applies to "
        "(see Inspector.get_task for its state)",
    ),
}


def error_for_code(code: int, *, queue: str, task_id: str) -> RqSchedError:
    """Build the exception for a script failure ``code`` (a small negative integer)."""
    entry = _CODE_MESSAGES.get(code)
    if entry is None:
        return ScriptError(code)
    cls, template = entry
    return cls(template.format(id=task_id, queue=queue))


def raise_for_code(code: int, *, queue: str, task_id: str) -> None:
    """Raise the exception for ``code`` if it is a failure code (negative); else return."""
    if code < 0:
        raise error_for_code(code, queue=queue, task_id=task_id)
