"""The dq Producer over beanstalkd: replicated delayed puts, and revoke.

Behaves as go-queue's ``dq`` producer: at least two nodes with distinct endpoints; a put goes to
every node when there are up to three, else to three picked at random; it succeeds when at least
two nodes stored the job, and otherwise deletes the copies that were stored and fails. Writes run
in parallel, so one slow node costs its own timeout, not the sum.

Differences from dq, all in the direction of fewer surprises: bad configuration raises
:class:`~rq_sched.dq.errors.DqConfigError` instead of exiting the process; the delay is rounded
up to whole seconds (never early); revoking a copy that is already gone is not an error.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

from rq_sched.clock import Clock
from rq_sched.dq import wire
from rq_sched.dq.beanstalk import Beanstalk, Connection, node_list
from rq_sched.dq.errors import DqConfigError, DqError, JobNotFoundError, PutError, RevokeError
from rq_sched.dq.goconf import DqConf

log = logging.getLogger(__name__)

A = TypeVar("A")
R = TypeVar("R")

MIN_WRITTEN_NODES = 2
REPLICA_NODES = 3


@runtime_checkable
class ProducerProtocol(Protocol):
    """What every dq producer offers, whichever backend stores the jobs."""

    def delay(self, body: bytes, delay: timedelta | float) -> str:
        """Store ``body`` to be consumed after ``delay``; returns the id for :meth:`revoke`."""
        ...

    def at(self, body: bytes, when: datetime) -> str:
        """Store ``body`` to be consumed at ``when`` (aware); returns the id for :meth:`revoke`."""
        ...

    def revoke(self, ids: str) -> None:
        """Delete the job a put returned ``ids`` for, so it is never consumed."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def check_body(body: object) -> bytes:
    """The job body as bytes.

    Raises:
        DqConfigError: ``body`` is not bytes-like.
    """
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    raise DqConfigError(
        f"body must be bytes, got {type(body).__name__}; encode text first, e.g. text.encode()"
    )


def now_ns(clock: Clock | None) -> int:
    """The time in Unix nanoseconds, from ``clock`` when given."""
    return time.time_ns() if clock is None else round(clock.now() * 1_000_000_000)


class Producer:
    """Puts delayed jobs on two or more beanstalkd nodes, as go-queue's ``dq.NewProducer``.

    Example::

        producer = Producer([Beanstalk("10.0.0.1:11300", "jobs"), Beanstalk("10.0.0.2:11300",
        "jobs")])
        ids = producer.delay(b"hello", timedelta(minutes=5))
        producer.revoke(ids)

    Raises:
        DqConfigError: fewer than two nodes, or two nodes with the same endpoint.
    """

    def __init__(
        self,
        nodes: Sequence[Beanstalk],
        *,
        clock: Clock | None = None,
        connect_timeout: float = 2.0,
        io_timeout: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self.nodes = check_nodes(nodes)
        self.clock = clock
        self._rng = rng or random.Random()
        self._conns = [
            Connection(n, connect_timeout=connect_timeout, io_timeout=io_timeout)
            for n in self.nodes
        ]
        self._pool = ThreadPoolExecutor(
            max_workers=min(len(self.nodes), REPLICA_NODES * 2), thread_name_prefix="dq-put"
        )
        self._closed = False

    @classmethod
    def from_conf(cls, conf: DqConf | Mapping[str, Any], **options: Any) -> Self:
        """A producer from go-queue's ``DqConf`` (the dataclass or Go's mapping, any key
        case), as ``dq.NewProducer(c.Beanstalks)``; ``options`` as for the constructor.

        Raises:
            DqConfigError: the config is malformed, or has fewer than two nodes.
        """
        if not isinstance(conf, DqConf):
            conf = DqConf.from_dict(conf)
        return cls(conf.beanstalks, **options)

    def delay(self, body: bytes, delay: timedelta | float) -> str:
        """Put ``body`` to be consumed after ``delay`` (a timedelta or seconds, >= 0).

        Returns:
            The replicas' ids joined by ``,`` (``endpoint/tube/id,...``), for :meth:`revoke`.

        Raises:
            DqConfigError: the body is not bytes, or the delay is negative or too long.
            PutError: fewer than two nodes stored the job (the stored copies were revoked).
            DqError: the producer is closed.
        """
        data = check_body(body)
        delay_ns = wire.duration_ns(delay)
        start = now_ns(self.clock)
        return self._insert(wire.wrap(data, start + delay_ns), wire.delay_seconds(delay_ns))

    def at(self, body: bytes, when: datetime) -> str:
        """Put ``body`` to be consumed at ``when``, an aware datetime not in the past.

        Returns:
            The replicas' ids joined by ``,``, for :meth:`revoke`.

        Raises:
            DqConfigError: the body is not bytes, ``when`` is naive or in the past.
            PutError: fewer than two nodes stored the job (the stored copies were revoked).
            DqError: the producer is closed.
        """
        data = check_body(body)
        target = wire.to_ns(when)
        start = now_ns(self.clock)
        if target < start:
            raise DqConfigError(
                f"at: {when.isoformat()} is in the past; use delay(body, 0) to consume now"
            )
        remaining = target - start
        if remaining > wire.MAX_DELAY_SECONDS * 1_000_000_000:
            raise DqConfigError(f"at: {when.isoformat()} is beyond beanstalkd's longest delay")
        return self._insert(wire.wrap(data, target), wire.delay_seconds(remaining))

    def revoke(self, ids: str) -> None:
        """Delete every replica named in ``ids`` (what :meth:`delay` or :meth:`at` returned).

        Each node deletes the first id naming its own endpoint and tube, as dq does. A replica
        that is already gone (consumed, revoked) or reserved by a consumer right now is skipped.

        Raises:
            DqConfigError: ``ids`` is malformed.
            RevokeError: a node holding a replica could not be reached.
            DqError: the producer is closed.
        """
        refs = wire.split_ids(ids)
        self._check_open()
        tasks = {
            conn.node.endpoint: ref
            for conn in self._conns
            if (ref := _own_ref(conn.node, refs)) is not None
        }
        errors = self._run_all({e: (self._conn(e), ref) for e, ref in tasks.items()}, _delete)
        failed = {e: err for e, err in errors.items() if isinstance(err, Exception)}
        if failed:
            details = "; ".join(f"{e}: {err}" for e, err in failed.items())
            message = f"revoke of {ids!r} failed on {len(failed)} node(s): {details}"
            raise RevokeError(message, failed)

    def close(self) -> None:
        """Close every connection; the producer cannot be used afterwards."""
        self._closed = True
        self._pool.shutdown(wait=True)
        for conn in self._conns:
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _insert(self, wrapped: bytes, delay_s: int) -> str:
        self._check_open()
        conns = self._write_nodes()

        def put(conn: Connection, _: None) -> wire.JobRef:
            job_id = conn.put(
                wrapped, priority=wire.PUT_PRIORITY, delay=delay_s, ttr=wire.TTR_SECONDS
            )
            return wire.JobRef(conn.node.endpoint, conn.node.tube, job_id)

        results = self._run_all({c.node.endpoint: (c, None) for c in conns}, put)
        refs = [r for r in results.values() if isinstance(r, wire.JobRef)]
        if len(refs) >= MIN_WRITTEN_NODES:
            return wire.join_ids(refs)
        failed = {e: r for e, r in results.items() if isinstance(r, Exception)}
        self._undo(refs)
        details = "; ".join(f"{e}: {err}" for e, err in failed.items())
        raise PutError(
            f"only {len(refs)} of {len(conns)} beanstalkd nodes stored the job (at least "
            f"{MIN_WRITTEN_NODES} must); the stored copies were revoked. {details}",
            failed,
        )

    def _undo(self, refs: list[wire.JobRef]) -> None:
        if not refs:
            return
        try:
            self.revoke(wire.join_ids(refs))
        except DqError as exc:
            log.error("dq: could not revoke the copies of a failed put: %s", exc)

    def _write_nodes(self) -> list[Connection]:
        if len(self._conns) <= REPLICA_NODES:
            return list(self._conns)
        return self._rng.sample(self._conns, REPLICA_NODES)

    def _run_all(
        self,
        work: dict[str, tuple[Connection, A]],
        fn: Callable[[Connection, A], R],
    ) -> dict[str, R | DqError]:
        def guarded(conn: Connection, arg: A) -> R | DqError:
            try:
                return fn(conn, arg)
            except DqError as exc:
                return exc

        futures = {e: self._pool.submit(guarded, c, a) for e, (c, a) in work.items()}
        return {e: f.result() for e, f in futures.items()}

    def _conn(self, endpoint: str) -> Connection:
        return next(c for c in self._conns if c.node.endpoint == endpoint)

    def _check_open(self) -> None:
        if self._closed:
            raise DqError("this Producer is closed; make a new one")


def check_nodes(nodes: Sequence[Beanstalk]) -> list[Beanstalk]:
    """Validate a producer's node list: >= 2 :class:`Beanstalk` with distinct endpoints.

    Raises:
        DqConfigError: too few nodes, a duplicate endpoint, or an item that is no Beanstalk.
    """
    found = node_list(nodes)
    if len(found) < MIN_WRITTEN_NODES:
        raise DqConfigError(
            f"a dq producer needs at least {MIN_WRITTEN_NODES} beanstalkd nodes (each job is "
            f"written to {MIN_WRITTEN_NODES} or more), got {len(found)}"
        )
    endpoints = [n.endpoint for n in found]
    duplicates = sorted({e for e in endpoints if endpoints.count(e) > 1})
    if duplicates:
        raise DqConfigError(f"node endpoints must all differ; repeated: {', '.join(duplicates)}")
    return found


def _own_ref(node: Beanstalk, refs: list[wire.JobRef]) -> wire.JobRef | None:
    return next((r for r in refs if r.endpoint == node.endpoint and r.tube == node.tube), None)


def _delete(conn: Connection, ref: wire.JobRef) -> None:
    try:
        conn.delete(ref.job_id)
    except JobNotFoundError:
        log.debug("dq: revoke: %s is already gone or reserved", ref)
