"""The dq Consumer: reserves jobs from every beanstalkd node and runs the tube's handler.

Worker threads (``concurrency`` per node and tube, each with its own connection, since
beanstalkd ties a reservation to its connection) reserve jobs and pass them to the
:class:`~rq_sched.dq.handling.Processor`, which deduplicates with go-queue's exact Redis key and
makes sure every job ends deleted after success, released for a retry or repeat, or buried.
Handlers run in a thread pool, so the worker can keep the job alive while they run.

``start()`` / ``stop()`` run the threads; ``run_once()`` is one synchronous round (one reserve
per node and tube), which tests and scripts drive directly.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import timedelta
from types import TracebackType
from typing import Any, Self

from rq_sched.clock import Clock
from rq_sched.connection import connect
from rq_sched.dq import wire
from rq_sched.dq.beanstalk import Beanstalk, Connection, check_tube, node_list
from rq_sched.dq.dedup import Dedup
from rq_sched.dq.errors import DqConfigError, DqError, NodeUnavailableError
from rq_sched.dq.goconf import DqConf
from rq_sched.dq.handling import (
    Backoff,
    Handler,
    HandlerResult,
    Outcome,
    Processor,
    Route,
    Timing,
    default_backoff,
    is_async_callable,
)
from rq_sched.durations import duration_seconds
from rq_sched.errors import ValidationError
from rq_sched.scripts import SyncRedis

log = logging.getLogger(__name__)

_DEFAULT = object()


def _seconds(value: timedelta | float, what: str) -> float:
    """A positive, finite duration in seconds (the one duration check, as a dq config error)."""
    try:
        return duration_seconds(value, what, allow_zero=False, allow_text=False)
    except ValidationError as exc:
        raise DqConfigError(str(exc)) from None


class Consumer:
    """Consumes dq jobs from beanstalkd nodes, deduplicated in Redis, losing none.

    Example::

        consumer = Consumer(nodes, redis="redis://127.0.0.1:6379/0")
        consumer.register("emails", send_email)            # handler(job) -> None
        consumer.register("reports", refresh, repeat_every=timedelta(minutes=1))
        consumer.start()
        ...
        consumer.stop()

    Args:
        nodes: the beanstalkd nodes (their tubes get ``handler`` when it is given).
        redis: Redis URL or client for the dedup keys (shared with Go consumers).
        handler: optional handler for the nodes' own tubes (go-queue's ``Consume(handler)``).
        concurrency: worker threads per node and tube (default for :meth:`register`).
        max_failures: failed attempts before a job is buried (default for :meth:`register`).
        backoff: seconds before retry n (default for :meth:`register`).
        stale_after: bury jobs first delivered this long after their target time (None: never).
        lease: how long a consumer's hold on a running job lasts without renewal; a job whose
            consumer died is taken over after it lapses.
        touch_interval: seconds between keep-alive touches of a job whose handler runs.
        busy_wait: how long a copy held by another consumer is watched before it is released.
        busy_recheck: delay before a released copy held by another consumer is looked at again.
        redis_retry_delay: delay before a job is retried after Redis was unreachable.
        early_wait: arriving up to this many seconds early, a job is held, not released.
        poll_timeout: seconds one reserve waits (bounds how long :meth:`stop` takes).
        reconnect_delay: seconds between attempts to reach a node that is down.
        mixed_pool: Go consumers share the tubes: retries and repeats become new jobs with
            free dedup keys, so a Go consumer that reserves one runs it instead of
            discarding it (see docs/dq.md, "Mixed Go/Python pools").
        clock: time source for target-time checks.

    Raises:
        DqConfigError: no nodes, or a setting out of range.
    """

    def __init__(
        self,
        nodes: Sequence[Beanstalk],
        *,
        redis: str | SyncRedis,
        handler: Handler | None = None,
        concurrency: int = 1,
        max_failures: int = 5,
        backoff: Backoff = default_backoff,
        stale_after: timedelta | None = wire.STALE_AFTER,
        lease: timedelta | float = 15.0,
        touch_interval: timedelta | float = 1.0,
        busy_wait: timedelta | float = 0.25,
        busy_recheck: timedelta | float = 2.0,
        redis_retry_delay: timedelta | float = 1.0,
        early_wait: timedelta | float = 1.0,
        poll_timeout: int = 1,
        reconnect_delay: timedelta | float = 1.0,
        mixed_pool: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.nodes = _check_consumer_nodes(nodes)
        self.endpoints = list(dict.fromkeys(n.endpoint for n in self.nodes))
        self._owns_redis = isinstance(redis, str)
        client = (
            connect(redis, socket_timeout=5, socket_connect_timeout=2)
            if isinstance(redis, str)
            else redis
        )
        self.redis: SyncRedis = client
        lease_s = _seconds(lease, "lease")
        self._defaults = (concurrency, max_failures, backoff, stale_after)
        self._timing = Timing(
            touch_interval=_seconds(touch_interval, "touch_interval"),
            busy_wait=_seconds(busy_wait, "busy_wait"),
            busy_recheck=_seconds(busy_recheck, "busy_recheck"),
            redis_retry_delay=_seconds(redis_retry_delay, "redis_retry_delay"),
            early_wait=_seconds(early_wait, "early_wait"),
        )
        if not isinstance(poll_timeout, int) or poll_timeout < 0:
            raise DqConfigError("poll_timeout must be a whole number of seconds >= 0")
        self.poll_timeout = poll_timeout
        self.reconnect_delay = _seconds(reconnect_delay, "reconnect_delay")
        self.mixed_pool = bool(mixed_pool)
        self._dedup = Dedup(client, lease_ms=round(lease_s * 1000))
        self._stopping = threading.Event()
        self._stopped: bool | None = None
        self._clock = clock
        self.routes: dict[str, Route] = {}
        self._threads: list[threading.Thread] = []
        self._conns: list[Connection] = []
        self._once_conns: dict[tuple[str, str], Connection] = {}
        self._pool: Executor | None = None
        self._counts: Counter[Outcome] = Counter()
        self._counts_lock = threading.Lock()
        if handler is not None:
            for tube in dict.fromkeys(n.tube for n in self.nodes):
                self.register(tube, handler)

    @classmethod
    def from_conf(cls, conf: DqConf | Mapping[str, Any], **options: Any) -> Self:
        """A consumer from go-queue's ``DqConf`` (the dataclass or Go's mapping, any key
        case), as ``dq.NewConsumer(c)``: its Beanstalks and its Redis (closed on stop).

        Raises:
            DqConfigError: the config is malformed or has no Redis section.
        """
        if not isinstance(conf, DqConf):
            conf = DqConf.from_dict(conf)
        client = conf.redis_conf().connect()
        try:
            consumer = cls(list(conf.beanstalks), redis=client, **options)
        except BaseException:
            client.close()
            raise
        consumer._owns_redis = True  # made here, so closed by stop()
        return consumer

    def register(
        self,
        tube: str,
        handler: Handler,
        *,
        repeat_every: timedelta | float | None = None,
        stale_after: timedelta | object | None = _DEFAULT,
        max_failures: int | None = None,
        backoff: Backoff | None = None,
        concurrency: int | None = None,
        timeout: timedelta | float | None = None,
    ) -> None:
        """Run ``handler(job)`` for the jobs of ``tube`` on every node.

        The handler returns None when done, or ``Repeat(delay)`` to run the job again after
        ``delay``; with ``repeat_every`` the job repeats after every success (return ``Stop()``
        to end it) and is never judged stale. A handler that raises has its job retried; so
        does one that runs past ``timeout`` (a thread cannot be stopped: it runs on, and its
        outcome is ignored). The job is touched while the handler runs, however long.

        Raises:
            DqConfigError: bad tube name or settings, the tube has a handler already, the
                consumer is running, or ``handler`` is an ``async def`` (use AsyncConsumer).
        """
        self.check_handler(handler)
        check_tube(tube)
        if self._threads:
            raise DqConfigError("register handlers before start()")
        if tube in self.routes:
            raise DqConfigError(f"tube {tube!r} already has a handler")
        default_concurrency, default_failures, default_backoff_fn, default_stale = self._defaults
        repeat_ns = None if repeat_every is None else wire.duration_ns(repeat_every, "repeat_every")
        if stale_after is _DEFAULT:
            stale_after = None if repeat_every is not None else default_stale
        if stale_after is not None and not isinstance(stale_after, timedelta):
            raise DqConfigError(f"stale_after must be a timedelta or None, got {stale_after!r}")
        self.routes[tube] = Route(
            tube=tube,
            handler=handler,
            repeat_every_ns=repeat_ns,
            stale_after_ns=None if stale_after is None else wire.duration_ns(stale_after),
            max_failures=default_failures if max_failures is None else max_failures,
            backoff=backoff or default_backoff_fn,
            concurrency=default_concurrency if concurrency is None else concurrency,
            timeout=None if timeout is None else _seconds(timeout, "timeout"),
        )

    def start(self) -> None:
        """Start the worker threads (concurrency per node and tube).

        Raises:
            DqConfigError: no handler is registered, or the consumer already started.
        """
        if not self.routes:
            raise DqConfigError("register a handler (consumer.register(tube, fn)) before start()")
        if self._threads or self._stopping.is_set():
            raise DqConfigError("this Consumer already started; make a new one to start again")
        workers = [
            (endpoint, route)
            for endpoint in self.endpoints
            for route in self.routes.values()
            for _ in range(route.concurrency)
        ]
        self._pool = self._make_pool(len(workers))
        processor = self._processor(self._pool)
        for index, (endpoint, route) in enumerate(workers):
            conn = Connection(Beanstalk(endpoint, route.tube), io_timeout=10.0)
            self._conns.append(conn)
            thread = threading.Thread(
                target=self._work,
                args=(conn, route, processor),
                name=f"dq-{endpoint}-{route.tube}-{index}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Stop reserving, let running handlers finish, and close connections.

        Returns:
            True when every worker ended within ``timeout``.
        """
        self._stopping.set()
        with self._counts_lock:
            if self._stopped is not None:
                return self._stopped
        for thread in self._threads:
            thread.join(timeout)
        stopped = not any(t.is_alive() for t in self._threads)
        if self._pool is not None:
            self._pool.shutdown(wait=stopped)
        for conn in [*self._conns, *self._once_conns.values()]:
            conn.close()
        if self._owns_redis:
            self.redis.close()
        with self._counts_lock:
            self._stopped = stopped
        return stopped

    def run_once(self, timeout: int = 0) -> list[Outcome]:
        """Reserve at most one job per node and tube (waiting up to ``timeout`` s each) and
        handle it in this thread; returns what became of each job handled.

        Raises:
            DqConfigError: no handler is registered.
        """
        if not self.routes:
            raise DqConfigError("register a handler (consumer.register(tube, fn)) first")
        outcomes: list[Outcome] = []
        with self._make_pool(1) as pool:
            processor = self._processor(pool)
            for endpoint in self.endpoints:
                for route in self.routes.values():
                    conn = self._once_conns.setdefault(
                        (endpoint, route.tube), Connection(Beanstalk(endpoint, route.tube))
                    )
                    outcome = self._round(conn, route, processor, timeout)
                    if outcome is not None:
                        outcomes.append(outcome)
        return outcomes

    def consume(self, handler: Callable[[bytes], HandlerResult]) -> None:
        """go-queue's ``Consume(handler)``: run ``handler(body)`` for the jobs of the nodes'
        own tubes and block until :meth:`stop` is called (from another thread or a signal
        handler) or Ctrl-C. ``body`` is the raw body the producer passed. Unlike Go, a
        handler that raises has its job retried (see ``max_failures``).

        Raises:
            DqConfigError: ``handler`` is not a plain callable, a tube has a handler already,
                or the consumer already started.
        """
        self.check_handler(handler)
        for tube in dict.fromkeys(n.tube for n in self.nodes):
            self.register(tube, lambda job: handler(job.body))
        self.start()
        try:
            self.wait()
        except KeyboardInterrupt:
            log.info("dq: interrupted; stopping the consumer")
        finally:
            self.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` is called (True) or ``timeout`` seconds pass (False)."""
        return self._stopping.wait(timeout)

    def counts(self) -> dict[Outcome, int]:
        """How many reserved jobs ended each way so far."""
        with self._counts_lock:
            return dict(self._counts)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def check_handler(self, handler: object) -> None:
        """Refuse a handler this consumer would not run to the end.

        Raises:
            DqConfigError: ``handler`` is an ``async def`` (the AsyncConsumer awaits those).
        """
        if is_async_callable(handler):
            raise DqConfigError(
                f"{handler!r} is an async def handler; the Consumer runs handlers in threads "
                "and would never await it: use rq_sched.dq.AsyncConsumer, or a plain def"
            )

    def _make_pool(self, workers: int) -> Executor:
        """Where handlers run: threads here; the AsyncConsumer runs them on its loop."""
        return ThreadPoolExecutor(workers, thread_name_prefix="dq-handler")

    def _processor(self, pool: Executor) -> Processor:
        return Processor(
            self._dedup,
            pool,
            self._timing,
            self._stopping,
            self._clock,
            mixed_pool=self.mixed_pool,
        )

    def _work(self, conn: Connection, route: Route, processor: Processor) -> None:
        down = False
        while not self._stopping.is_set():
            try:
                self._round(conn, route, processor, self.poll_timeout)
            except NodeUnavailableError as exc:
                if not down:
                    log.warning("dq: %s; retrying every %ss", exc, self.reconnect_delay)
                down = True
                self._stopping.wait(self.reconnect_delay)
                continue
            except Exception:  # a bug must not silently end the worker; log and go on
                log.exception("dq: unexpected error in the worker for %s", conn)
                self._stopping.wait(self.reconnect_delay)
                continue
            if down:
                log.info("dq: beanstalkd at %s is reachable again", conn.node.endpoint)
                down = False

    def _round(
        self, conn: Connection, route: Route, processor: Processor, timeout: int
    ) -> Outcome | None:
        reserved = conn.reserve(timeout)
        if reserved is None:
            return None
        job_id, body = reserved
        try:
            outcome = processor.process(conn, route, job_id, body)
        except NodeUnavailableError:
            raise
        except DqError as exc:
            log.warning("dq: beanstalkd at %s: %s", conn.node.endpoint, exc)
            outcome = Outcome.NODE_ERROR
        with self._counts_lock:
            self._counts[outcome] += 1
        return outcome


def _check_consumer_nodes(nodes: Sequence[Beanstalk]) -> list[Beanstalk]:
    found = node_list(nodes)
    if not found:
        raise DqConfigError("a dq consumer needs at least one Beanstalk(endpoint, tube) node")
    return found
