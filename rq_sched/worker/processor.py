"""The worker's hot path: take tasks from the queues, run their handlers, record the outcomes.

Tasks are taken in batches (one script call leases up to ``batch_size`` tasks) and successes
are acknowledged in batches by a separate loop, so a busy worker spends few round trips per
task. Failures are written one by one, at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from rq_sched import ops, scripts
from rq_sched.clock import Clock, to_ms
from rq_sched.errors import CorruptTaskError, Retry, RqSchedError, SkipRetry, TaskCancelledError
from rq_sched.keys import QueueKeys
from rq_sched.message import TaskMessage, decode
from rq_sched.router import Next, Route, Router
from rq_sched.scripts import AnyAsyncRedis, Call
from rq_sched.task import Task
from rq_sched.worker.config import ServerConfig
from rq_sched.worker.runners import Runners

log = logging.getLogger("rq_sched")

ACK_GRACE = 3.0
"""Seconds a shutdown keeps trying to write buffered acknowledgements while Redis is away;
tasks still unacknowledged after that run again once their lease expires."""
CORRUPT_TYPE = ops.CORRUPT_TYPE


@dataclass(slots=True, eq=False)
class Running:
    """A task this worker holds a lease on."""

    queue: str
    id: str
    message: TaskMessage
    task: Task
    started_at: float
    token: int = 0
    """Fencing token of this lease: every settle and extend presents it."""
    job: asyncio.Task[None] | None = None
    stop_reason: str | None = None
    """None while running normally; "cancel" (operator) or "shutdown"."""


class Processor:
    """Fetches, dispatches and settles tasks for one worker server."""

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
        self.unacked: dict[tuple[str, str], Running] = {}
        self.processed = 0
        self.failed = 0
        self._acks: dict[str, list[ops.Ack]] = {}
        self._ack_event = asyncio.Event()
        self._ack_lock = asyncio.Lock()
        self._ack_deadline: float | None = None
        self._work = asyncio.Event()
        self._slot = asyncio.Event()
        self._stopping = False
        self._chains = {t: self._chain(route) for t, route in router.routes.items()}
        self._weights = {q: float(w) for q, w in config.queues.items()}
        self._strict = sorted(config.queues, key=lambda q: -config.queues[q])
        self._jobs: set[asyncio.Task[None]] = set()

    # -- taking tasks -----------------------------------------------------------------------

    def notify_work(self) -> None:
        """Tasks may be ready: the fetch loop looks again."""
        self._work.set()

    async def fetch_loop(self) -> None:
        """Take tasks while there are free slots; sleep until woken when the queues are empty."""
        failures = 0
        while not self._stopping:
            free = self.config.concurrency - len(self.running)
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            self._work.clear()
            try:
                taken = await self.fetch(free)
                failures = 0
            except (RedisError, OSError, RqSchedError) as exc:
                failures += 1
                pause = min(2.0, 0.05 * 2**failures)
                log.warning("fetching tasks failed: %s (retrying in %.2fs)", exc, pause)
                await asyncio.sleep(pause)
                continue
            if not taken and not self._stopping:
                await self._work.wait()

    async def fetch(self, free: int) -> int:
        """Lease up to ``free`` tasks from the first queue (in weighted order) that has some."""
        lease_ms = int(self.config.lease_duration * 1000)
        count = min(free, self.config.batch_size)
        for queue in self.queue_order():
            script, keys, args = ops.dequeue(self.keys[queue], lease_ms, count)
            leased = ops.parse_dequeue(await scripts.arun(self.redis, script, keys, args))
            for task in leased:
                self._start(queue, task)
            if leased:
                return len(leased)
        return 0

    def queue_order(self) -> list[str]:
        """Queues in the order to ask them: by priority, or a weighted random permutation."""
        if self.config.strict_priority or len(self._strict) == 1:
            return self._strict
        weights = self._weights
        return sorted(weights, key=lambda q: random.random() ** (1.0 / weights[q]), reverse=True)

    # -- running tasks ----------------------------------------------------------------------

    def _start(self, queue: str, leased: ops.Leased) -> None:
        task_id, data, lost = leased.id, leased.data, leased.lost
        try:
            message = decode(data, task_id=task_id)
        except CorruptTaskError as exc:
            # The raw message may still name its uniqueness lock: archiving releases it.
            unique = ops.salvage_unique(data)
            message = TaskMessage(type=CORRUPT_TYPE, payload=data, max_retry=0, unique=unique)
            entry = self._running(queue, task_id, message, leased.token)
            self._spawn(self._settle(entry, SkipRetry(str(exc))))
            return
        entry = self._running(queue, task_id, message, leased.token)
        chain = self._chains.get(message.type)
        error: BaseException | None = None
        if leased.cancelled:
            error = TaskCancelledError("cancelled before it started")
        elif chain is None:
            error = SkipRetry(
                f"no handler registered for task type {message.type!r} on this worker "
                f"(registered: {', '.join(sorted(self._chains)) or 'none'})"
            )
        elif lost > message.max_retry:
            error = SkipRetry(
                f"lease expired {lost} times: the worker running it died or hung each time"
            )
        elif message.deadline and message.deadline <= to_ms(self.clock.now()):
            error = SkipRetry("deadline exceeded before the task could run")
        if error is not None or chain is None:
            self._spawn(self._settle(entry, error))
        else:
            entry.job = self._spawn(self._execute(entry, chain))

    def _running(self, queue: str, task_id: str, message: TaskMessage, token: int) -> Running:
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
        )
        entry = Running(queue, task_id, message, task, self.clock.now(), token)
        self.running[(queue, task_id)] = entry
        return entry

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        job = asyncio.ensure_future(coro)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        return job

    async def _execute(self, entry: Running, chain: Next) -> None:
        try:
            await chain(entry.task)
        except asyncio.CancelledError:
            if entry.stop_reason != "cancel":
                raise  # shutdown: the task is handed back by drain()
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            await self._settle(entry, TaskCancelledError("cancelled while running"))
            return
        except Exception as exc:  # noqa: BLE001 - every handler error is recorded on the task
            await self._settle(entry, exc)
            return
        await self._settle(entry, None)

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
        key = (entry.queue, entry.id)
        if error is None:
            self._acknowledge(entry)
        else:
            await self._write(self._failure_call(entry, error), entry)
            self.failed += 1
        # The same id may have been leased to this worker again (a stalled attempt, recovered
        # and re-leased): only this attempt's entry is removed.
        if self.running.get(key) is entry:
            del self.running[key]
        self._slot.set()

    def _acknowledge(self, entry: Running) -> None:
        message = entry.message
        keep_until = to_ms(self.clock.now() + message.retention) if message.retention else 0
        result = (entry.task.result or b"") if keep_until else b""
        ack = ops.Ack(entry.id, entry.token, keep_until, result, message.unique)
        self._acks.setdefault(entry.queue, []).append(ack)
        self.unacked[(entry.queue, entry.id)] = entry
        self.processed += 1
        self._ack_event.set()

    def _failure_call(self, entry: Running, error: BaseException) -> Call:
        now = self.clock.now()
        message = entry.message
        updated = message.failed(describe(error), to_ms(now))
        keys = self.keys[entry.queue]
        cancelled = isinstance(error, TaskCancelledError)
        due = 0
        archive = cancelled or isinstance(error, SkipRetry) or updated.retried > message.max_retry
        if not archive:
            delay = error.delay if isinstance(error, Retry) else self._backoff(entry, error)
            due = to_ms(now + delay) if delay > 0 else 0
            archive = bool(message.deadline) and max(due, to_ms(now)) >= message.deadline
        if archive:
            return ops.archive_active(
                keys,
                entry.id,
                entry.token,
                encoded=updated.encode(),
                unique=message.unique,
                now_s=now,
                limits=self.config.archive_limits,
                count_failure=not cancelled,
            )
        return ops.retry(
            keys, entry.id, entry.token, encoded=updated.encode(), due_ms=due, now_s=now
        )

    def _backoff(self, entry: Running, error: BaseException) -> float:
        route = self.router.routes.get(entry.message.type)
        backoff = route.backoff if route is not None and route.backoff else self.config.backoff
        return max(0.0, backoff(entry.message.retried + 1, error, entry.task))

    async def _write(self, call: Call, entry: Running) -> None:
        """Run an outcome script, retrying through Redis outages (the lease keeps the task)."""
        script, keys, args = call
        failures = 0
        while True:
            try:
                reply = await scripts.arun(self.redis, script, keys, args)
                break
            except (RedisError, OSError) as exc:
                failures += 1
                if failures > 60:
                    log.error("giving up writing the outcome of %s: %s", entry.id, exc)
                    return
                await asyncio.sleep(min(2.0, 0.05 * 2**failures))
        if isinstance(reply, int) and reply < 0:
            log.warning(
                "task %s/%s: outcome not recorded, this worker's lease was lost or is stale "
                "(code %s); the task was not moved and runs again elsewhere",
                entry.queue,
                entry.id,
                reply,
            )

    # -- acknowledging in batches -----------------------------------------------------------

    async def ack_loop(self) -> None:
        """Write buffered acknowledgements whenever there are some."""
        while True:
            await self._ack_event.wait()
            self._ack_event.clear()
            await self.flush_acks()

    async def flush_acks(self) -> bool:
        """Write every buffered acknowledgement, retrying through Redis outages (once a
        shutdown began, for :data:`ACK_GRACE` seconds at most). Returns whether all were."""
        async with self._ack_lock:  # one writer: a shutdown waits for the write in flight
            return await self._flush_acks()

    async def _flush_acks(self) -> bool:
        failures = 0
        while self._acks:
            if self._ack_deadline is not None and time.monotonic() >= self._ack_deadline:
                return False
            batches, self._acks = self._acks, {}
            try:
                for queue, acks in batches.items():
                    while acks:
                        await self._ack_chunk(queue, acks[: ops.BATCH_LIMIT])
                        del acks[: ops.BATCH_LIMIT]
                failures = 0
            except (RedisError, OSError) as exc:
                for queue, acks in batches.items():
                    self._acks.setdefault(queue, [])[:0] = acks
                failures += 1
                pause = min(2.0, 0.05 * 2**failures)
                log.warning("acknowledging tasks failed: %s (retrying in %.2fs)", exc, pause)
                await asyncio.sleep(pause)
        return True

    async def _ack_chunk(self, queue: str, acks: list[ops.Ack]) -> None:
        script, keys, args = ops.done(self.keys[queue], acks, self.clock.now())
        reply = await scripts.arun(self.redis, script, keys, args)
        for lost in reply[1:]:
            log.warning(
                "task %s/%s finished after its lease was lost or went stale; not settled",
                queue,
                lost.decode(),
            )
        for ack in acks:
            self.unacked.pop((queue, ack.id), None)

    # -- cancelling and stopping ------------------------------------------------------------

    def cancel(self, queue: str, task_id: str) -> bool:
        """Cancel a task running here; it ends archived as cancelled. False if not here."""
        entry = self.running.get((queue, task_id))
        if entry is None or entry.job is None or entry.stop_reason is not None:
            return False
        entry.stop_reason = "cancel"
        entry.task._cancel()
        entry.job.cancel()
        return True

    def leased(self) -> dict[str, list[tuple[str, int]]]:
        """(id, token) per queue of the leases this worker must keep renewing."""
        out: dict[str, list[tuple[str, int]]] = {}
        for entry in (*self.running.values(), *self.unacked.values()):
            out.setdefault(entry.queue, []).append((entry.id, entry.token))
        return out

    async def drain(self, timeout: float) -> None:
        """Stop taking tasks, wait up to ``timeout`` for handlers, hand the rest back at once."""
        self._stopping = True
        self._ack_deadline = time.monotonic() + timeout + ACK_GRACE
        self._work.set()
        self._slot.set()
        jobs = [e.job for e in self.running.values() if e.job is not None]
        if jobs:
            await asyncio.wait(jobs, timeout=timeout)
        left = [e for e in self.running.values() if e.job is not None and not e.job.done()]
        for entry in left:
            entry.stop_reason = "shutdown"
            entry.task._cancel()
            assert entry.job is not None
            entry.job.cancel()
        if left:
            await asyncio.wait([e.job for e in left if e.job is not None], timeout=5)
        if not await self.flush_acks():
            log.warning(
                "%d finished task(s) could not be acknowledged (Redis unreachable); they run "
                "again once their lease expires",
                sum(len(acks) for acks in self._acks.values()),
            )
        await self._requeue(left)
        pending = [j for j in self._jobs if not j.done()]
        if pending:
            await asyncio.wait(pending, timeout=5)

    async def _requeue(self, entries: list[Running]) -> None:
        by_queue: dict[str, list[tuple[str, int]]] = {}
        for entry in entries:
            by_queue.setdefault(entry.queue, []).append((entry.id, entry.token))
            self.running.pop((entry.queue, entry.id), None)
        for queue, ids in by_queue.items():
            script, keys, args = ops.requeue(self.keys[queue], ids)
            moved = await scripts.arun(self.redis, script, keys, args)
            log.info("handed %s unfinished task(s) of %s back to pending", moved, queue)


def _wrap(middleware: Callable[[Task, Next], object], inner: Next) -> Next:
    async def call(task: Task) -> None:
        await middleware(task, inner)  # type: ignore[misc]

    return call


def describe(error: BaseException) -> str:
    """The error text kept on a task: type, message and (for unexpected errors) traceback."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, SkipRetry | Retry | TaskCancelledError) or error.__traceback__ is None:
        return text
    return text + "\n" + "".join(traceback.format_tb(error.__traceback__))
