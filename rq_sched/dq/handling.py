"""What the consumer does with one reserved job: the decision table that makes it lose nothing.

go-queue's consumer deletes a job *before* running its handler and drops jobs it cannot parse,
jobs more than 30 minutes late, and jobs whose dedup check hit a Redis error. Here a reserved
job always ends in exactly one of these ways:

========================  ===================================================================
unparseable body          buried (logged)
before its target time    held (a moment) or released until then: never run early
Redis unreachable         released after ``redis_retry_delay``; not a failure
another copy ran it       this copy deleted
another consumer runs it  looked at again for ``busy_wait``, then released for
                          ``busy_recheck``; deleted once that run succeeds
first seen > stale_after  buried (logged); kicking it runs it
  late
handler succeeded         dedup key marked done, job deleted
handler asked to repeat   released after the repeat delay; only this copy keeps repeating
handler raised            released with backoff, counting the failure in the job's priority
                          (2 + failures); buried (logged) after ``max_failures``
========================  ===================================================================

With ``mixed_pool`` (Go consumers on the same tubes), a retry or repeat is put as a new job
(same body, new time, so a new, free dedup key) and the old one marked done and deleted: a Go
consumer that reserves it runs it instead of discarding it.

While the handler runs, the job is touched (beanstalkd's TTR is 5 s) and the Redis hold
renewed, so slow handlers keep their job and a dead consumer's job is taken over.
"""

from __future__ import annotations

import enum
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta

from rq_sched.clock import Clock
from rq_sched.dq import wire
from rq_sched.dq.beanstalk import Connection
from rq_sched.dq.dedup import Claim, Dedup, Hold, RedisDownError
from rq_sched.dq.errors import DqConfigError, DqError
from rq_sched.dq.producer import now_ns

log = logging.getLogger("rq_sched.dq.consumer")

_NS = 1_000_000_000
_FRESH_KEY_TRIES = 8


@dataclass(frozen=True, slots=True)
class Job:
    """A job as the handler sees it."""

    ref: wire.JobRef
    """Which node, tube and beanstalkd id this copy is."""
    body: bytes
    """The raw body the producer passed."""
    at_ns: int
    """Target time written by the producer, Unix nanoseconds."""
    wrapped: bytes
    """The body as stored in beanstalkd (``<at_ns>/<body>``)."""

    @property
    def at(self) -> datetime:
        """Target time as an aware UTC datetime."""
        return wire.Unwrapped(self.at_ns, self.body).at

    @property
    def tube(self) -> str:
        return self.ref.tube


class Repeat:
    """Returned by a handler: run this job again after ``delay`` (timedelta or seconds)."""

    __slots__ = ("delay_ns",)

    def __init__(self, delay: timedelta | float) -> None:
        self.delay_ns = wire.duration_ns(delay, "Repeat delay")

    def __repr__(self) -> str:
        return f"Repeat({self.delay_ns / _NS:g}s)"


class Stop:
    """Returned by a handler of a repeating tube: the job is done, do not repeat it."""

    __slots__ = ()


HandlerResult = Repeat | Stop | None
Handler = Callable[[Job], HandlerResult]
AsyncHandler = Callable[[Job], Awaitable[HandlerResult]]
Backoff = Callable[[int], float]


def is_async_callable(fn: object) -> bool:
    """True for ``async def`` functions, and objects whose ``__call__`` is one (partials and
    bound methods included): calling them only makes a coroutine, which must be awaited."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an async __call__ is what we look for
    )


class HandlerTimeoutError(TimeoutError):
    """The handler ran longer than its route's ``timeout``; the job counts as failed."""


def default_backoff(failures: int) -> float:
    """Seconds before retry number ``failures``: 1, 2, 4, ... capped at 60."""
    return float(min(2 ** max(failures - 1, 0), 60))


@dataclass(frozen=True, slots=True)
class Route:
    """How one tube's jobs are handled."""

    tube: str
    handler: Callable[[Job], object]
    repeat_every_ns: int | None
    stale_after_ns: int | None
    max_failures: int
    backoff: Backoff
    concurrency: int
    timeout: float | None = None
    """Seconds a handler may run before its job counts as failed (None: no limit)."""

    def __post_init__(self) -> None:
        if not callable(self.handler):
            raise DqConfigError(f"handler for tube {self.tube!r} must be callable")
        if self.timeout is not None and not self.timeout > 0:
            raise DqConfigError(f"timeout must be > 0 seconds or None, got {self.timeout!r}")
        if self.max_failures < 1:
            raise DqConfigError(f"max_failures must be >= 1, got {self.max_failures}")
        if self.concurrency < 1:
            raise DqConfigError(f"concurrency must be >= 1, got {self.concurrency}")


class Outcome(enum.Enum):
    """How the handling of one reserved job ended."""

    DONE = "done"
    REPEAT = "repeat"
    RETRY = "retry"
    BURIED = "buried"
    DUPLICATE = "duplicate"
    BUSY = "busy"
    EARLY = "early"
    REDIS_DOWN = "redis_down"
    STOPPING = "stopping"
    NODE_ERROR = "node_error"


@dataclass(frozen=True, slots=True)
class Timing:
    """The consumer's timing knobs, in seconds."""

    touch_interval: float
    busy_wait: float
    busy_recheck: float
    redis_retry_delay: float
    early_wait: float


class Processor:
    """Handles reserved jobs for a consumer; shared by its worker threads."""

    def __init__(
        self,
        dedup: Dedup,
        pool: Executor,
        timing: Timing,
        stopping: threading.Event,
        clock: Clock | None = None,
        *,
        mixed_pool: bool = False,
    ) -> None:
        self.dedup = dedup
        self.pool = pool
        self.timing = timing
        self.stopping = stopping
        self.clock = clock
        self.mixed_pool = mixed_pool

    def process(self, conn: Connection, route: Route, job_id: int, wrapped: bytes) -> Outcome:
        """Handle one job reserved on ``conn``; it ends deleted, released or buried.

        Raises:
            DqError: the node failed mid-way; the job returns to ready by itself (TTR or
                connection close), so nothing is lost.
        """
        ref = wire.JobRef(conn.node.endpoint, route.tube, job_id)
        try:
            parts = wire.unwrap(wrapped)
        except wire.UnwrapError as exc:
            log.error("dq: burying %s: unparseable body (%s)", ref, exc)
            conn.bury(job_id, priority=wire.PUT_PRIORITY)
            return Outcome.BURIED
        job = Job(ref, parts.body, parts.at_ns, wrapped)
        early = self._hold_if_early(conn, job)
        if early is not None:
            return early
        try:
            hold = self._claim(self.dedup.key(wrapped), ref)
        except RedisDownError as exc:
            log.warning("dq: %s; releasing %s for %ss", exc, ref, self.timing.redis_retry_delay)
            self._release_as_is(conn, job_id, self.timing.redis_retry_delay)
            return Outcome.REDIS_DOWN
        return self._after_claim(conn, route, job, hold)

    def _claim(self, key: str, ref: wire.JobRef) -> Hold:
        """Claim the job; while another consumer runs it, look again for up to ``busy_wait``:
        copies of one job become ready together, and most handlers finish in milliseconds."""
        hold = self.dedup.claim(key, ref)
        waited, step = 0.0, 0.005
        while hold.claim is Claim.BUSY and waited < self.timing.busy_wait:
            if self.stopping.wait(step):
                break
            waited += step
            step = min(step * 2, max(self.timing.busy_wait - waited, 0.001))
            hold = self.dedup.claim(key, ref)
        return hold

    def _after_claim(self, conn: Connection, route: Route, job: Job, hold: Hold) -> Outcome:
        if hold.claim is Claim.DUPLICATE:
            conn.delete(job.ref.job_id)
            return Outcome.DUPLICATE
        if hold.claim is Claim.BUSY:
            wait = min(hold.busy_ms / 1000, self.timing.busy_recheck)
            self._release_as_is(conn, job.ref.job_id, wait)
            return Outcome.BUSY
        if hold.claim is not Claim.OWN_TURN and self._is_stale(conn, route, job):
            self._settle(hold, job.ref, lambda: self.dedup.hand_to(hold, job.ref))
            conn.bury(job.ref.job_id, priority=wire.PUT_PRIORITY)
            return Outcome.BURIED
        if self.stopping.is_set():
            # Stop came between reserve and run: hand the job back untouched.
            self._settle(hold, job.ref, lambda: self.dedup.hand_to(hold, job.ref))
            self._release_as_is(conn, job.ref.job_id, 0)
            return Outcome.STOPPING
        return self._run(conn, route, job, hold)

    def _run(self, conn: Connection, route: Route, job: Job, hold: Hold) -> Outcome:
        try:
            result = self._call(conn, route, job, hold)
        except Exception as exc:  # noqa: BLE001 - a handler may raise anything; it is a failure
            return self._failed(conn, route, job, hold, exc)
        repeat_ns = result.delay_ns if isinstance(result, Repeat) else None
        if repeat_ns is None and result is None:
            repeat_ns = route.repeat_every_ns
        if repeat_ns is not None and self.mixed_pool:
            self._again_as_new_job(conn, job, hold, repeat_ns, wire.PUT_PRIORITY)
            return Outcome.REPEAT
        if repeat_ns is not None:
            ttl_ms = 2 * repeat_ns // 1_000_000 + self.dedup.lease_ms
            self._settle(hold, job.ref, lambda: self.dedup.hand_to(hold, job.ref, ttl_ms))
            conn.release(
                job.ref.job_id, priority=wire.PUT_PRIORITY, delay=wire.delay_seconds(repeat_ns)
            )
            return Outcome.REPEAT
        self._settle(hold, job.ref, lambda: self.dedup.finish(hold))
        conn.delete(job.ref.job_id)
        return Outcome.DONE

    def _failed(
        self, conn: Connection, route: Route, job: Job, hold: Hold, exc: Exception
    ) -> Outcome:
        priority = self._priority(conn, job.ref.job_id)
        failures = max(priority - wire.PUT_PRIORITY, 0) + 1
        delay_ns = round(route.backoff(failures) * _NS)
        if failures < route.max_failures and self.mixed_pool:
            _log_retry(job, failures, route.max_failures, delay_ns, exc)
            self._again_as_new_job(conn, job, hold, delay_ns, wire.PUT_PRIORITY + failures)
            return Outcome.RETRY
        self._settle(hold, job.ref, lambda: self.dedup.hand_to(hold, job.ref))
        if failures >= route.max_failures:
            log.error(
                "dq: burying %s after %d failed attempt(s); last error: %s: %s",
                job.ref,
                failures,
                type(exc).__name__,
                exc,
            )
            conn.bury(job.ref.job_id, priority=wire.PUT_PRIORITY + failures)
            return Outcome.BURIED
        _log_retry(job, failures, route.max_failures, delay_ns, exc)
        conn.release(
            job.ref.job_id,
            priority=wire.PUT_PRIORITY + failures,
            delay=wire.delay_seconds(delay_ns),
        )
        return Outcome.RETRY

    def _again_as_new_job(
        self, conn: Connection, job: Job, hold: Hold, delay_ns: int, priority: int
    ) -> None:
        """Mixed pools: run the job again as a *new* job, not the released old one.

        A Go consumer deletes what it reserves and runs it only if ``SET key NX`` wins, so a
        released copy whose key is taken would be lost to it. The new job's body carries the
        new target time, so its MD5 (its key) differs, and is checked to be free; then the
        old key is marked done (its other replicas are duplicates to Go and Python alike) and
        the old job deleted. Put first: a crash in between can run the job twice, never zero
        times. The failure count travels in the new job's priority, as with a release.
        """
        at_ns = now_ns(self.clock) + delay_ns
        wrapped = wire.wrap(job.body, at_ns)
        for _ in range(_FRESH_KEY_TRIES):
            try:
                if not self.dedup.exists(self.dedup.key(wrapped)):
                    break
            except RedisDownError:
                break  # a key of a new nanosecond time is all but certainly free
            at_ns += 1
            wrapped = wire.wrap(job.body, at_ns)
        conn.put(
            wrapped, priority=priority, delay=wire.delay_seconds(delay_ns), ttr=wire.TTR_SECONDS
        )
        self._settle(hold, job.ref, lambda: self.dedup.finish(hold))
        conn.delete(job.ref.job_id)

    def _call(self, conn: Connection, route: Route, job: Job, hold: Hold) -> object:
        """Run the handler in the pool; meanwhile touch the job (so beanstalkd does not give
        it to another consumer past its TTR) and renew the hold.

        Raises:
            HandlerTimeoutError: the handler outlived ``route.timeout``.
            TypeError: the handler returned an awaitable (it was never run to the end).
            Exception: whatever the handler raised.
        """
        future: Future[object] = self.pool.submit(route.handler, job)
        started = time.monotonic()
        renew_every = self.dedup.lease_ms / 3000
        next_renew = started + renew_every
        while True:
            wait = self.timing.touch_interval
            if route.timeout is not None:
                wait = max(min(wait, started + route.timeout - time.monotonic()), 0)
            try:
                return _checked(future.result(timeout=wait), route)
            except FutureTimeout:
                pass
            if route.timeout is not None and time.monotonic() - started >= route.timeout:
                _give_up(future, job, route.timeout)
            try:
                conn.touch(job.ref.job_id)
            except DqError as exc:
                log.warning("dq: could not touch %s while its handler runs: %s", job.ref, exc)
            if time.monotonic() >= next_renew:
                next_renew = time.monotonic() + renew_every
                self._settle(hold, job.ref, lambda: self.dedup.renew(hold))

    def _hold_if_early(self, conn: Connection, job: Job) -> Outcome | None:
        """Keep a job that arrived before its target time (dq's truncated delays, clock skew)
        from running early: wait out a short gap, release for a long one."""
        remaining = job.at_ns - now_ns(self.clock)
        if remaining <= 0:
            return None
        if remaining <= self.timing.early_wait * _NS:
            if not self.stopping.wait(remaining / _NS):
                return None
            self._release_as_is(conn, job.ref.job_id, 0)
            return Outcome.STOPPING
        self._release_as_is(conn, job.ref.job_id, remaining / _NS)
        return Outcome.EARLY

    def _is_stale(self, conn: Connection, route: Route, job: Job) -> bool:
        """True when the job is first delivered more than ``stale_after`` after its target.
        Retried, repeated or kicked jobs are never stale: they arrived in time once."""
        if route.stale_after_ns is None:
            return False
        late = now_ns(self.clock) - job.at_ns
        if late <= route.stale_after_ns:
            return False
        stats = conn.stats_job(job.ref.job_id)
        if stats.get("reserves", 1) > 1 or stats.get("kicks", 0) > 0:
            return False
        log.error(
            "dq: burying %s: stale, first delivered %.0f s after its target time %s "
            "(stale_after is %.0f s); kick it to run it anyway",
            job.ref,
            late / _NS,
            job.at.isoformat(),
            route.stale_after_ns / _NS,
        )
        return True

    def _release_as_is(self, conn: Connection, job_id: int, delay: float) -> None:
        """Release without touching the failure count kept in the priority."""
        priority = self._priority(conn, job_id)
        conn.release(job_id, priority=priority, delay=wire.delay_seconds(round(delay * _NS)))

    def _priority(self, conn: Connection, job_id: int) -> int:
        try:
            return int(conn.stats_job(job_id).get("pri", wire.PUT_PRIORITY))
        except DqError:
            return wire.PUT_PRIORITY

    def _settle(self, hold: Hold, ref: wire.JobRef, action: Callable[[], bool]) -> None:
        """Run a dedup update; if Redis is down or the hold was lost, log and go on: the
        job stays in beanstalkd either way, at worst it runs once more."""
        try:
            if not action():
                log.warning("dq: the hold on %s lapsed and was taken over meanwhile", ref)
        except RedisDownError as exc:
            log.warning("dq: %s while settling %s; its hold will lapse", exc, ref)


def _checked(result: object, route: Route) -> object:
    """A handler's return value; an awaitable means an async handler reached a runner that
    cannot await it, so the job did not run: a failure, never "done"."""
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()  # never awaited on purpose: no RuntimeWarning, no half-run
        raise TypeError(
            f"the handler for tube {route.tube!r} returned {type(result).__name__}, an "
            "awaitable: register async handlers with AsyncConsumer, which awaits them"
        )
    return result


def _give_up(future: Future[object], job: Job, timeout: float) -> None:
    """End the wait for a handler past its timeout. An async handler is cancelled; a thread
    cannot be stopped, so a sync handler runs on unobserved and its outcome is ignored."""
    if not future.cancel():
        log.warning(
            "dq: the handler of %s is still running after its %ss timeout; its thread cannot "
            "be stopped, the job is treated as failed",
            job.ref,
            timeout,
        )
    raise HandlerTimeoutError(f"handler of {job.ref} timed out after {timeout}s")


def _log_retry(job: Job, failures: int, max_failures: int, delay_ns: int, exc: Exception) -> None:
    log.warning(
        "dq: %s failed (attempt %d of %d), retrying in %ss: %s: %s",
        job.ref,
        failures,
        max_failures,
        delay_ns / _NS,
        type(exc).__name__,
        exc,
    )
