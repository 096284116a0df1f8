"""Fixtures for the beanstalkd bridge: real beanstalkd processes on free loopback ports, each
with its own binlog directory, stopped by pid. A missing beanstalkd fails loudly with the
install command (never a skip).
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import greenstalk
import pytest

from rq_sched.dq import Beanstalk, Consumer, Job
from rq_sched.local_redis import free_port, require_binary, wait_for_port


@dataclass
class BeanstalkdServer:
    """One beanstalkd on 127.0.0.1 with a binlog directory (-b), so jobs survive a restart."""

    binlog: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> BeanstalkdServer:
        binary = require_binary("beanstalkd")
        self.port = self.port or free_port()
        self.binlog.mkdir(parents=True, exist_ok=True)
        args = [binary, "-l", "127.0.0.1", "-p", str(self.port), "-b", str(self.binlog)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self, *, kill: bool = False) -> None:
        """Stop by pid: SIGTERM, or SIGKILL with ``kill=True``; wait for the exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self.proc.wait(10)

    def client(self, tube: str) -> greenstalk.Client[bytes]:
        """A plain greenstalk client using and watching ``tube`` (the test's own eyes)."""
        return greenstalk.Client(("127.0.0.1", self.port), encoding=None, use=tube, watch=tube)

    def tube_counts(self, tube: str) -> dict[str, int]:
        """ready / delayed / reserved / buried job counts of ``tube`` (zeros when unknown)."""
        with self.client(tube) as client:
            try:
                stats = client.stats_tube(tube)
            except greenstalk.NotFoundError:
                return {"ready": 0, "delayed": 0, "reserved": 0, "buried": 0}
        return {
            state: int(stats[f"current-jobs-{state}"])  # type: ignore[literal-required]
            for state in ("ready", "delayed", "reserved", "buried")
        }

    def jobs_in(self, tube: str) -> int:
        return sum(self.tube_counts(tube).values())


StartServers = Callable[[int], list[BeanstalkdServer]]


@pytest.fixture
def beanstalkds(tmp_path: Path) -> Iterator[StartServers]:
    """Start ``n`` beanstalkd servers for this test (all killed by pid afterwards)."""
    started: list[BeanstalkdServer] = []

    def start(n: int) -> list[BeanstalkdServer]:
        servers = [
            BeanstalkdServer(tmp_path / f"beanstalkd{len(started) + i}").start() for i in range(n)
        ]
        started.extend(servers)
        return servers

    try:
        yield start
    finally:
        for server in started:
            server.stop(kill=True)


@pytest.fixture
def tube() -> str:
    """A tube name of this test's own."""
    return f"t{uuid.uuid4().hex[:10]}"


def nodes_of(servers: list[BeanstalkdServer], tube: str) -> list[Beanstalk]:
    return [Beanstalk(s.endpoint, tube) for s in servers]


def put_like_go(
    server: BeanstalkdServer, tube: str, body: bytes, at_ns: int, *, ttr: int = 5
) -> int:
    """Put a job byte for byte as a Go dq producer does: ``<at_ns>/<body>``, priority 2, TTR 5,
    the delay truncated to whole seconds (so it may become ready before ``at_ns``)."""
    delay = max((at_ns - time.time_ns()) // 1_000_000_000, 0)
    with server.client(tube) as client:
        return client.put(b"%d/%s" % (at_ns, body), priority=2, delay=delay, ttr=ttr)


class Calls:
    """A handler that records the jobs it saw; ``wait(n)`` blocks until it saw n."""

    def __init__(self, result: Callable[[int], object] | None = None) -> None:
        self.jobs: list[Job] = []
        self.times: list[int] = []
        self._cond = threading.Condition()
        self._result = result

    def __call__(self, job: Job) -> Any:
        with self._cond:
            self.jobs.append(job)
            self.times.append(time.time_ns())
            count = len(self.jobs)
            self._cond.notify_all()
        return self._result(count) if self._result else None

    def wait(self, n: int, timeout: float = 10.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.jobs) >= n, timeout):
                raise AssertionError(f"handler ran {len(self.jobs)} times, expected {n}")

    def __len__(self) -> int:
        with self._cond:
            return len(self.jobs)


MakeConsumer = Callable[..., Consumer]


@pytest.fixture
def consumers(redis_url: str) -> Iterator[MakeConsumer]:
    """Make consumers on the session Redis (or ``redis=``); all stopped after the test."""
    made: list[Consumer] = []

    def make(nodes: list[Beanstalk], **options: Any) -> Consumer:
        options.setdefault("redis", redis_url)
        options.setdefault("reconnect_delay", 0.2)
        consumer = Consumer(nodes, **options)
        made.append(consumer)
        return consumer

    try:
        yield make
    finally:
        for consumer in made:
            consumer.stop(timeout=10)
