"""Making Redis connections from URLs, and the one place where redis-py failures become
rq_sched errors (:func:`translate_errors`).

Three topologies, one ``url`` argument everywhere (clients, worker, scheduler, inspector, CLI,
dashboard, ``rq_sched.dq``):

- one Redis: ``redis://[[user]:password@]host:port/db``, ``rediss://...``, ``unix:///path``;
- Redis Cluster: any node's ``redis://`` URL plus ``cluster=True`` (``--cluster``);
- Redis Sentinel: ``redis+sentinel://[[user]:password@]host1:26379,host2:26379/<master>/<db>``
  with optional ``?sentinel_password=...&sentinel_username=...`` when the sentinels themselves
  ask for a password. The user and password before ``@`` are the master's (``requirepass`` /
  ACL), as in a ``redis://`` URL; a port may be left out (26379). redis-py's Sentinel support
  asks the sentinels for the current master before each new connection, and turns a reply
  from a demoted master (READONLY, UNBLOCKED) into a connection error, so a client made here
  follows a failover on its next call.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.exceptions
import redis.sentinel
from redis import Redis

from rq_sched.errors import (
    RedisUnavailableError,
    ValidationError,
    WriteRefusedError,
    WrongKeyTypeError,
)
from rq_sched.scripts import AnyAsyncRedis, SyncRedis

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379
URL_FORMS = (
    "redis://[[user]:password@]host:port/db, rediss://..., unix:///path/to/redis.sock, or "
    "redis+sentinel://[[user]:password@]host1:26379,host2:26379/<master name>/<db>"
)


@dataclass(frozen=True, slots=True)
class SentinelURL:
    """A parsed ``redis+sentinel://`` URL (see the module docstring for the form)."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    def master_kwargs(self) -> dict[str, Any]:
        """Connection options of the master (and of every replica it is replaced by)."""
        found: dict[str, Any] = {"db": self.db}
        if self.username is not None:
            found["username"] = self.username
        if self.password is not None:
            found["password"] = self.password
        return found

    def sentinel_kwargs(self, options: dict[str, Any]) -> dict[str, Any]:
        """Connection options of the sentinels: the ``socket_*`` ones of ``options``, plus
        the sentinels' own credentials."""
        found = {k: v for k, v in options.items() if k.startswith("socket_")}
        if self.sentinel_username is not None:
            found["username"] = self.sentinel_username
        if self.sentinel_password is not None:
            found["password"] = self.sentinel_password
        return found


def is_sentinel_url(url: object) -> bool:
    """True for a ``redis+sentinel://`` URL."""
    return isinstance(url, str) and url.lower().startswith(SENTINEL_SCHEME + "://")


def parse_sentinel_url(url: str) -> SentinelURL:
    """Parse ``redis+sentinel://[[user]:password@]host[:port],.../<master>[/<db>][?options]``.

    Raises:
        ValidationError: the URL is malformed; the message says which part and the form.
    """
    form = "redis+sentinel://[[user]:password@]host1:26379,host2:26379/<master name>/<db>"

    def bad(why: str) -> ValidationError:
        return ValidationError(f"bad Sentinel URL {_redact(url)!r}: {why}; expected {form}")

    if not is_sentinel_url(url):
        raise bad(f"the scheme must be {SENTINEL_SCHEME}://")
    rest = url[len(SENTINEL_SCHEME) + 3 :]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host_port(part, bad) for part in hosts.split(","))
    parts = path.split("/")
    if parts and parts[-1] == "":
        parts.pop()  # a trailing slash
    if not parts or not parts[0]:
        raise bad("no master name after the sentinel addresses")
    if len(parts) > 2:
        raise bad("too many path parts (only /<master name>/<db>)")
    db_text = parts[1] if len(parts) == 2 else "0"
    if not db_text.isdigit():
        raise bad(f"the database must be a number >= 0, got {db_text!r}")
    options = parse_qs(query, keep_blank_values=True, strict_parsing=False) if query else {}
    unknown = sorted(set(options) - {"sentinel_username", "sentinel_password"})
    if unknown:
        raise bad(f"unknown option(s) {', '.join(unknown)} (known: sentinel_username, "
                  "sentinel_password)")  # fmt: skip
    return SentinelURL(
        sentinels=sentinels,
        master=unquote(parts[0]),
        db=int(db_text),
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_username", [None])[-1],
        sentinel_password=options.get("sentinel_password", [None])[-1],
    )


def _host_port(text: str, bad: Callable[[str], ValidationError]) -> tuple[str, int]:
    if not text:
        raise bad("a sentinel address is empty (write host:port,host:port)")
    if text.startswith("["):  # [IPv6]:port
        host, close, tail = text[1:].partition("]")
        if not close or (tail and not tail.startswith(":")):
            raise bad(f"bad IPv6 sentinel address {text!r} (write [::1]:26379)")
        port_text = tail[1:]
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise bad(f"sentinel address {text!r} has no host")
    if not port_text:
        return host, SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise bad(f"sentinel address {text!r} has a bad port (1-65535)")
    return host, int(port_text)


def _redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, for error messages."""
    scheme, sep, rest = url.partition("://")
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    if sep and "@" in netloc:
        user = netloc.rpartition("@")[0].partition(":")[0]
        url = f"{scheme}://{user}:***@{rest[len(netloc.rpartition('@')[0]) + 1 :]}"
    return re.sub(r"(sentinel_password=)[^&]*", r"\1***", url)


MASTER_CHECK_INTERVAL = 1.0
"""Seconds between two checks of a Sentinel pool's master address (see :class:`FollowingPool`)."""


class FollowingPool(redis.sentinel.SentinelConnectionPool):
    """A Sentinel connection pool that notices a moved master even on pooled connections.

    redis-py asks the sentinels for the master only when it opens a connection, so a pooled
    connection keeps talking to a demoted master until that master refuses a write. After a
    ``SENTINEL FAILOVER`` Redis 7 leaves the old master a master for about 10 s, and writes sent
    there in that window are lost when it turns replica. So at most once per
    :data:`MASTER_CHECK_INTERVAL`, taking a connection first asks the sentinels where the master
    is; when it moved, every connection of the pool is closed (in-use ones too: a blocking wait
    on the old master would not end otherwise) and new ones go to the new master.
    """

    _next_check = 0.0

    def get_connection(self, *args: Any, **options: Any) -> Any:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + MASTER_CHECK_INTERVAL
            self.follow_master()
        return super().get_connection(*args, **options)

    def follow_master(self) -> bool:
        """Ask the sentinels for the master; True (and the pool closed) when it moved."""
        before = self.master_address
        try:
            after = self.get_master_address()  # type: ignore[no-untyped-call]
        except redis.exceptions.RedisError:
            return False  # no sentinel answers: the command itself will tell
        if before is None or after == before:
            return False
        self.disconnect(inuse_connections=True)
        return True


class AsyncFollowingPool(redis.asyncio.sentinel.SentinelConnectionPool):
    """The asyncio :class:`FollowingPool`."""

    _next_check = 0.0

    async def get_connection(self, *args: Any, **options: Any) -> Any:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + MASTER_CHECK_INTERVAL
            await self.follow_master()
        return await super().get_connection(*args, **options)  # type: ignore[no-untyped-call]

    async def follow_master(self) -> bool:
        """Ask the sentinels for the master; True (and the pool closed) when it moved."""
        before = self.master_address
        try:
            after = await self.get_master_address()  # type: ignore[no-untyped-call]
        except redis.exceptions.RedisError:
            return False
        if before is None or after == before:
            return False
        await self.disconnect(inuse_connections=True)
        return True


class SentinelRedis(Redis):
    """A sync client of a Sentinel-managed master (its pool a :class:`FollowingPool`);
    :meth:`close` also closes the connections to the sentinels."""

    sentinel_manager: redis.sentinel.Sentinel | None = None
    master_name: str = ""

    def close(self) -> None:
        super().close()
        if self.sentinel_manager is not None:
            for sentinel in self.sentinel_manager.sentinels:  # Sentinel.close(): redis-py >= 7
                sentinel.close()


class AsyncSentinelRedis(redis.asyncio.Redis):
    """An asyncio client of a Sentinel-managed master (its pool an
    :class:`AsyncFollowingPool`); :meth:`aclose` also closes the connections to the sentinels."""

    sentinel_manager: redis.asyncio.sentinel.Sentinel | None = None
    master_name: str = ""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel_manager is not None:
            for sentinel in self.sentinel_manager.sentinels:
                await sentinel.aclose()


def connect(url: str, *, cluster: bool = False, **kwargs: Any) -> SyncRedis:
    """A sync client for ``url`` (``redis://``, ``rediss://``, ``unix://``, or
    ``redis+sentinel://``; see the module docstring).

    ``cluster=True`` makes a Redis Cluster client that discovers the other nodes from this one.

    Raises:
        ValidationError: the URL is malformed, or a Sentinel URL comes with ``cluster=True``.
    """
    if is_sentinel_url(url):
        found = _sentinel_only(url, cluster)
        manager = redis.sentinel.Sentinel(
            found.sentinels, sentinel_kwargs=found.sentinel_kwargs(kwargs)
        )
        client: SentinelRedis = manager.master_for(
            found.master,
            redis_class=SentinelRedis,
            connection_pool_class=FollowingPool,
            **found.master_kwargs(),
            **kwargs,
        )
        client.sentinel_manager, client.master_name = manager, found.master
        return client
    with _bad_url(url):
        if cluster:
            return redis.cluster.RedisCluster.from_url(url, **kwargs)
        return Redis.from_url(url, **kwargs)


def aconnect(url: str, *, cluster: bool = False, **kwargs: Any) -> AnyAsyncRedis:
    """An asyncio client for ``url``; see :func:`connect`."""
    if is_sentinel_url(url):
        found = _sentinel_only(url, cluster)
        manager = redis.asyncio.sentinel.Sentinel(
            found.sentinels, sentinel_kwargs=found.sentinel_kwargs(kwargs)
        )
        aclient: AsyncSentinelRedis = manager.master_for(
            found.master,
            redis_class=AsyncSentinelRedis,
            connection_pool_class=AsyncFollowingPool,
            **found.master_kwargs(),
            **kwargs,
        )
        aclient.sentinel_manager, aclient.master_name = manager, found.master
        return aclient
    with _bad_url(url):
        if cluster:
            return redis.asyncio.cluster.RedisCluster.from_url(url, **kwargs)
        return redis.asyncio.Redis.from_url(url, **kwargs)


def _sentinel_only(url: str, cluster: bool) -> SentinelURL:
    if cluster:
        raise ValidationError(
            "a redis+sentinel:// URL names a Sentinel-managed master, not a Redis Cluster: "
            "drop cluster=True (--cluster), or give a cluster node's redis:// URL"
        )
    return parse_sentinel_url(url)


@contextmanager
def _bad_url(url: str) -> Iterator[None]:
    # redis-py parses the URL lazily but rejects a bad scheme or port at once, as ValueError.
    try:
        yield
    except ValueError as exc:
        raise ValidationError(
            f"bad Redis URL {_redact(str(url))!r} ({exc}); expected {URL_FORMS}"
        ) from exc


def describe(client: object) -> str:
    """Where a client points, for error messages."""
    pool = getattr(client, "connection_pool", None)
    service = getattr(pool, "service_name", None)
    if service is not None:
        address = getattr(pool, "master_address", None)
        master = f"Sentinel master {service!r}"
        return f"{address[0]}:{address[1]} ({master})" if address else f"the {master}"
    kwargs = getattr(pool, "connection_kwargs", {}) if pool is not None else {}
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    if "host" in kwargs:
        return f"{kwargs['host']}:{kwargs.get('port', 6379)}"
    return "the Redis cluster" if "Cluster" in type(client).__name__ else "Redis"


REDIS_DOWN: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterError,
)
"""The redis-py errors that mean "Redis is down or unreachable" (not "Redis said no").
ClusterError is redis-py giving up on a cluster ("TTL exhausted": redirections went on too
long while a slot migrated or a failover ran); like a dropped connection, the call may or may
not have run."""


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
    hint = (
        "If a Sentinel failover is under way, this ends once a replica is promoted (seconds); "
        "else check that the sentinels are up and the master name is right."
        if getattr(getattr(client, "connection_pool", None), "service_name", None) is not None
        else "Is redis-server running and the URL right? `rq-sched dev` starts a private one."
    )
    return RedisUnavailableError(
        f"cannot talk to Redis at {describe(client)} ({exc}). {hint}{advice}"
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
