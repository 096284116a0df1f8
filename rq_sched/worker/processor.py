"""The worker's hot path: run the tasks the fetcher leased, record their outcomes.

Tasks are taken in batches by :mod:`~rq_sched.worker.fetcher` and successes are acknowledged
in batches by a separate loop (:mod:`~rq_sched.worker.acks`), so a busy worker spends few
round trips per task. Failures are written one by one, at once.

Settling cannot fail open: whatever a handler returns or raises, :meth:`Processor._settle`
records an outcome and frees the slot in a ``finally``. An outcome that cannot be written as
given (an error text that does not encode, a backoff that returns nonsense) is written as a
plain failure record, and a message that does not decode is archived as corrupt with its raw
bytes (:meth:`Processor._corrupt_call`), so no message can stop the fetch loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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
from rq_sched.message import TaskMessage, decode, encode_result
from rq_sched.router import Next, Route, Router
from rq_sched.scripts import AnyAsyncRedis, Call
from rq_sched.task import Task
from rq_sched.worker.acks import OUTAGE, AckWriter
from rq_sched.worker.config import ServerConfig
from rq_sched.worker.fetcher import Fetcher
from rq_sched.worker.progress import ProgressWriter
from rq_sched.worker.runners import Runners
from rq_sched.worker.supervisor import retry_pause

log = logging.getLogger("rq_sched")

ACK_GRACE = 3.0
"""Seconds a shutdown keeps trying to write buffered acknowledgements while Redis is away;
tasks still unacknowledged after that run again once their lease expires."""
CORRUPT_TYPE = ops.CORRUPT_TYPE
"""Type given to an archived task whose stored message could not be decoded (kept as payload)."""
START_WINDOW = 1.0
"""Seconds after a read of Redis found a task's lease current and the task not cancelled in
which its handler may start without reading again: a cancel that returned earlier than this
before a start is always seen (docs/core.md, "Guarantees")."""
WRITE_ATTEMPTS = 60
"""Attempts to write one outcome through a Redis outage (about two minutes) before giving up;
the task then runs again once its lease expires."""


@dataclass(slots=True, eq=False)
class Running:
    """One lease this worker holds: everything that running and settling the task needs."""

    queue: str
    id: str
    data: bytes
    """The stored message as leased, so an outcome that cannot be encoded still archives it."""
    message: TaskMessage
    task: Task
    started_at: float
    token: int = 0
    """The lease's fencing token: every settle and extend presents it, and the store refuses
    a stale one (the task was recovered and leased again meanwhile)."""
    job: asyncio.Task[None] | None = None
    stop_reason: str | None = None
    """None while running normally; "cancel" (operator) or "shutdown"."""
    settling: bool = False
    """The outcome is being written; a cancel now is noted, never thrown into the write."""
    confirmed_at: float = field(default_factory=time.monotonic)
    """When the last read of Redis that found this lease current and the task not cancelled
    (the dequeue, or an extend) was sent, by this process's monotonic clock. Taken before the
    request, so a reply that arrives late (a slow link, a starved loop) cannot look fresh."""
    lease_lost: bool = False
    """The lease keeper found this lease gone (expired and recovered, or leased elsewhere):
    the handler must not start, and the outcome is dropped (the store would refuse it)."""


class Processor:
    """Runs and settles the tasks leased for one worker server."""

    def __init__(
        self,
        redis: AnyAsyncRedis,
        *,
        config: ServerConfig,
        router: Router,
        runners: Runners,
        clock: Clock,
        keys: dict[str, QueueKeys],
    ) -> None:
        self.redis = redis
        self.config = config
        self.router = router
        self.runners = runners
        self.clock = clock
        self.keys = keys
        self.running: dict[tuple[str, str], Running] = {}
        """The current lease of each task held here, by (queue, id)."""
        self.superseded: set[Running] = set()
        """Runs still going whose task was leased here again (their lease expired meanwhile);
        they hold a slot, and their outcome is dropped: it belongs to the newer lease."""
        self.unacked: dict[tuple[str, str], Running] = {}
        self.processed = 0
        self.failed = 0
        self.dropped = 0
        """Outcomes of superseded runs that were not written."""
        self.progress = ProgressWriter(redis, keys)
        self.on_reported: Callable[[str, str], None] = lambda queue, task_id: None
        """Called with (queue, id) of a settled task whose outcome waits for delivery to its
        dependants (the server connects it to its deliverer)."""
        self.acks = AckWriter(
            redis,
            keys,
            clock=clock,
            on_written=self._acknowledged,
            # late-bound: the server connects on_reported after building the processor
            on_reported=lambda queue, task_id: self.on_reported(queue, task_id),  # noqa: PLW0108
        )
        self._chains = {t: self._chain(route) for t, route in router.routes.items()}
        self._jobs: set[asyncio.Task[None]] = set()
        self.fetcher = Fetcher(redis, config=config, keys=keys, busy=self.busy, start=self._start)
        """Takes the tasks this processor runs."""

    def busy(self) -> int:
        """Slots in use: held leases plus superseded runs still going."""
        return len(self.running) + len(self.superseded)

    # -- running tasks ----------------------------------------------------------------------

    def _start(self, queue: str, leased: ops.Leased, sent: float) -> None:
        """Start (or settle at once) one leased task, leased by a dequeue sent at ``sent``
        (monotonic); never raises, whatever it holds."""
        task_id, data = leased.id, leased.data
        try:
            entry = self._running(queue, leased, decode(data, task_id=task_id), sent)
        except CorruptTaskError as exc:
            self._settle_now(self._corrupt_entry(queue, leased, sent), exc)
            return
        except Exception as exc:
            log.exception("task %s/%s: its message cannot be run", queue, task_id)
            error = CorruptTaskError(f"task {task_id!r}: message cannot be run ({exc!r})")
            self._settle_now(self._corrupt_entry(queue, leased, sent), error)
            return
        if self.fetcher.stopping:
            return  # leased by a fetch that was in flight: drain() hands it back
        if leased.cancelled:
            # The cancel was recorded with the task in Redis (its worker may have died): the
            # task ends archived as cancelled and never runs.
            self._settle_now(entry, TaskCancelledError("cancelled before it started"))
            return
        chain = self._chains.get(entry.message.type)
        refusal = self._refusal(entry, chain, leased.lost)
        if refusal is not None or chain is None:
            self._settle_now(entry, refusal)
        else:
            entry.job = self._spawn(self._execute(entry, chain))

    def _refusal(self, entry: Running, chain: Next | None, lost: int) -> SkipRetry | None:
        """Why a leased task must not run at all, or None."""
        message = entry.message
        if chain is None:
            return SkipRetry(
                f"no handler registered for task type {message.type!r} on this worker "
                f"(registered: {', '.join(sorted(self._chains)) or 'none'})"
            )
        if lost > message.max_retry:
            return SkipRetry(
                f"lease expired {lost} times: the worker running it died or hung each time"
            )
        if message.deadline and message.deadline <= to_ms(self.clock.now()):
            return SkipRetry("deadline exceeded before the task could run")
        return None

    def _running(
        self, queue: str, leased: ops.Leased, message: TaskMessage, sent: float
    ) -> Running:
        task_id = leased.id
        task = Task(
            type=message.type,
            payload=message.payload,
            id=task_id,
            queue=queue,
            retry_count=message.retried,
            max_retry=message.max_retry,
            headers=message.headers or {},
            deadline=datetime.fromtimestamp(message.deadline / 1000, UTC)
            if message.deadline
            else None,
            timeout=message.timeout or None,
            parents=message.parents or (),
            key=message.key,
        )
        entry = Running(queue, task_id, leased.data, message, task, self.clock.now(), leased.token)
        entry.confirmed_at = sent
        task._may_start = lambda: self._may_start(entry)
        window = self._start_window
        task._start_by = lambda: entry.confirmed_at + window
        task._progress = self.progress.reporter(
            asyncio.get_running_loop(), queue, task_id, leased.token
        )
        earlier = self.running.get((queue, task_id))
        if earlier is not None:
            # Leased here again while an earlier run goes on: that run's lease expired and
            # the task was recovered. The earlier run keeps its slot; its outcome is dropped.
            log.warning(
                "task %s/%s was leased here again while an earlier run still goes on; the "
                "earlier run's outcome will be dropped",
                queue,
                task_id,
            )
            self.superseded.add(earlier)
        self.running[(queue, task_id)] = entry
        return entry

    def _corrupt_entry(self, queue: str, leased: ops.Leased, sent: float) -> Running:
        message = TaskMessage(type=CORRUPT_TYPE, payload=leased.data, max_retry=0)
        return self._running(queue, leased, message, sent)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        job = asyncio.ensure_future(coro)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        return job

    def _settle_now(self, entry: Running, error: BaseException | None) -> None:
        entry.settling = True
        entry.job = self._spawn(self._settle(entry, error))

    async def _execute(self, entry: Running, chain: Next) -> None:
        error: BaseException | None = None
        try:
            await chain(entry.task)
        except asyncio.CancelledError:
            if entry.stop_reason != "cancel":
                raise  # shutdown: the task is handed back by drain()
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            error = TaskCancelledError("cancelled while running")
        except Exception as exc:  # noqa: BLE001 - every handler error is recorded on the task
            error = exc
        # Set before the first await of settling: from here on, cancel() only takes note.
        entry.settling = True
        await self._settle(entry, error)

    def _chain(self, route: Route) -> Next:
        runners, clock = self.runners, self.clock

        async def call_handler(task: Task) -> None:
            limit = route.timeout if task.timeout is None else task.timeout
            if task.deadline is not None:
                remaining = task.deadline.timestamp() - clock.now()
                limit = remaining if limit is None else min(limit, remaining)
            await runners.run(route, task, limit)

        chain: Next = call_handler
        for middleware in reversed((*self.router.middleware, *self.config.middleware)):
            chain = _wrap(middleware, chain)
        return chain

    # -- settling outcomes ------------------------------------------------------------------

    async def _settle(self, entry: Running, error: BaseException | None) -> None:
        """Record the outcome of ``entry`` and free its slot, whatever happens on the way."""
        entry.settling = True
        try:
            if entry in self.superseded or entry.lease_lost:
                self.dropped += 1
                log.warning(
                    "task %s/%s: outcome of a %s run dropped (%s)",
                    entry.queue,
                    entry.id,
                    "superseded" if entry in self.superseded else "lease-lost",
                    "success" if error is None else describe(error).partition("\n")[0],
                )
                return
            if error is None:
                error = self._acknowledge(entry)
            if error is not None:
                self.failed += 1
                call, retried = self._failure_call(entry, error)
                await self._write(call, entry)
                if retried and entry.stop_reason == "cancel":
                    await self._archive_cancelled_retry(entry)
        except Exception:
            log.exception(
                "task %s/%s: its outcome could not be recorded; it runs again once its lease "
                "expires",
                entry.queue,
                entry.id,
            )
        finally:
            self._release(entry)

    def _release(self, entry: Running) -> None:
        key = (entry.queue, entry.id)
        if self.running.get(key) is entry:
            del self.running[key]
        self.superseded.discard(entry)
        self.fetcher.slot_freed()

    def _acknowledge(self, entry: Running) -> ValidationError | None:
        """Buffer the success of ``entry``; an error instead when its result cannot be stored
        (checked per task, so one bad result never fails a whole batch)."""
        message = entry.message
        keep_until = to_ms(self.clock.now() + message.retention) if message.retention else 0
        result = b""
        # Encoded without retention too: a task's dependants receive its result.
        if entry.task.result is not None:
            try:
                result = encode_result(entry.task.result)
            except ValidationError as exc:
                if keep_until:
                    return exc
        ack = ops.Ack(
            entry.id, entry.token, keep_until_ms=keep_until, result=result, unique=message.unique
        )
        self.unacked[(entry.queue, entry.id)] = entry
        self.acks.add(entry.queue, ack)
        self.processed += 1
        return None

    def _failure_call(self, entry: Running, error: BaseException) -> tuple[Call, bool]:
        """The script call recording ``error`` and whether it schedules a retry. Falls back to
        a plain failure record, then to archiving the raw message, when the outcome as given
        cannot be written."""
        if isinstance(error, CorruptTaskError) and entry.message.type == CORRUPT_TYPE:
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
        bytes are kept as the payload of a :data:`CORRUPT_TYPE` message, and its uniqueness
        lock is released when the raw bytes still name one."""
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

    # -- acknowledging in batches -----------------------------------------------------------

    async def ack_loop(self) -> None:
        """Write buffered acknowledgements whenever there are some."""
        await self.acks.loop()

    async def flush_acks(self) -> bool:
        """Write every buffered acknowledgement, retrying through Redis outages (once a
        shutdown began, for :data:`ACK_GRACE` seconds at most). Returns whether all were."""
        return await self.acks.flush()

    def _acknowledged(self, queue: str, task_id: str) -> None:
        self.unacked.pop((queue, task_id), None)

    # -- cancelling and stopping ------------------------------------------------------------

    def cancel(self, queue: str, task_id: str) -> bool:
        """Cancel a task running here; it ends archived as cancelled. False if not here."""
        entry = self.running.get((queue, task_id))
        if entry is None or entry.stop_reason is not None:
            return False
        entry.stop_reason = "cancel"
        entry.task._cancel()
        if entry.job is not None and not entry.settling:
            entry.job.cancel()
        return True

    @property
    def _start_window(self) -> float:
        """Seconds after a read of Redis confirmed a lease in which its handler may start
        without asking again: at most :data:`START_WINDOW`, and half the lease."""
        return min(START_WINDOW, self.config.lease_duration / 2)

    async def _may_start(self, entry: Running) -> bool:
        """Whether ``entry``'s handler may start now.

        A handler starts only within :attr:`_start_window` of sending a read of Redis that
        found its lease current and its task not cancelled. Past that (the reply came late, the
        loop stalled, the task waited for a slot or a thread) the lease is renewed first, which
        reports a cancel recorded meanwhile and a lease lost to recovery: such a task never
        starts here. The answer is checked against the window again, since the renewal's own
        reply can come late. While Redis cannot be reached nothing starts unconfirmed: the
        renewal is retried (its outcome could not be recorded anyway, and if the outage outlasts
        the lease, the task is recovered and this run is told its lease is gone)."""
        duration_ms = int(self.config.lease_duration * 1000)
        failures = 0
        while True:
            if entry.lease_lost or entry.task.is_cancelled():
                return False
            if time.monotonic() - entry.confirmed_at < self._start_window:
                return True
            call = ops.extend(self.keys[entry.queue], duration_ms, [(entry.id, entry.token)])
            sent = time.monotonic()
            try:
                gone, cancelled = await scripts.arun(self.redis, *call)
            except OUTAGE:  # cannot tell whether it was cancelled or recovered: ask again
                failures += 1
                await asyncio.sleep(retry_pause(failures))
                continue
            if gone:
                self.lease_lost(entry.queue, entry.id, entry.token)
                return False
            if cancelled:
                # A cancel recorded while the task waited (its notification missed): never start.
                self.cancel(entry.queue, entry.id)
                return False
            entry.confirmed_at = max(entry.confirmed_at, sent)

    def lease_lost(self, queue: str, task_id: str, token: int) -> None:
        """The lease ``token`` of ``task_id`` is gone: its handler, if it has not started yet
        (waiting for a process slot or a thread), never starts; one already running may run
        to its end (at-least-once) and sees ``task.is_cancelled()``; its outcome is dropped."""
        entry = self.running.get((queue, task_id))
        if entry is None or entry.token != token or entry.settling:
            return
        entry.lease_lost = True
        entry.task._cancel()

    def leased(self) -> dict[str, list[tuple[str, int]]]:
        """(id, token) per queue of the leases this worker must keep renewing (superseded runs
        hold no lease of their own)."""
        out: dict[str, set[tuple[str, int]]] = {}
        for entry in (*self.running.values(), *self.unacked.values()):
            out.setdefault(entry.queue, set()).add((entry.id, entry.token))
        return {queue: sorted(leases) for queue, leases in out.items()}

    async def drain(self, timeout: float) -> None:
        """Stop taking tasks, wait up to ``timeout`` for handlers, hand the rest back at once."""
        self.fetcher.stop()
        started = time.monotonic()
        self.acks.deadline = started + timeout + ACK_GRACE
        await self.fetcher.fetches_done(max(timeout, 1.0))
        jobs = [e.job for e in self._entries() if e.job is not None]
        remaining = max(0.0, timeout - (time.monotonic() - started))
        if jobs:
            await asyncio.wait(jobs, timeout=remaining)
        left = [
            e
            for e in self.running.values()
            if not e.settling and (e.job is None or not e.job.done())
        ]
        # Superseded runs are stopped too, but not handed back: their lease is not theirs.
        stale = [e for e in self.superseded if not e.settling and e.job and not e.job.done()]
        for entry in (*left, *stale):
            entry.stop_reason = "shutdown"
            entry.task._cancel()
            if entry.job is not None:
                entry.job.cancel()
        if started_jobs := [e.job for e in (*left, *stale) if e.job is not None]:
            await asyncio.wait(started_jobs, timeout=5)
        if not await self.flush_acks():
            log.warning(
                "%d finished task(s) could not be acknowledged (Redis unreachable); they run "
                "again once their lease expires",
                self.acks.buffered(),
            )
        await self._requeue(left)
        pending = [j for j in self._jobs if not j.done()]
        if pending:
            await asyncio.wait(pending, timeout=5)

    def _entries(self) -> list[Running]:
        return [*self.running.values(), *self.superseded]

    async def _requeue(self, entries: list[Running]) -> None:
        by_queue: dict[str, list[tuple[str, int]]] = {}
        for entry in entries:
            by_queue.setdefault(entry.queue, []).append((entry.id, entry.token))
            self._release(entry)
        for queue, ids in by_queue.items():
            script, keys, args = ops.requeue(self.keys[queue], ids)
            moved = await scripts.arun(self.redis, script, keys, args)
            log.info("handed %s unfinished task(s) of %s back to pending", moved, queue)


def _wrap(middleware: Callable[[Task, Next], object], inner: Next) -> Next:
    async def call(task: Task) -> None:
        await middleware(task, inner)  # type: ignore[misc]

    return call


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
