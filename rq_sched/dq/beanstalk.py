"""One beanstalkd node: its address and tube (:class:`Beanstalk`), and a typed, lazily made,
self-healing connection to it (:class:`Connection`) over the greenstalk client.

A connection is opened on first use and dropped after any network error, so the next call
dials again: a node that restarts is picked up without anyone noticing more than one failed
call. Every greenstalk and socket error leaves here as an :mod:`rq_sched.dq.errors` error.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

try:
    import greenstalk
except ImportError as exc:  # an optional dependency: say which extra brings it
    raise ImportError(
        "rq_sched.dq needs the greenstalk package: pip install 'rq_sched[dq]'"
    ) from exc

from rq_sched.dq.errors import (
    BeanstalkError,
    DqConfigError,
    JobNotFoundError,
    NodeUnavailableError,
)

T = TypeVar("T")

_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-+/;.$_()")
_MAX_NAME_BYTES = 200


@dataclass(frozen=True, slots=True)
class Beanstalk:
    """A beanstalkd node and the tube to use on it (go-queue's ``dq.Beanstalk``).

    Raises:
        DqConfigError: the endpoint is not ``host:port`` or the tube is not a valid
            beanstalkd tube name.
    """

    endpoint: str = "127.0.0.1:11300"
    tube: str = "tube"

    def __post_init__(self) -> None:
        parse_endpoint(self.endpoint)
        check_tube(self.tube)

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` to dial."""
        return parse_endpoint(self.endpoint)


def parse_endpoint(endpoint: object) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6 address]:port"``) as ``(host, port)``.

    Raises:
        DqConfigError: it is not of that form.
    """
    if not isinstance(endpoint, str):
        raise DqConfigError(f"endpoint must be a 'host:port' string, got {endpoint!r}")
    host, _, port = endpoint.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in endpoint:
        raise DqConfigError(
            f"endpoint {endpoint!r} is not 'host:port' (for example '127.0.0.1:11300')"
        )
    return host, int(port)


def check_tube(tube: object) -> str:
    """Validate a beanstalkd tube name (letters, digits and ``-+/;.$_()``, up to 200 bytes).

    Raises:
        DqConfigError: the name is empty, too long, or has other characters.
    """
    if not isinstance(tube, str) or not tube:
        raise DqConfigError(f"tube must be a non-empty string, got {tube!r}")
    if len(tube) > _MAX_NAME_BYTES or tube.startswith("-") or not set(tube) <= _NAME_CHARS:
        raise DqConfigError(
            f"tube {tube!r} is not a beanstalkd tube name: use up to {_MAX_NAME_BYTES} "
            "letters, digits and - + / ; . $ _ ( ), not starting with '-'"
        )
    return tube


def node_list(nodes: object) -> list[Beanstalk]:
    """``nodes`` as a list, checking each is a :class:`Beanstalk`.

    Raises:
        DqConfigError: ``nodes`` is not a list of Beanstalk.
    """
    if not isinstance(nodes, list | tuple):
        raise DqConfigError(f"nodes must be a list of Beanstalk(endpoint, tube), got {nodes!r}")
    found: list[Beanstalk] = []
    for node in nodes:
        if not isinstance(node, Beanstalk):
            raise DqConfigError(f"nodes must be Beanstalk(endpoint, tube) items, got {node!r}")
        found.append(node)
    return found


class Connection:
    """A connection to one node, using (for puts) and watching (for reserves) one tube.

    Safe to share between threads: commands are serialized. Made on first use; after a
    network error it is dropped and the next command dials again.
    """

    def __init__(
        self,
        node: Beanstalk,
        *,
        connect_timeout: float = 2.0,
        io_timeout: float = 10.0,
    ) -> None:
        self.node = node
        self.connect_timeout = connect_timeout
        self.io_timeout = io_timeout
        self._lock = threading.RLock()
        self._sock: socket.socket | None = None
        self._client: greenstalk.Client[bytes] | None = None

    def __repr__(self) -> str:
        return f"Connection({self.node.endpoint!r}, tube={self.node.tube!r})"

    @property
    def connected(self) -> bool:
        return self._client is not None

    def put(self, body: bytes, *, priority: int, delay: int, ttr: int) -> int:
        """Put a job into the tube; returns its id."""
        return self._call("put", lambda c: c.put(body, priority=priority, delay=delay, ttr=ttr))

    def reserve(self, timeout: int) -> tuple[int, bytes] | None:
        """Reserve a ready job, waiting up to ``timeout`` seconds; None when none came."""

        def reserve(client: greenstalk.Client[bytes]) -> tuple[int, bytes] | None:
            try:
                job = client.reserve(timeout=timeout)
            except (greenstalk.TimedOutError, greenstalk.DeadlineSoonError):
                return None
            return job.id, job.body

        return self._call("reserve", reserve, extra_wait=timeout)

    def delete(self, job_id: int) -> None:
        """Delete a job (ready, delayed, buried, or reserved by this connection)."""
        self._call("delete", lambda c: c.delete(job_id))

    def release(self, job_id: int, *, priority: int, delay: int) -> None:
        """Give a reserved job back, ready after ``delay`` seconds."""
        self._call("release", lambda c: c.release(_job(job_id), priority=priority, delay=delay))

    def bury(self, job_id: int, *, priority: int) -> None:
        """Bury a reserved job (beanstalkd's dead letter state, until kicked)."""
        self._call("bury", lambda c: c.bury(_job(job_id), priority=priority))

    def touch(self, job_id: int) -> None:
        """Ask for more time (a new TTR) on a job this connection reserved."""
        self._call("touch", lambda c: c.touch(_job(job_id)))

    def stats_job(self, job_id: int) -> dict[str, Any]:
        """beanstalkd's ``stats-job`` (state, pri, delay, ttr, reserves, releases, ...)."""
        return self._call("stats-job", lambda c: dict(c.stats_job(job_id)))

    def stats_tube(self) -> dict[str, Any]:
        """beanstalkd's ``stats-tube`` for this connection's tube (just the name if unknown)."""

        def stats(client: greenstalk.Client[bytes]) -> dict[str, Any]:
            try:
                return dict(client.stats_tube(self.node.tube))
            except greenstalk.NotFoundError:
                return {"name": self.node.tube}

        return self._call("stats-tube", stats)

    def close(self) -> None:
        """Close the socket (the next command opens a new one)."""
        with self._lock:
            self._drop()

    def _call(
        self,
        name: str,
        command: Callable[[greenstalk.Client[bytes]], T],
        extra_wait: float = 0.0,
    ) -> T:
        """Run ``command`` on the connection, translating errors. A command that fails with a
        network error on a connection made earlier is tried once more on a new one: that is
        how a node restart shows up, and the command never reached the new server."""
        with self._lock:
            reused = self._client is not None
            try:
                return self._once(name, command, extra_wait)
            except NodeUnavailableError:
                if not reused:
                    raise
            return self._once(name, command, extra_wait)

    def _once(
        self, name: str, command: Callable[[greenstalk.Client[bytes]], T], extra_wait: float
    ) -> T:
        client = self._connect()
        assert self._sock is not None
        self._sock.settimeout(self.io_timeout + extra_wait)
        try:
            return command(client)
        except greenstalk.NotFoundError as exc:
            raise JobNotFoundError(
                f"beanstalkd at {self.node.endpoint} has no such job for {name} (it was "
                "deleted, or another connection has it reserved)",
                "NOT_FOUND",
            ) from exc
        except greenstalk.Error as exc:
            if not isinstance(exc, greenstalk.BeanstalkdError):
                self._drop()  # an unknown reply: the stream may be out of step
            reply = type(exc).__name__.removesuffix("Error").upper()
            raise BeanstalkError(
                f"beanstalkd at {self.node.endpoint} refused {name}: {reply} {exc}", reply
            ) from exc
        except OSError as exc:
            self._drop()
            raise self._unavailable(name, exc) from exc

    def _connect(self) -> greenstalk.Client[bytes]:
        if self._client is not None:
            return self._client
        sock: socket.socket | None = None
        try:
            sock = socket.create_connection(self.node.address, timeout=self.connect_timeout)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.settimeout(self.io_timeout)
            tube = self.node.tube
            client = greenstalk.Client(sock, encoding=None, use=tube, watch=tube)
        except OSError as exc:
            if sock is not None:
                sock.close()
            raise self._unavailable("connect", exc) from exc
        self._sock, self._client = sock, client
        return client

    def _drop(self) -> None:
        client, self._client, self._sock = self._client, None, None
        if client is not None:
            with suppress(OSError):
                client.close()

    def _unavailable(self, name: str, exc: BaseException) -> NodeUnavailableError:
        return NodeUnavailableError(
            f"beanstalkd at {self.node.endpoint} is unreachable ({name}: {exc or type(exc)}); "
            "is it running and is the endpoint right?"
        )


def _job(job_id: int) -> greenstalk.Job[bytes]:
    return greenstalk.Job(job_id, b"")
