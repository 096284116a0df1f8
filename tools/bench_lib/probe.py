"""What every benchmarked handler calls: counts tasks and records handler-start timestamps.

Runs inside the workers of every system, so it depends on redis-py only. The mode comes from
the environment the bench gives the worker:

- ``BENCH_PROBE=count``: count hits in memory; a daemon thread flushes the count and the
  first/last hit time to Redis every few milliseconds (so the probe costs the measured worker
  almost nothing). With ``BENCH_PROBE_DIRECT=1`` (workers that fork a child per task, whose
  memory is lost) every hit is written at once.
- ``BENCH_PROBE=stamp``: the task's argument is the time it was sent (or due); each hit pushes
  "sent start" to a list at once, which the producer waits on with BLPOP.

``BENCH_HANDLER=call`` turns every handler into the one-Redis-call handler: before the probe's
hit it runs :data:`CALL` (``INCR`` of :data:`CALLS`) through a redis-py client of the handler's
kind, asyncio for ``async def`` handlers, sync for thread and gevent ones. The counter's final
value proves the handlers really ran; the bare-loop ceiling (bench_lib.ceiling) runs the same
body.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import redis
import redis.asyncio

DONE = "bench:done"
SPAN = "bench:span"
STAMPS = "bench:stamps"
CALLS = "bench:calls"
"""The counter the one-call handler increments."""
FLUSH_EVERY = 0.005


class Probe:
    """Counts or stamps handler starts in one worker process."""

    def __init__(self) -> None:
        self.mode = os.environ.get("BENCH_PROBE", "count")
        self.direct = os.environ.get("BENCH_PROBE_DIRECT") == "1"
        self.url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
        self._pid = 0
        self._redis: redis.Redis | None = None
        self._count = 0
        self._first = 0.0
        self._last = 0.0
        self._lock = threading.Lock()

    def _conn(self) -> redis.Redis:
        conn = self._redis
        if conn is not None and self._pid == os.getpid():
            return conn
        with self._lock:  # several handler threads may arrive first at once
            if self._redis is None or self._pid != os.getpid():
                self._redis = redis.Redis.from_url(self.url)
                self._pid = os.getpid()
                self._count = 0
                if self.mode == "count" and not self.direct:
                    flusher = threading.Thread(
                        target=self._flusher, name="bench-probe", daemon=True
                    )
                    flusher.start()
            return self._redis

    def hit(self, arg: Any = None) -> None:
        """Record one handler start (``arg``: the task's argument)."""
        now = time.time()
        conn = self._conn()
        if self.mode == "stamp":
            conn.rpush(STAMPS, f"{float(arg or 0.0):.6f} {now:.6f}")
        elif self.direct:
            pipe = conn.pipeline(transaction=False)
            pipe.incr(DONE)
            pipe.zadd(SPAN, {"first": now}, lt=True)
            pipe.zadd(SPAN, {"last": now}, gt=True)
            pipe.execute()
        else:
            with self._lock:
                if not self._count:
                    self._first = now
                self._count += 1
                self._last = now

    def _flusher(self) -> None:
        sent = 0
        conn = redis.Redis.from_url(self.url)
        while True:
            time.sleep(FLUSH_EVERY)
            with self._lock:
                count, first, last = self._count, self._first, self._last
            if count == sent:
                continue
            pipe = conn.pipeline(transaction=False)
            pipe.incrby(DONE, count - sent)
            pipe.zadd(SPAN, {"first": first}, lt=True)
            pipe.zadd(SPAN, {"last": last}, gt=True)
            pipe.execute()
            sent = count


PROBE = Probe()
"""The process's probe; handlers call ``PROBE.hit(arg)``."""


class Call:
    """The one-Redis-call handler body, ``INCR bench:calls``, on a client made once per process
    (a user's handler module would hold one the same way).

    The asyncio client keeps redis-py's default pool, so concurrent handlers each get a
    connection of their own, as they would in an application.
    """

    def __init__(self) -> None:
        self.enabled = os.environ.get("BENCH_HANDLER") == "call"
        self.url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
        self._sync: tuple[int, redis.Redis] | None = None
        self._async: tuple[int, object, redis.asyncio.Redis] | None = None
        self._lock = threading.Lock()

    def sync(self) -> None:
        """The body for a sync handler (threads, gevent, forked children)."""
        held = self._sync
        if held is None or held[0] != os.getpid():
            with self._lock:
                if self._sync is None or self._sync[0] != os.getpid():
                    self._sync = (os.getpid(), redis.Redis.from_url(self.url))
                held = self._sync
        held[1].incr(CALLS)

    async def run(self) -> None:
        """The body for an ``async def`` handler."""
        held = self._async
        loop = asyncio.get_running_loop()
        if held is None or held[0] != os.getpid() or held[1] is not loop:
            held = self._async = (os.getpid(), loop, redis.asyncio.Redis.from_url(self.url))
        await held[2].incr(CALLS)


CALL = Call()
"""The process's one-call body; handlers run it when ``CALL.enabled``."""
