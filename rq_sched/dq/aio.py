"""asyncio faces of the dq bridge: :class:`AsyncConsumer` awaits ``async def`` handlers on
the caller's event loop; :class:`AsyncProducer` is the beanstalkd producer, awaited.

The beanstalkd protocol has no asyncio client worth depending on, and the consumer's decision
table (:mod:`rq_sched.dq.handling`) must be the same for both faces, so the protocol side runs
where it runs for :class:`~rq_sched.dq.consumer.Consumer`, in worker threads with blocking
connections, and only the handler call crosses to the loop (``run_coroutine_threadsafe``).
The worker keeps touching the job while the coroutine runs; a handler ``timeout`` cancels it.
:class:`AsyncProducer` likewise runs the one producer implementation in a thread per call, so
ids, replication, revoke and errors are the same as :class:`~rq_sched.dq.producer.Producer`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, Self

from rq_sched.dq.beanstalk import Beanstalk
from rq_sched.dq.consumer import Consumer
from rq_sched.dq.errors import DqConfigError
from rq_sched.dq.goconf import DqConf
from rq_sched.dq.handling import (
    AsyncHandler,
    Backoff,
    HandlerResult,
    Job,
    Outcome,
    is_async_callable,
)
from rq_sched.dq.producer import Producer
from rq_sched.scripts import SyncRedis


class AsyncProducerProtocol(Protocol):
    """What every asyncio dq producer offers (:class:`AsyncProducer`,
    :class:`~rq_sched.dq.redis_producer.AsyncRedisProducer`)."""

    async def delay(self, body: bytes, delay: timedelta | float) -> str:
        """Store ``body`` to be consumed after ``delay``; returns the id for revoke."""
        ...

    async def at(self, body: bytes, when: datetime) -> str:
        """Store ``body`` to be consumed at ``when`` (aware); returns the id for revoke."""
        ...

    async def revoke(self, ids: str) -> None:
        """Delete the job a put returned ``ids`` for."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class AsyncProducer:
    """The beanstalkd :class:`~rq_sched.dq.producer.Producer` for asyncio code: the same
    arguments, ids and errors; each call runs in a worker thread, never blocking the loop.

    Raises:
        DqConfigError: as :class:`~rq_sched.dq.producer.Producer`.
    """

    def __init__(self, nodes: Sequence[Beanstalk], **options: Any) -> None:
        self._sync = Producer(nodes, **options)

    @classmethod
    def from_conf(cls, conf: DqConf | Mapping[str, Any], **options: Any) -> Self:
        """From go-queue's ``DqConf``; see :meth:`Producer.from_conf`.

        Raises:
            DqConfigError: the config is malformed, or has fewer than two nodes.
        """
        if not isinstance(conf, DqConf):
            conf = DqConf.from_dict(conf)
        return cls(conf.beanstalks, **options)

    @property
    def nodes(self) -> list[Beanstalk]:
        return self._sync.nodes

    async def delay(self, body: bytes, delay: timedelta | float) -> str:
        """See :meth:`Producer.delay` (same returns and raises)."""
        return await asyncio.to_thread(self._sync.delay, body, delay)

    async def at(self, body: bytes, when: datetime) -> str:
        """See :meth:`Producer.at` (same returns and raises)."""
        return await asyncio.to_thread(self._sync.at, body, when)

    async def revoke(self, ids: str) -> None:
        """See :meth:`Producer.revoke` (same raises)."""
        await asyncio.to_thread(self._sync.revoke, ids)

    async def close(self) -> None:
        """Close the connections."""
        await asyncio.to_thread(self._sync.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class LoopExecutor(Executor):
    """An executor that runs ``fn(*args)`` as a coroutine on ``loop``, from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(_awaited(fn, *args, **kwargs), self.loop)


async def _awaited(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> object:
    result = fn(*args, **kwargs)
    return await result if isinstance(result, Awaitable) else result


class _LoopConsumer(Consumer):
    """The Consumer with its handlers on an event loop instead of in threads."""

    loop: asyncio.AbstractEventLoop | None = None

    def check_handler(self, handler: object) -> None:
        if not is_async_callable(handler):
            raise DqConfigError(
                f"{handler!r} is not an async def handler; the AsyncConsumer awaits its "
                "handlers: use the Consumer for plain functions, or wrap it in an async def"
            )

    def _make_pool(self, workers: int) -> Executor:
        if self.loop is None:
            raise DqConfigError("the AsyncConsumer is used outside a running event loop")
        return LoopExecutor(self.loop)


class AsyncConsumer:
    """The dq :class:`~rq_sched.dq.consumer.Consumer` for asyncio code: the same options,
    dedup, retries and guarantees, with ``async def`` handlers awaited on the running loop.

    Example::

        async with AsyncConsumer(nodes, redis="redis://127.0.0.1:6379/0") as consumer:
            consumer.register("emails", send_email)  # async def send_email(job) -> None
            await consumer.start()
            ...
        # leaving the block stops it (running handlers finish first)

    Args:
        nodes: the beanstalkd nodes.
        redis: Redis URL or sync client for the dedup keys (used from the worker threads).
        handler: optional async handler for the nodes' own tubes.
        options: every other keyword of :class:`~rq_sched.dq.consumer.Consumer`.

    Raises:
        DqConfigError: as :class:`~rq_sched.dq.consumer.Consumer`; a handler is not async.
    """

    def __init__(
        self,
        nodes: Sequence[Beanstalk],
        *,
        redis: str | SyncRedis,
        handler: AsyncHandler | None = None,
        **options: Any,
    ) -> None:
        # The LoopExecutor awaits what the handler returns, hence the async handler type here.
        self._sync = _LoopConsumer(
            nodes,
            redis=redis,
            handler=handler,  # type: ignore[arg-type]
            **options,
        )

    @classmethod
    def from_conf(cls, conf: DqConf | Mapping[str, Any], **options: Any) -> Self:
        """:meth:`Consumer.from_conf` for the AsyncConsumer.

        Raises:
            DqConfigError: the config is malformed or has no Redis section.
        """
        if not isinstance(conf, DqConf):
            conf = DqConf.from_dict(conf)
        client = conf.redis_conf().connect()
        try:
            consumer = cls(list(conf.beanstalks), redis=client, **options)
        except BaseException:
            client.close()
            raise
        consumer._sync._owns_redis = True  # made here, so closed by stop()
        return consumer

    @property
    def nodes(self) -> list[Beanstalk]:
        return self._sync.nodes

    def register(
        self,
        tube: str,
        handler: AsyncHandler,
        *,
        repeat_every: timedelta | float | None = None,
        max_failures: int | None = None,
        backoff: Backoff | None = None,
        concurrency: int | None = None,
        timeout: timedelta | float | None = None,
        **options: Any,
    ) -> None:
        """:meth:`Consumer.register` for an ``async def`` handler; a handler past
        ``timeout`` is cancelled and its job retried.

        Raises:
            DqConfigError: as :meth:`Consumer.register`, or ``handler`` is not async.
        """
        self._sync.register(
            tube,
            handler,  # type: ignore[arg-type]  # awaited by the LoopExecutor
            repeat_every=repeat_every,
            max_failures=max_failures,
            backoff=backoff,
            concurrency=concurrency,
            timeout=timeout,
            **options,
        )

    async def start(self) -> None:
        """Start the worker threads; handlers run on the current loop.

        Raises:
            DqConfigError: no handler is registered, or it already started.
        """
        self._sync.loop = asyncio.get_running_loop()
        self._sync.start()

    async def stop(self, timeout: float | None = 30.0) -> bool:
        """Stop reserving, let running handlers finish, close connections.

        Returns:
            True when every worker ended within ``timeout``.
        """
        return await asyncio.to_thread(self._sync.stop, timeout)

    async def run_once(self, timeout: int = 0) -> list[Outcome]:
        """One round (one reserve per node and tube); see :meth:`Consumer.run_once`.

        Raises:
            DqConfigError: no handler is registered.
        """
        self._sync.loop = asyncio.get_running_loop()
        return await asyncio.to_thread(self._sync.run_once, timeout)

    async def consume(self, handler: Callable[[bytes], Awaitable[HandlerResult]]) -> None:
        """go-queue's ``Consume(handler)``: await ``handler(body)`` for the jobs of the nodes'
        own tubes until :meth:`stop` is called or the calling task is cancelled.

        Raises:
            DqConfigError: ``handler`` is not async, or the consumer already started.
        """
        self._sync.check_handler(handler)

        async def on_job(job: Job) -> HandlerResult:
            return await handler(job.body)

        for tube in dict.fromkeys(n.tube for n in self._sync.nodes):
            self.register(tube, on_job)
        await self.start()
        try:
            await asyncio.to_thread(self._sync.wait)
        finally:
            await self.stop()

    def counts(self) -> dict[Outcome, int]:
        """How many reserved jobs ended each way so far."""
        return self._sync.counts()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
