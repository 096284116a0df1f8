"""Shared fixtures: real redis-server processes on free loopback ports, a random namespace per
test, clients and a manual clock. Set RQ_SCHED_TEST_REDIS_URL to use an external Redis instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from rq_sched import Client, Inspector, ManualClock
from rq_sched.local_redis import RedisCluster, RedisServer


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a private redis-server shared by the session (tests isolate by namespace)."""
    external = os.environ.get("RQ_SCHED_TEST_REDIS_URL")
    if external:
        yield external
        return
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def fresh_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, with AOF, for tests that restart or kill it."""
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    try:
        yield server
    finally:
        server.stop(kill=True)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real 3-master Redis Cluster on loopback."""
    nodes = RedisCluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def namespace() -> str:
    """A random key namespace, so tests share a server without flushing it."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_url)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def client(r: redis.Redis, namespace: str, clock: ManualClock) -> Client:
    return Client(r, namespace=namespace, clock=clock)


@pytest.fixture
def inspector(r: redis.Redis, namespace: str, clock: ManualClock) -> Inspector:
    return Inspector(r, namespace=namespace, clock=clock)
