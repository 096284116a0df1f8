"""Making Redis connections from URLs, and turning connection failures into rq_sched errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
import redis.exceptions
from redis import Redis

from rq_sched.errors import RedisUnavailableError
from rq_sched.scripts import AnyAsyncRedis, SyncRedis


def connect(url: str, *, cluster: bool = False, **kwargs: Any) -> SyncRedis:
    """A sync client for ``url`` (``redis://``, ``rediss://``, ``unix://``).

    ``cluster=True`` makes a Redis Cluster client that discovers the other nodes from this one.
    """
    if cluster:
        return redis.cluster.RedisCluster.from_url(url, **kwargs)
    return Redis.from_url(url, **kwargs)


def aconnect(url: str, *, cluster: bool = False, **kwargs: Any) -> AnyAsyncRedis:
    """An asyncio client for ``url``; see :func:`connect`."""
    if cluster:
        return redis.asyncio.cluster.RedisCluster.from_url(url, **kwargs)
    return redis.asyncio.Redis.from_url(url, **kwargs)


def describe(client: object) -> str:
    """Where a client points, for error messages."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", {}) if pool is not None else {}
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    if "host" in kwargs:
        return f"{kwargs['host']}:{kwargs.get('port', 6379)}"
    return "the Redis cluster" if "Cluster" in type(client).__name__ else "Redis"


def unavailable(exc: BaseException, client: object) -> RedisUnavailableError:
    return RedisUnavailableError(
        f"cannot talk to Redis at {describe(client)} ({exc}). Is redis-server running and the "
        "URL right? `rq-sched dev` starts a private one. If the connection dropped mid-call, the "
        "write may or may not have happened. An enqueue with an explicit task_id is safe to retry: "
        "if the first attempt was written, the retry raises TaskIdConflictError instead of adding "
        "a second task, as long as that task is live or kept as completed (retention=)."
    )


@contextmanager
def translate_errors(client: object) -> Iterator[None]:
    """Raise :class:`RedisUnavailableError` for connection and timeout failures."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise unavailable(exc, client) from exc
