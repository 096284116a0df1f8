"""The dq Producer API on rq_sched's Redis backend, so a team can switch backends by config.

``delay`` / ``at`` enqueue a task of one type into one queue with ``process_in`` /
``process_at``, the body bytes as its payload; a worker's handler for that type receives them.
Ids look like ``redis/<queue>/<task id>`` (several may be joined by ``,``), so they are never
mistaken for beanstalkd ids; ``revoke`` deletes those tasks. :class:`RedisProducer` runs on a
:class:`~rq_sched.client.Client`, :class:`AsyncRedisProducer` on an
:class:`~rq_sched.client.AsyncClient`, with the same checks, ids and errors.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

from rq_sched import ops, scripts
from rq_sched.client import AsyncClient, Client
from rq_sched.clock import Clock
from rq_sched.connection import translate_errors
from rq_sched.dq import wire
from rq_sched.dq.errors import DqConfigError, DqError
from rq_sched.dq.producer import check_body
from rq_sched.errors import TaskNotFoundError, TaskStateError, raise_for_code
from rq_sched.inspector.inspector import Inspector
from rq_sched.keys import QueueKeys
from rq_sched.message import decode
from rq_sched.options import check_queue

ID_PREFIX = "redis"


class RedisProducer:
    """The dq producer protocol over an rq_sched :class:`~rq_sched.client.Client`.

    Args:
        client: the rq_sched client to enqueue with.
        type: the task type every job gets (selects the worker's handler).
        queue: the queue the tasks go to.
        close_client: whether :meth:`close` closes ``client`` too.

    Raises:
        DqConfigError: empty type or a bad queue name.
    """

    def __init__(
        self, client: Client, *, type: str, queue: str = "default", close_client: bool = False
    ) -> None:
        self.client = client
        self.type = _check_type(type)
        self.queue = check_queue(queue)
        self.close_client = close_client
        # The Client keeps its namespace and clock private; revoke and at() must agree with it.
        self._inspector = Inspector(client.redis, namespace=client.namespace)

    def delay(self, body: bytes, delay: timedelta | float) -> str:
        """Enqueue ``body`` as a task processed after ``delay`` (timedelta or seconds, >= 0).

        Returns:
            ``redis/<queue>/<task id>``.

        Raises:
            DqConfigError: the body is not bytes, or the delay is negative.
            RqSchedError: the enqueue failed (e.g. RedisUnavailableError).
        """
        data = check_body(body)
        delay_ns = wire.duration_ns(delay)
        info = self.client.enqueue(
            self.type, data, queue=self.queue, process_in=delay_ns / 1_000_000_000
        )
        return self._id(info.id)

    def at(self, body: bytes, when: datetime) -> str:
        """Enqueue ``body`` as a task processed at ``when`` (aware, not in the past).

        Returns:
            ``redis/<queue>/<task id>``.

        Raises:
            DqConfigError: the body is not bytes, ``when`` is naive or in the past.
            RqSchedError: the enqueue failed (e.g. RedisUnavailableError).
        """
        data = check_body(body)
        info = self.client.enqueue(
            self.type, data, queue=self.queue, process_at=_future(when, self.client.clock)
        )
        return self._id(info.id)

    def revoke(self, ids: str) -> None:
        """Delete the tasks named in ``ids``; tasks already gone are skipped.

        Raises:
            DqConfigError: ``ids`` is not what this producer returns.
            DqError: a task is running already and cannot be revoked.
            RqSchedError: Redis failed (e.g. RedisUnavailableError).
        """
        for queue, task_id in _parse_ids(ids):
            try:
                self._inspector.delete_task(queue, task_id)
            except TaskNotFoundError:
                continue
            except TaskStateError as exc:
                raise DqError(f"cannot revoke {ID_PREFIX}/{queue}/{task_id}: {exc}") from exc

    def close(self) -> None:
        """Close the client when this producer owns it (``close_client=True``)."""
        if self.close_client:
            self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _id(self, task_id: str) -> str:
        return f"{ID_PREFIX}/{self.queue}/{task_id}"


class AsyncRedisProducer:
    """:class:`RedisProducer` for asyncio code, on an :class:`~rq_sched.client.AsyncClient`.

    Args:
        client: the rq_sched async client to enqueue with.
        type: the task type every job gets (selects the worker's handler).
        queue: the queue the tasks go to.
        close_client: whether :meth:`close` closes ``client`` too.

    Raises:
        DqConfigError: empty type or a bad queue name.
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        type: str,
        queue: str = "default",
        close_client: bool = False,
    ) -> None:
        self.client = client
        self.type = _check_type(type)
        self.queue = check_queue(queue)
        self.close_client = close_client

    async def delay(self, body: bytes, delay: timedelta | float) -> str:
        """See :meth:`RedisProducer.delay`.

        Raises:
            DqConfigError: the body is not bytes, or the delay is negative.
            RqSchedError: the enqueue failed (e.g. RedisUnavailableError).
        """
        data = check_body(body)
        delay_ns = wire.duration_ns(delay)
        info = await self.client.enqueue(
            self.type, data, queue=self.queue, process_in=delay_ns / 1_000_000_000
        )
        return f"{ID_PREFIX}/{self.queue}/{info.id}"

    async def at(self, body: bytes, when: datetime) -> str:
        """See :meth:`RedisProducer.at`.

        Raises:
            DqConfigError: the body is not bytes, ``when`` is naive or in the past.
            RqSchedError: the enqueue failed (e.g. RedisUnavailableError).
        """
        data = check_body(body)
        info = await self.client.enqueue(
            self.type, data, queue=self.queue, process_at=_future(when, self.client.clock)
        )
        return f"{ID_PREFIX}/{self.queue}/{info.id}"

    async def revoke(self, ids: str) -> None:
        """See :meth:`RedisProducer.revoke`: the same deletion script, awaited.

        Raises:
            DqConfigError: ``ids`` is not what this producer returns.
            DqError: a task is running already and cannot be revoked.
            RqSchedError: Redis failed (e.g. RedisUnavailableError).
        """
        for queue, task_id in _parse_ids(ids):
            keys = QueueKeys(self.client.namespace, queue)
            redis = self.client.redis
            with translate_errors(redis):
                data = await redis.hget(keys.msg, task_id)
                if data is None:
                    continue
                unique = decode(data, task_id=task_id).unique  # type: ignore[arg-type]
                reply = await scripts.arun(redis, *ops.delete(keys, task_id, unique))
            try:
                if isinstance(reply, int):
                    raise_for_code(reply, queue=queue, task_id=task_id)
            except TaskNotFoundError:
                continue
            except TaskStateError as exc:
                raise DqError(f"cannot revoke {ID_PREFIX}/{queue}/{task_id}: {exc}") from exc

    async def close(self) -> None:
        """Close the client when this producer owns it (``close_client=True``)."""
        if self.close_client:
            await self.client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _check_type(type: object) -> str:
    if not isinstance(type, str) or not type:
        raise DqConfigError(f"type must be a non-empty task type, got {type!r}")
    return type


def _future(when: datetime, clock: Clock) -> datetime:
    """``when`` in UTC, refusing naive and past times as the beanstalkd producer does."""
    target = wire.to_ns(when)
    if target < round(clock.now() * 1_000_000_000):
        raise DqConfigError(
            f"at: {when.isoformat()} is in the past; use delay(body, 0) to process now"
        )
    return when.astimezone(UTC)


def _parse_ids(ids: str) -> list[tuple[str, str]]:
    if not isinstance(ids, str) or not ids.strip():
        raise DqConfigError(f"ids must be the non-empty string a put returned, got {ids!r}")
    parsed = []
    for part in ids.split(wire.ID_SEP):
        prefix, _, rest = part.partition("/")
        queue, _, task_id = rest.rpartition("/")
        if prefix != ID_PREFIX or not queue or not task_id:
            raise DqConfigError(
                f"id {part!r} is not 'redis/<queue>/<task id>' as RedisProducer returns; "
                "beanstalkd ids go to a beanstalkd Producer"
            )
        parsed.append((queue, task_id))
    return parsed
