"""The one exception hierarchy of rq_sched, and the map from Lua failure codes to it.

Every error raised by rq_sched derives from :class:`RqSchedError`, and every one of its classes is
defined here (the modules that raise them import them; old import paths such as
``rq_sched.client.EnqueueManyError`` or ``rq_sched.dq.errors.DqError`` still work). The tree::

    RqSchedError
    ├── ValidationError (ValueError) ── PayloadTooLargeError, DqConfigError
    ├── RedisUnavailableError (ConnectionError)
    ├── WriteRefusedError
    ├── EnqueueManyError
    ├── CorruptTaskError ── WrongKeyTypeError
    ├── TaskNotFoundError, TaskIdConflictError, DuplicateTaskError, TickTakenError,
    │   TaskStateError, LeaseLostError, QueuePausedError, ScriptError
    ├── SkipRetry, Retry, TaskCancelledError               (handler control flow)
    ├── HandlerTimeoutError (TimeoutError), ProcessHandlerError   (worker runners)
    ├── MissingBinaryError (RuntimeError)                  (local redis-server launcher)
    └── DqError                                            (beanstalkd bridge)
        ├── NodeUnavailableError (ConnectionError), BeanstalkError ── JobNotFoundError
        ├── PutError, RevokeError, RedisDownError
        └── UnwrapError (ValueError)

Redis client failures become :class:`RedisUnavailableError` / :class:`WriteRefusedError` in one
place, :func:`rq_sched.connection.translate_errors`. Lua scripts report failures as small
negative integers (``lua/includes/codes.lua``); :func:`error_for_code` is the one table that
turns a code into an exception, used by the client and scheduler (enqueue) and the inspector
(operator actions). The worker never raises for a code: a settle or extend refused because its
lease is gone or its fencing token stale (``NOT_ACTIVE``) is logged, and the task is left where
the newer lease holder put it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rq_sched.dedup import Debounced, Throttled
    from rq_sched.models import TaskInfo


class RqSchedError(Exception):
    """Base class of every error rq_sched raises."""


class ValidationError(RqSchedError, ValueError):
    """An argument is malformed; the message says which and how to fix it."""


class PayloadTooLargeError(ValidationError):
    """The encoded payload is larger than the client's ``max_payload_bytes``."""


class RedisUnavailableError(RqSchedError, ConnectionError):
    """Redis could not be reached, or dropped the connection or timed out mid-call.

    A write interrupted mid-call may or may not have happened; the message says so.
    """


class WriteRefusedError(RqSchedError):
    """Redis answered a write with an error (out of memory under ``maxmemory``, an ACL, a
    read-only replica, a key of the wrong type); nothing was written for it."""


class EnqueueManyError(RqSchedError):
    """Some tasks of an ``enqueue_many`` call failed; the others were enqueued.

    Attributes:
        results: one entry per task, in order: its :class:`TaskInfo`, or the error it got.
        outcomes: one entry per task, in order, as ``enqueue_many``'s result's ``outcomes``:
            what a debounce or throttle item did (None for the others and the failed ones).
    """

    def __init__(
        self,
        results: list[TaskInfo | RqSchedError],
        outcomes: list[Debounced | Throttled | None] | None = None,
    ) -> None:
        failed = [r for r in results if isinstance(r, RqSchedError)]
        super().__init__(
            f"{len(failed)} of {len(results)} tasks were not enqueued (first: {failed[0]}); "
            "see .results for each task's outcome"
        )
        self.results = results
        self.outcomes: list[Debounced | Throttled | None] = (
            [None] * len(results) if outcomes is None else outcomes
        )


class ReplicationError(RqSchedError):
    """A replica-confirmed write (``replicas=``) was made on the master, but fewer replicas than
    asked confirmed it within ``replica_timeout``: it may or may not survive a failover.

    Attributes:
        confirmed: how many replicas confirmed the write.
        wanted: how many were asked for.
        results: what the write returned (a :class:`TaskInfo`, or for ``enqueue_many`` one
            entry per task: its TaskInfo or the error it got).
    """

    def __init__(self, message: str, *, confirmed: int, wanted: int, results: object) -> None:
        super().__init__(message)
        self.confirmed = confirmed
        self.wanted = wanted
        self.results = results


class CorruptTaskError(RqSchedError):
    """Data found in Redis is not a task message this version can read."""


class WrongKeyTypeError(CorruptTaskError):
    """A key rq_sched uses holds another kind of value (Redis answered WRONGTYPE): something
    other than rq_sched wrote it. The message names what to check."""


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


class TaskFailedError(RqSchedError):
    """``wait_result``: the task ended archived (failed for good, or cancelled) instead of
    completed. ``error`` is the error text of its last attempt; ``cancelled`` tells a cancel
    from a failure."""

    def __init__(self, message: str, *, queue: str, task_id: str, error: str, cancelled: bool):
        super().__init__(message)
        self.queue = queue
        self.task_id = task_id
        self.error = error
        self.cancelled = cancelled


class WaitTimeoutError(RqSchedError, TimeoutError):
    """``wait_result``: the task did not reach a final state within the timeout (it goes on;
    wait again, or look it up with the inspector)."""


# -- the worker's handler runners ------------------------------------------------------------


class HandlerTimeoutError(RqSchedError, TimeoutError):
    """The handler ran longer than its timeout or past the task's deadline."""


class ProcessHandlerError(RqSchedError):
    """A handler running in a child process raised; the message carries its traceback."""


# -- the local redis-server launcher -----------------------------------------------------------


class MissingBinaryError(RqSchedError, RuntimeError):
    """A program rq_sched needs to start (redis-server, beanstalkd...) is not installed; the
    message names the install command."""


# -- the beanstalkd bridge (rq_sched.dq) -------------------------------------------------------


class DqError(RqSchedError):
    """Base class of every error ``rq_sched.dq`` raises."""


class DqConfigError(DqError, ValidationError):
    """A node list, endpoint, tube, id, delay or time is malformed; the message says the fix."""


class NodeUnavailableError(DqError, ConnectionError):
    """A beanstalkd node could not be reached, or dropped the connection mid-command."""


class BeanstalkError(DqError):
    """beanstalkd answered a command with an error reply (``reply`` holds its name)."""

    def __init__(self, message: str, reply: str) -> None:
        super().__init__(message)
        self.reply = reply


class JobNotFoundError(BeanstalkError):
    """beanstalkd has no such job, or another connection holds it reserved."""


class PutError(DqError):
    """Fewer than two nodes stored the job; the copies that were stored have been revoked.

    Attributes:
        errors: endpoint -> the error that node gave.
    """

    def __init__(self, message: str, errors: Mapping[str, Exception]) -> None:
        super().__init__(message)
        self.errors = dict(errors)


class RevokeError(DqError):
    """Some nodes could not delete their copy of a job.

    Attributes:
        errors: endpoint -> the error that node gave.
    """

    def __init__(self, message: str, errors: Mapping[str, Exception]) -> None:
        super().__init__(message)
        self.errors = dict(errors)


class RedisDownError(DqError):
    """The dq consumer could not ask Redis about a job's dedup key; the job is given back to
    beanstalkd, not lost."""


class UnwrapError(DqError, ValueError):
    """A job body is not ``<unix nanoseconds>/<body>`` (go-queue dq's wire format)."""


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
