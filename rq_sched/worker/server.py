"""The worker server: wires the processor and the background components, runs and stops them.

Example::

    server = Server.from_url("redis://localhost:6379/0", queues={"critical": 6, "default": 3})
    server.run(router)  # until SIGTERM / SIGINT, then a graceful shutdown

Every background loop runs under one :class:`~rq_sched.worker.supervisor.Supervisor`. When a
loop keeps failing, the server turns its status to "unhealthy" (seen in its heartbeat), shuts
down gracefully and :meth:`Server.serve` raises :class:`ServerUnhealthyError`, so ``rq-sched
worker`` exits non-zero and a process manager can restart it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from dataclasses import replace
from typing import Any, Self

from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.exceptions import RedisError

from rq_sched import shards
from rq_sched.clock import Clock, use_clock
from rq_sched.connection import aconnect
from rq_sched.errors import ValidationError
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.router import Route, Router
from rq_sched.scripts import AnyAsyncRedis
from rq_sched.worker.aggregator import Aggregator
from rq_sched.worker.cancellation import CancelListener
from rq_sched.worker.component import Component, cancel_and_wait
from rq_sched.worker.config import ServerConfig
from rq_sched.worker.deliverer import Deliverer
from rq_sched.worker.forwarder import Forwarder
from rq_sched.worker.heartbeat import Heartbeat, LeaseKeeper, new_server_id
from rq_sched.worker.janitor import Janitor
from rq_sched.worker.processor import Processor
from rq_sched.worker.recoverer import Recoverer
from rq_sched.worker.runners import Runners
from rq_sched.worker.supervisor import ServerUnhealthyError, Supervisor, retry_pause
from rq_sched.worker.wakeup import MarkerWatcher, socket_timeout

log = logging.getLogger("rq_sched")

CONNECTION_OPTIONS: dict[str, Any] = {
    "socket_timeout": 10.0,
    "socket_connect_timeout": 5.0,
    "socket_keepalive": True,
    "socket_keepalive_options": {
        option: value
        for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
        if (option := getattr(socket, name, None)) is not None
    },
}
"""Connection settings of a worker made by :meth:`Server.from_url`: a reply must come within
10 s (blocking waits stay shorter, see :mod:`~rq_sched.worker.wakeup`), and keepalive probes
find a vanished peer in about 45 s."""


class Server:
    """Runs handlers from a :class:`Router` for the configured queues."""

    def __init__(
        self,
        redis: AnyAsyncRedis,
        *,
        config: ServerConfig | None = None,
        clock: Clock | None = None,
        **options: Any,
    ) -> None:
        if config is not None and options:
            raise ValidationError("pass either config= or keyword options, not both")
        self.redis = redis
        self.config = config or ServerConfig(**options)
        if not isinstance(socket_timeout(redis), int | float):
            log.warning(
                "the worker's Redis client has no socket timeout: a connection dropped without "
                "a FIN or RST blocks it until TCP gives up; pass socket_timeout= (e.g. 10)"
            )
        self.clock: Clock = use_clock(clock)
        self.id = new_server_id()
        self.processor: Processor | None = None
        self.aggregator: Aggregator | None = None
        self.started = threading.Event()
        self.stopped = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self._status = "starting"
        self.components: list[Component] = []
        self._owns_redis = False
        self.supervisor = Supervisor(
            failures_allowed=self.config.loop_failures_allowed,
            window=self.config.loop_failure_window,
            on_unhealthy=self._unhealthy,
        )

    @property
    def status(self) -> str:
        """starting, running, stopping, stopped, or unhealthy (a background loop kept failing)."""
        return self._status

    @classmethod
    def from_url(cls, url: str, *, cluster: bool = False, **options: Any) -> Self:
        """A server on its own connection pool to ``url``; options are :class:`ServerConfig`'s.

        Its connections get socket timeouts and TCP keepalive (:data:`CONNECTION_OPTIONS`),
        whatever the redis-py version's defaults, so a dropped connection fails a call instead
        of blocking the worker for ever."""
        clock = options.pop("clock", None)
        server = cls(aconnect(url, cluster=cluster, **CONNECTION_OPTIONS), clock=clock, **options)
        server._owns_redis = True
        return server

    def run(self, router: Router) -> None:
        """Serve until SIGTERM or SIGINT, then shut down gracefully (blocking); a server made
        by :meth:`from_url` closes its connections at the end.

        Raises:
            ServerUnhealthyError: a background loop kept failing; the server stopped.
        """
        asyncio.run(self._run(router))

    async def _run(self, router: Router) -> None:
        try:
            await self.serve(router, handle_signals=True)
        finally:
            if self._owns_redis:
                await self.redis.aclose()

    def stop(self) -> None:
        """Ask a running server to shut down gracefully; safe from any thread, and also before
        :meth:`serve` started (it then stops right after starting)."""
        self._stop_requested = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)

    def _due_at(self, queue: str, due_ms: int) -> None:
        """The marker announced something due in ``queue`` (a scheduled or retry task, or an
        aggregation group)."""
        self.forwarder.due_at(queue, due_ms)
        if self.aggregator is not None:
            self.aggregator.due_at(queue, due_ms)

    def _unhealthy(self, loop_name: str) -> None:
        self._status = "unhealthy"
        for component in self.components:
            if isinstance(component, Heartbeat):
                component.wake()  # tell the dashboard before stopping
        if self._stop is not None:
            self._stop.set()

    async def serve(self, router: Router, *, handle_signals: bool = False) -> None:
        """Serve on the running event loop until :meth:`stop` (or a signal).

        Raises:
            ServerUnhealthyError: a background loop kept failing; the server shut down
                gracefully first.
        """
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._stop_requested:  # stop() ran before the event existed
            self._stop.set()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._stop.set)
        router = self._effective_router(router)
        if isinstance(self.redis, AsyncRedisCluster):
            # Learn the cluster's nodes once, before every component asks at the same time
            # (each first command would otherwise rebuild the node table under the others).
            with contextlib.suppress(RedisError, OSError):
                await self.redis.initialize()
        await self._expand_shards()
        keys = {q: QueueKeys(self.config.namespace, q) for q in self.config.queues}
        runners = Runners(threads=self.config.concurrency, processes=self.config.process_slots)
        processor = self.processor = Processor(
            self.redis,
            config=self.config,
            router=router,
            runners=runners,
            clock=self.clock,
            keys=keys,
        )
        components = self.components = self._components(processor, keys)
        tasks = self._background(processor, keys, components)
        if self._status == "starting":
            self._status = "running"
        self.started.set()
        log.info(
            "rq_sched server %s: queues %s, concurrency %d, %d task type(s)",
            self.id,
            dict(self.config.queues),
            self.config.concurrency,
            len(router.routes),
        )
        try:
            await self._stop.wait()
        finally:
            if self._status != "unhealthy":
                self._status = "stopping"
            await self._shutdown(processor, components, tasks, runners)
        failed = self.supervisor.failed_loop
        if failed is not None:
            raise ServerUnhealthyError(
                f"worker server {self.id} stopped: its {failed} loop kept failing "
                f"(more than {self.config.loop_failures_allowed} times in "
                f"{self.config.loop_failure_window:g}s; the tracebacks are in the log)"
            )

    async def _expand_shards(self) -> None:
        """Serve every physical queue of each sharded queue (see :mod:`rq_sched.shards`):
        ``queues`` is rewritten once, before anything starts, so every component (fetch,
        blocking waits, forwarder, recoverer, heartbeat) sees plain queues.

        Raises:
            ValidationError: ``flow`` limits a sharded queue (a limit cannot span shards).
        """
        global_keys = GlobalKeys(self.config.namespace)
        failures = 0
        while True:
            try:
                counts = shards.parse_counts(await self.redis.hgetall(global_keys.shards))
                raw = await self.redis.smembers(global_keys.queues)
                break
            except (RedisError, OSError) as exc:
                # Redis may come up after its workers; nothing has started yet.
                failures += 1
                log.warning("reading the shard map failed (%s); retrying", exc)
                await asyncio.sleep(retry_pause(failures))
                if self._stop is not None and self._stop.is_set():
                    return
        registered = [m.decode() if isinstance(m, bytes) else str(m) for m in raw]
        queues = shards.expand_weights(self.config.queues, counts, registered)
        if len(queues) == len(self.config.queues):
            return  # nothing sharded, no shard of an earlier N left
        sharded = [q for q in self.config.queues if counts.get(q, 1) > 1]
        limited = sorted(q for q in sharded if q in self.config.flow)
        if limited:
            raise ValidationError(
                f"queue(s) {', '.join(limited)} are sharded: flow limits cannot span shards "
                "(each shard is its own slot); drop them from flow= or un-shard the queue"
            )
        log.info("sharded queues %s: serving %s", sharded, sorted(queues))
        self.config = replace(self.config, queues=queues)

    def _effective_router(self, router: Router) -> Router:
        if not self.config.processes:
            return router
        # --processes N: every plain `def` handler runs in a child process.
        moved = Router(middleware=list(router.middleware))
        for route in router.routes.values():
            kind = "process" if route.kind == "thread" else route.kind
            moved.routes[route.type] = Route(
                route.type, route.handler, kind, route.backoff, route.timeout
            )
        return moved

    def _components(self, processor: Processor, keys: dict[str, QueueKeys]) -> list[Component]:
        cfg = self.config
        self.forwarder = Forwarder(
            self.redis,
            keys,
            clock=self.clock,
            sweep_interval=cfg.forward_sweep_interval,
            on_forwarded=processor.fetcher.notify_work,
        )
        deliverer = Deliverer(
            self.redis,
            keys,
            namespace=cfg.namespace,
            sweep_interval=cfg.recover_interval,
            grace=max(2.0, cfg.recover_interval),
        )
        processor.on_reported = deliverer.notify
        aggregation = processor.router.aggregation
        self.aggregator = (
            Aggregator(
                self.redis,
                keys,
                clock=self.clock,
                aggregation=aggregation,
                sweep_interval=cfg.forward_sweep_interval,
            )
            if aggregation is not None
            else None
        )
        return [
            self.forwarder,
            deliverer,
            *([self.aggregator] if self.aggregator is not None else []),
            Recoverer(
                self.redis,
                keys,
                clock=self.clock,
                interval=cfg.recover_interval,
                lease_duration=cfg.lease_duration,
                limits=cfg.archive_limits,
                on_recovered=processor.fetcher.notify_work,
            ),
            Janitor(
                self.redis,
                keys,
                clock=self.clock,
                interval=cfg.janitor_interval,
                limits=cfg.archive_limits,
            ),
            Heartbeat(
                self.redis,
                server_id=self.id,
                config=cfg,
                processor=processor,
                clock=self.clock,
                status=lambda: self._status,
            ),
            LeaseKeeper(
                self.redis,
                keys,
                processor=processor,
                clock=self.clock,
                lease_duration=cfg.lease_duration,
            ),
        ]

    def _background(
        self,
        processor: Processor,
        keys: dict[str, QueueKeys],
        components: list[Component],
    ) -> list[asyncio.Task[None]]:
        for component in components:
            component.start(self.supervisor)
        markers = {k.marker: q for q, k in keys.items()}
        groups = (
            [{m: q} for m, q in markers.items()]
            if isinstance(self.redis, AsyncRedisCluster)
            else [markers]
        )
        # One watcher on a plain client sends the fetcher's dequeue behind its wait (one
        # round trip per wake-up: rq_sched.worker.prefetch); a cluster's per-slot watchers
        # wake the fetcher, which then asks.
        fetcher = processor.fetcher
        prefetcher = fetcher if len(groups) == 1 and isinstance(self.redis, AsyncRedis) else None
        watchers = [
            MarkerWatcher(
                self.redis,
                group,
                on_ready=fetcher.notify_work,
                on_due=self._due_at,
                timeout=self.config.idle_timeout,
                prefetcher=prefetcher,
            )
            for group in groups
        ]
        if prefetcher is not None:
            fetcher.kick = watchers[0].kick
        # In a cluster, redis-py's cluster pub/sub picks a node: PUBLISH reaches every node.
        listener = CancelListener(
            self.redis,
            GlobalKeys(self.config.namespace).cancel_channel,
            processor.cancel,
        )
        self.cancel_listener = listener
        loops = [
            ("fetch-loop", fetcher.run),
            ("ack-loop", processor.ack_loop),
            ("cancel-listener", listener.run),
            *((f"marker-watcher-{i}", w.run) for i, w in enumerate(watchers)),
        ]
        return [self.supervisor.spawn(name, run) for name, run in loops]

    async def _shutdown(
        self,
        processor: Processor,
        components: list[Component],
        tasks: list[asyncio.Task[None]],
        runners: Runners,
    ) -> None:
        log.info("rq_sched server %s: shutting down", self.id)
        try:
            await processor.drain(self.config.shutdown_timeout)
        except Exception:
            log.exception("graceful shutdown could not hand every task back")
        await cancel_and_wait(tasks)
        for component in components:
            await component.stop()
        for component in components:
            if isinstance(component, Heartbeat):
                with contextlib.suppress(Exception):
                    if self._status == "unhealthy":
                        # Left to expire, so operators see why this server went away.
                        await component.tick()
                    else:
                        await component.clear()
        runners.close()
        if self._status != "unhealthy":
            self._status = "stopped"
        self.stopped.set()
        log.info("rq_sched server %s: stopped", self.id)
