"""Recording a run that did not succeed: retry its task, or archive it, written at once.

Successes are acknowledged in batches (:mod:`~rq_sched.worker.acks`); a failure is written
one by one, at once, retrying through a Redis outage while the lease keeps the task. Recording
cannot fail open: an outcome that cannot be written as given (an error text that does not
encode, a backoff that returns nonsense) is written as a plain failure record, and a message
that does not decode is archived as corrupt with its raw bytes
(:meth:`FailureWriter._corrupt_call`), so no message can stop the worker.
"""

from __future__ import annotations

import asyncio
import logging
import math
import traceback
from collections.abc import Callable

from redis.exceptions import RedisError

from rq_sched import ops, scripts
from rq_sched.backoff import default_backoff
from rq_sched.clock import Clock, to_ms
from rq_sched.errors import (
    CorruptTaskError,
    Retry,
    RqSchedError,
    SkipRetry,
    TaskCancelledError,
    ValidationError,
)
from rq_sched.keys import QueueKeys
from rq_sched.router import Router
from rq_sched.scripts import AnyAsyncRedis, Call
from rq_sched.worker.acks import OUTAGE
from rq_sched.worker.config import ServerConfig
from rq_sched.worker.running import Running
from rq_sched.worker.supervisor import retry_pause

log = logging.getLogger("rq_sched")

WRITE_ATTEMPTS = 60
"""Attempts to write one outcome through a Redis outage (about two minutes) before giving up;
the task then runs again once its lease expires."""


class FailureWriter:
    """Writes the outcome of a failed (or cancelled, or unusable) run of one worker server."""

    def __init__(
        self,
        redis: AnyAsyncRedis,
        keys: dict[str, QueueKeys],
        *,
        config: ServerConfig,
        router: Router,
        clock: Clock,
        on_reported: Callable[[str, str], None],
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.config = config
        self.router = router
        self.clock = clock
        self.on_reported = on_reported
        """Called with (queue, id) of a task archived with its outcome recorded for its
        dependants (to be delivered)."""

    async def record(self, entry: Running, error: BaseException) -> None:
        """Retry or archive ``entry``'s task for ``error``; a cancel that arrived while its
        retry was written archives it after all."""
        call, retried = self._failure_call(entry, error)
        await self._write(call, entry)
        if retried and entry.stop_reason == "cancel":
            await self._archive_cancelled_retry(entry)

    def _failure_call(self, entry: Running, error: BaseException) -> tuple[Call, bool]:
        """The script call recording ``error`` and whether it schedules a retry. Falls back to
        a plain failure record, then to archiving the raw message, when the outcome as given
        cannot be written."""
        if isinstance(error, CorruptTaskError) and entry.message.type == ops.CORRUPT_TYPE:
            return self._corrupt_call(entry, describe(error)), False
        try:
            return self._outcome_call(entry, error, describe(error), self._delay(entry, error))
        except Exception as exc:
            log.exception("task %s/%s: writing a plain failure record", entry.queue, entry.id)
            plain = f"{type(error).__name__} (its details could not be recorded: {exc!r})"
        try:
            delay = default_backoff(entry.message.retried + 1, error, entry.task)
            return self._outcome_call(entry, error, _printable(plain), delay)
        except Exception as exc:
            log.exception("task %s/%s: archiving its raw message", entry.queue, entry.id)
            return self._corrupt_call(entry, f"outcome could not be recorded: {exc!r}"), False

    def _outcome_call(
        self, entry: Running, error: BaseException, text: str, delay: float
    ) -> tuple[Call, bool]:
        now = self.clock.now()
        message = entry.message
        updated = message.failed(text, to_ms(now))
        keys = self.keys[entry.queue]
        cancelled = isinstance(error, TaskCancelledError) or entry.stop_reason == "cancel"
        due = 0
        archive = cancelled or isinstance(error, SkipRetry) or updated.retried > message.max_retry
        if not archive:
            due = to_ms(now + delay) if delay > 0 else 0
            archive = bool(message.deadline) and max(due, to_ms(now)) >= message.deadline
        if archive:
            call = ops.archive_active(
                keys,
                entry.id,
                entry.token,
                encoded=updated.encode(),
                unique=message.unique,
                now_s=now,
                limits=self.config.archive_limits,
                count_failure=not cancelled,
                error=text,
            )
            return call, False
        retry = ops.retry(
            keys, entry.id, entry.token, encoded=updated.encode(), due_ms=due, now_s=now
        )
        return retry, True

    def _corrupt_call(self, entry: Running, reason: str) -> Call:
        """The one place a task whose message cannot be used is archived as corrupt: its raw
        bytes are kept as the payload of a :data:`~rq_sched.ops.CORRUPT_TYPE` message, and its
        uniqueness lock is released when the raw bytes still name one."""
        return ops.archive_corrupt(
            self.keys[entry.queue],
            entry.id,
            entry.token,
            raw=entry.data,
            error=_printable(reason),
            now_s=self.clock.now(),
            limits=self.config.archive_limits,
        )

    def _delay(self, entry: Running, error: BaseException) -> float:
        """Seconds until the retry: the handler's ``Retry(delay)``, else the backoff's answer,
        which must be a finite number of seconds >= 0."""
        if isinstance(error, Retry):
            return error.delay
        route = self.router.routes.get(entry.message.type)
        backoff = route.backoff if route is not None and route.backoff else self.config.backoff
        delay = backoff(entry.message.retried + 1, error, entry.task)
        if not isinstance(delay, int | float) or not 0 <= delay < math.inf:
            raise ValidationError(
                f"the backoff for {entry.message.type!r} returned {delay!r}; it must return a "
                "finite number of seconds >= 0"
            )
        return float(delay)

    async def _write(self, call: Call, entry: Running) -> None:
        """Run an outcome script, retrying through Redis outages (the lease keeps the task)."""
        script, keys, args = call
        failures = 0
        while True:
            try:
                reply = await scripts.arun(self.redis, script, keys, args)
                break
            except OUTAGE as exc:
                failures += 1
                if failures >= WRITE_ATTEMPTS:
                    log.error("giving up writing the outcome of %s: %s", entry.id, exc)
                    return
                await asyncio.sleep(retry_pause(failures))
        if reply == 2:  # archived, its outcome recorded for its dependants
            self.on_reported(entry.queue, entry.id)
        if isinstance(reply, int) and reply < 0:
            log.warning(
                "task %s/%s: outcome not recorded, this worker's lease was lost or is stale "
                "(code %s); the task was not moved and runs again elsewhere",
                entry.queue,
                entry.id,
                reply,
            )

    async def _archive_cancelled_retry(self, entry: Running) -> None:
        """A cancel arrived while a retry was being written: archive the retry at once, so
        the cancelled task does not run again."""
        call = ops.archive(
            self.keys[entry.queue],
            entry.id,
            unique=entry.message.unique,
            now_s=self.clock.now(),
            limits=self.config.archive_limits,
        )
        script, keys, args = call
        try:
            await scripts.arun(self.redis, script, keys, args)
        except (RedisError, RqSchedError) as exc:
            log.warning(
                "task %s/%s was cancelled as its retry was written, and could not be archived: %s",
                entry.queue,
                entry.id,
                exc,
            )


def describe(error: BaseException) -> str:
    """The error text kept on a task: type, message and (for unexpected errors) traceback,
    always storable (a lone surrogate, as in a file name from ``os.listdir``, is escaped)."""
    try:
        text = f"{type(error).__name__}: {error}"
    except Exception as exc:  # noqa: BLE001 - a user's __str__ may raise anything
        text = f"{type(error).__name__}: <str() of the error raised {type(exc).__name__}>"
    if not (
        isinstance(error, SkipRetry | Retry | TaskCancelledError) or error.__traceback__ is None
    ):
        text += "\n" + "".join(traceback.format_tb(error.__traceback__))
    return _printable(text)


def _printable(text: str) -> str:
    """``text`` with anything UTF-8 cannot encode (lone surrogates) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
