"""The worker's hot path: run the tasks the fetcher leases, and settle every run.

:mod:`~rq_sched.worker.fetcher` leases tasks in batches and hands each to the processor, which
runs its handler through the middleware chain and :mod:`~rq_sched.worker.runners`, or settles
it at once when it must not run (no handler, past its deadline, cancelled, unreadable).
Successes are acknowledged in batches by a separate loop (:mod:`~rq_sched.worker.acks`), so a
busy worker spends few round trips per task; failures are written one by one, at once
(:mod:`~rq_sched.worker.failures`).

Settling cannot fail open: whatever a handler returns or raises, :meth:`Processor._settle`
records an outcome and frees the slot in a ``finally``, and a message that does not decode is
settled as corrupt (archived with its raw bytes), so no message can stop the fetch loop. While
a task runs here the processor also answers for its lease: a handler starts only soon after
Redis confirmed it (:data:`START_WINDOW`), a cancel or a lost lease stops it, and a shutdown
hands unfinished tasks back (:meth:`Processor.drain`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from rq_sched import ops, scripts
from rq_sched.clock import Clock, to_ms
from rq_sched.errors import (
    CorruptTaskError,
    SkipRetry,
    TaskCancelledError,
    ValidationError,
)
from rq_sched.keys import QueueKeys
from rq_sched.message import TaskMessage, decode, encode_result
from rq_sched.router import Next, Route, Router
from rq_sched.scripts import AnyAsyncRedis
from rq_sched.task import Task
from rq_sched.worker.acks import OUTAGE, AckWriter
from rq_sched.worker.config import ServerConfig
from rq_sched.worker.failures import FailureWriter, describe
from rq_sched.worker.fetcher import Fetcher
from rq_sched.worker.progress import ProgressWriter
from rq_sched.worker.runners import Runners
from rq_sched.worker.running import Running
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
            on_reported=self._reported,
        )
        self.failures = FailureWriter(
            redis, keys, config=config, router=router, clock=clock, on_reported=self._reported
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
                await self.failures.record(entry, error)
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

    def _reported(self, queue: str, task_id: str) -> None:
        # late-bound: the server connects on_reported after building the processor
        self.on_reported(queue, task_id)

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
