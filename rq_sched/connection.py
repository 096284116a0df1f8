"""Making Redis connections from URLs, and the one place where redis-py failures become
rq_sched errors (:func:`translate_errors`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
import redis.exceptions
from redis import Redis

from rq_sched.errors import RedisUnavailableError, WriteRefusedError, WrongKeyTypeError
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


REDIS_DOWN: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
"""The redis-py errors that mean "Redis is down or unreachable" (not "Redis said no")."""


def unavailable(
    exc: BaseException, client: object, *, writing: bool = False
) -> RedisUnavailableError:
    """The :class:`RedisUnavailableError` for ``exc``, naming where ``client`` points."""
    advice = (
        " If the connection dropped mid-call, the write may or may not have happened. An enqueue "
        "with an explicit task_id is safe to retry: if the first attempt was written, the retry "
        "raises TaskIdConflictError instead of adding a second task, as long as that task is live "
        "or kept as completed (retention=)."
        if writing
        else ""
    )
    return RedisUnavailableError(
        f"cannot talk to Redis at {describe(client)} ({exc}). Is redis-server running and the "
        f"URL right? `rq-sched dev` starts a private one.{advice}"
    )


def refused(exc: BaseException, what: str) -> WriteRefusedError:
    """The :class:`WriteRefusedError` for a write of ``what`` that Redis answered with ``exc``."""
    return WriteRefusedError(
        f"Redis refused to enqueue {what}: {exc}. Nothing was written for it; "
        "check the Redis server (maxmemory, ACLs) and retry."
    )


@contextmanager
def translate_errors(client: object, *, writing: str | None = None) -> Iterator[None]:
    """The one translation of redis-py failures into rq_sched errors.

    Connection and timeout failures become :class:`RedisUnavailableError`. With ``writing``
    (what is being written, e.g. ``"task 'abc'"``), an error reply becomes
    :class:`WriteRefusedError` and the unavailable message adds the idempotent-retry advice;
    without it, error replies pass through unchanged, except WRONGTYPE, which always becomes
    :class:`WrongKeyTypeError` (data someone else wrote, named as such).
    """
    try:
        yield
    except REDIS_DOWN as exc:
        raise unavailable(exc, client, writing=writing is not None) from exc
    except redis.exceptions.ResponseError as exc:
        if "WRONGTYPE" in str(exc):  # also inside "Command # n ... of pipeline caused error"
            raise WrongKeyTypeError(
                f"Redis at {describe(client)} holds a key of the wrong type where rq_sched keeps "
                f"its data ({exc}); it was not written by rq_sched. Find it with redis-cli "
                "(TYPE <key>) and delete or rename it."
            ) from exc
        if writing is None:
            raise
        raise refused(exc, writing) from exc
