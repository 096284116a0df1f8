"""Heartbeats: the server's presence and its running tasks in Redis, and lease renewal.

:class:`Heartbeat` publishes :class:`~rq_sched.models.ServerInfo` and the running tasks with a
TTL, for the inspector and dashboard. :class:`LeaseKeeper` renews the lease of every task this
server holds (presenting each lease's fencing token; the expiry is Redis TIME + the lease
duration), so only a dead or stuck server lets a lease run out. It also picks up cancels
recorded in Redis for tasks running here, in case their pub/sub notification was missed.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rq_sched import ops, scripts
from rq_sched.clock import Clock, to_ms
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.models import ServerInfo, WorkerInfo
from rq_sched.scripts import AnyAsyncRedis
from rq_sched.worker.component import Component
from rq_sched.worker.config import ServerConfig
from rq_sched.worker.processor import Processor

log = logging.getLogger("rq_sched")


def new_server_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Heartbeat(Component):
    name = "heartbeat"

    def __init__(
        self,
        redis: AnyAsyncRedis,
        *,
        server_id: str,
        config: ServerConfig,
        processor: Processor,
        clock: Clock,
        status: Callable[[], str],
    ) -> None:
        super().__init__()
        self.redis = redis
        self.server_id = server_id
        self.config = config
        self.processor = processor
        self.clock = clock
        self.status = status
        self.keys = GlobalKeys(config.namespace)
        self.started_at = datetime.fromtimestamp(clock.now(), UTC)
        self._had_workers = True  # write (clear) the workers hash on the first beat

    def info(self) -> ServerInfo:
        return ServerInfo(
            id=self.server_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=dict(self.config.queues),
            strict_priority=self.config.strict_priority,
            concurrency=self.config.concurrency,
            started_at=self.started_at,
            status=self.status(),
            active=len(self.processor.running),
            processed=self.processor.processed,
            failed=self.processor.failed,
        )

    async def tick(self) -> float:
        ttl = max(1, int(self.config.heartbeat_interval * 3))
        expires = to_ms(self.clock.now() + ttl)
        workers: dict[str | bytes | bytearray | memoryview[int] | int | float, Any] = {
            entry.id: WorkerInfo(
                task_id=entry.id,
                task_type=entry.message.type,
                queue=entry.queue,
                started_at=datetime.fromtimestamp(entry.started_at, UTC),
                deadline=entry.task.deadline,
            ).to_json()
            for entry in self.processor.running.values()
        }
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.keys.server(self.server_id), self.info().to_json(), ex=ttl)
        pipe.zadd(self.keys.servers, {self.server_id: expires})
        if workers or self._had_workers:
            pipe.delete(self.keys.workers(self.server_id))
            if workers:
                pipe.hset(self.keys.workers(self.server_id), mapping=workers)
                pipe.expire(self.keys.workers(self.server_id), ttl)
        await pipe.execute()
        self._had_workers = bool(workers)
        return self.config.heartbeat_interval

    async def clear(self) -> None:
        """Remove this server's records (on shutdown)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(self.keys.server(self.server_id), self.keys.workers(self.server_id))
        pipe.zrem(self.keys.servers, self.server_id)
        await pipe.execute()


class LeaseKeeper(Component):
    name = "lease-keeper"

    def __init__(
        self,
        redis: AnyAsyncRedis,
        keys: dict[str, QueueKeys],
        *,
        processor: Processor,
        clock: Clock,
        lease_duration: float,
    ) -> None:
        super().__init__()
        self.redis = redis
        self.keys = keys
        self.processor = processor
        self.clock = clock
        self.lease_duration = lease_duration
        self.renewed_at = time.monotonic()
        """When the last renewal pass began (monotonic): how late the next one is says
        whether this worker's leases could have expired meanwhile."""

    async def tick(self) -> float:
        self._check_lateness()
        started = time.monotonic()  # the first extend renews from about now, not from the end
        # A duration, not an expiry: the script adds it to Redis TIME, so this host's clock
        # never decides when a lease ends.
        lease_ms = int(self.lease_duration * 1000)
        for queue, leases in self.processor.leased().items():
            script, key_list, args = ops.extend(self.keys[queue], lease_ms, leases)
            gone, cancelled = await scripts.arun(self.redis, script, key_list, args)
            tokens: dict[str, list[int]] = {}
            for task_id, token in leases:
                tokens.setdefault(task_id, []).append(token)
            for raw in gone:
                sent = tokens.get(raw.decode(), [])
                if len(sent) == 1:  # with two leases of one id sent, which one went is unknown
                    self.processor.lease_lost(queue, raw.decode(), sent[0])
            if gone:
                log.warning(
                    "lost the lease of %d task(s) in %s (expired and recovered, or leased "
                    "again elsewhere); their outcome will not be recorded by this worker: %s",
                    len(gone),
                    queue,
                    ", ".join(g.decode() for g in gone[:10]),
                )
            for task_id in cancelled:
                # The cancel notification may have been missed (pub/sub is fire-and-forget);
                # the record in Redis says it all the same.
                self.processor.cancel(queue, task_id.decode())
        self.renewed_at = started
        return self.lease_duration / 3

    def _check_lateness(self) -> None:
        """Say so when leases went unrenewed for most of their duration: the event loop was
        blocked or starved, or Redis was slow or unreachable, and any task whose lease expired
        meanwhile runs again elsewhere (its outcome here is then dropped)."""
        gap = time.monotonic() - self.renewed_at
        if gap >= self.lease_duration * 2 / 3 and self.processor.leased():
            log.warning(
                "lease-keeper: %.2fs since this worker last renewed its leases (lease %.2fs): "
                "its event loop or its link to Redis was too slow; tasks whose lease expired "
                "run again elsewhere",
                gap,
                self.lease_duration,
            )
