"""The one exception hierarchy of rq_sched, and the map from Lua failure codes to it.

Every error raised by rq_sched derives from :class:`RqSchedError`. Lua scripts report failures as
small negative integers; :func:`raise_for_code` is the only place that turns them into exceptions.
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
    """Redis could not be reached or dropped the connection; nothing was written."""


class CorruptTaskError(RqSchedError):
    """Data found in Redis is not a task message this version can read."""


class TaskNotFoundError(RqSchedError):
    """No task with that id exists in that queue."""


class TaskIdConflictError(RqSchedError):
    """A live task (pending, active, scheduled or retry) already uses that ``task_id``."""


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


MAX_RETRY_DELAY = 365 * 86400.0
"""Longest delay :class:`Retry` accepts, in seconds (a year)."""


class Retry(RqSchedError):  # noqa: N818 - a control-flow signal
    """Raised by a handler: retry the task after ``delay`` instead of the backoff delay.

    Raises:
        ValidationError: ``delay`` is not a finite number of seconds between 0 and a year
            (checked where it is raised, so a bad delay fails the handler, not the worker).
    """

    def __init__(self, delay: timedelta | float, reason: str = "") -> None:
        if isinstance(delay, timedelta):
            seconds = delay.total_seconds()
        elif isinstance(delay, int | float) and not isinstance(delay, bool):
            seconds = float(delay)
        else:
            raise ValidationError(
                f"Retry(delay): delay must be seconds (a number) or a timedelta, got {delay!r}"
            )
        if not 0 <= seconds <= MAX_RETRY_DELAY:  # also refuses NaN
            raise ValidationError(
                f"Retry(delay): delay must be between 0 and {MAX_RETRY_DELAY:g} seconds (a "
                f"year), got {delay!r}; to give up on the task raise SkipRetry instead"
            )
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
LEASE_RENEWED = -6
TASK_ACTIVE = -7
NOT_FOUND = -8
WRONG_STATE = -9

_CODE_MESSAGES: dict[int, tuple[type[RqSchedError], str]] = {
    CONFLICT: (
        TaskIdConflictError,
        "task id {id!r} is already used by a live task in queue {queue!r}; "
        "pick another task_id or wait until that task finishes",
    ),
    DUPLICATE: (
        DuplicateTaskError,
        "a unique task with the same type and payload is already queued in {queue!r}; "
        "its lock is released when that task finishes or the unique TTL ends",
    ),
    TICK_TAKEN: (TickTakenError, "tick already enqueued for {id!r} in queue {queue!r}"),
    NOT_ACTIVE: (
        LeaseLostError,
        "task {id!r} in queue {queue!r} is no longer active on this worker "
        "(its lease expired and it was recovered)",
    ),
    PAUSED: (QueuePausedError, "queue {queue!r} is paused; unpause it to resume processing"),
    LEASE_RENEWED: (LeaseLostError, "task {id!r} in queue {queue!r} renewed its lease meanwhile"),
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
