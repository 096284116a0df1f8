"""The producer: ``Client`` (sync) and ``AsyncClient`` (asyncio) enqueue tasks.

Both share :class:`_Producer`, which validates arguments and builds script calls; the two
classes differ only in how they run those calls.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

from rq_sched import ops, scripts
from rq_sched.clock import Clock, SystemClock, to_ms
from rq_sched.connection import aconnect, connect, translate_errors
from rq_sched.errors import RqSchedError, ValidationError, error_for_code, raise_for_code
from rq_sched.keys import DEFAULT_NAMESPACE, GlobalKeys, QueueKeys
from rq_sched.models import NewTask, TaskInfo
from rq_sched.options import DEFAULT_MAX_PAYLOAD_BYTES, Prepared, prepare
from rq_sched.scripts import AnyAsyncRedis, Call, SyncRedis


class EnqueueManyError(RqSchedError):
    """Some tasks of an ``enqueue_many`` call failed; the others were enqueued.

    Attributes:
        results: one entry per task, in order: its :class:`TaskInfo`, or the error it got.
    """

    def __init__(self, results: list[TaskInfo | RqSchedError]) -> None:
        failed = [r for r in results if isinstance(r, RqSchedError)]
        super().__init__(
            f"{len(failed)} of {len(results)} tasks were not enqueued (first: {failed[0]}); "
            "see .results for each task's outcome"
        )
        self.results = results


class _Producer:
    """What both clients share: configuration, validation and building the calls."""

    def __init__(self, *, namespace: str, max_payload_bytes: int, clock: Clock | None) -> None:
        if not namespace or "{" in namespace or "}" in namespace:
            raise ValidationError(f"namespace must be non-empty and brace-free, got {namespace!r}")
        if max_payload_bytes <= 0:
            raise ValidationError("max_payload_bytes must be > 0")
        self.namespace = namespace
        self.max_payload_bytes = max_payload_bytes
        self.clock: Clock = clock or SystemClock()
        self.global_keys = GlobalKeys(namespace)
        self._keys: dict[str, QueueKeys] = {}
        self._registered: set[str] = set()

    def keys(self, queue: str) -> QueueKeys:
        found = self._keys.get(queue)
        if found is None:
            found = self._keys[queue] = QueueKeys(self.namespace, queue)
        return found

    def prepare(self, task_type: str, payload: Any, **options: Any) -> Prepared:
        return prepare(
            task_type,
            payload,
            now_ms=to_ms(self.clock.now()),
            max_payload_bytes=self.max_payload_bytes,
            **options,
        )

    def unregistered(self, queues: Iterable[str]) -> list[str]:
        """Queues this client has not yet added to the registry of queue names."""
        return sorted({q for q in queues if q not in self._registered})

    def plan_many(self, tasks: Sequence[NewTask]) -> tuple[list[Prepared], list[Call], list[int]]:
        """Prepare every task and group them into calls.

        Returns the prepared tasks, the calls, and for each call the index of its first task
        (plain tasks go in per-queue batches; unique ones each take a call of their own).
        """
        prepared = [self.prepare(**_fields(task)) for task in tasks]
        plain: dict[str, list[int]] = defaultdict(list)
        calls: list[Call] = []
        owners: list[list[int]] = []
        for index, task in enumerate(prepared):
            if task.unique_ttl_ms:
                calls.append(ops.enqueue(self.keys(task.queue), task))
                owners.append([index])
            else:
                plain[task.queue].append(index)
        for queue, indexes in plain.items():
            for start in range(0, len(indexes), ops.BATCH_LIMIT):
                chunk = indexes[start : start + ops.BATCH_LIMIT]
                calls.append(ops.enqueue_batch(self.keys(queue), [prepared[i] for i in chunk]))
                owners.append(chunk)
        return prepared, calls, [i for chunk in owners for i in chunk]

    def results_many(
        self, prepared: list[Prepared], order: list[int], raw: list[Any]
    ) -> list[TaskInfo]:
        codes = [code for reply in raw for code in _as_codes(reply)]
        now_ms = to_ms(self.clock.now())
        results: list[TaskInfo | RqSchedError] = [RqSchedError("not sent")] * len(prepared)
        for index, code in zip(order, codes, strict=True):
            task = prepared[index]
            if isinstance(code, BaseException):
                results[index] = RqSchedError(f"task {task.id!r}: {code}")
            elif code < 0:
                results[index] = error_for_code(code, queue=task.queue, task_id=task.id)
            else:
                results[index] = task.info(now_ms)
        if any(isinstance(r, RqSchedError) for r in results):
            raise EnqueueManyError(results)
        return [r for r in results if isinstance(r, TaskInfo)]


def _as_codes(reply: Any) -> list[Any]:
    if isinstance(reply, list):
        return [int(code) for code in reply]
    return [reply]


def _fields(task: NewTask) -> dict[str, Any]:
    if not isinstance(task, NewTask):
        raise ValidationError(f"enqueue_many takes NewTask items, got {task!r}")
    return {
        "task_type": task.type,
        "payload": task.payload,
        "queue": task.queue,
        "process_in": task.process_in,
        "process_at": task.process_at,
        "max_retry": task.max_retry,
        "timeout": task.timeout,
        "deadline": task.deadline,
        "unique": task.unique,
        "task_id": task.task_id,
        "retention": task.retention,
        "headers": task.headers,
    }


class Client:
    """Enqueues tasks (sync).

    Example::

        client = Client.from_url("redis://localhost:6379/0")
        info = client.enqueue("email:welcome", {"user": 42}, process_in=timedelta(minutes=5))
    """

    def __init__(
        self,
        redis: SyncRedis,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        clock: Clock | None = None,
    ) -> None:
        self.redis = redis
        self._p = _Producer(namespace=namespace, max_payload_bytes=max_payload_bytes, clock=clock)

    @classmethod
    def from_url(cls, url: str, *, cluster: bool = False, **options: Any) -> Self:
        """A client on its own connection pool to ``url``; ``close()`` releases it."""
        return cls(connect(url, cluster=cluster), **options)

    def enqueue(
        self,
        type: str,
        payload: Any = None,
        *,
        queue: str = "default",
        process_in: timedelta | float | None = None,
        process_at: datetime | None = None,
        max_retry: int = 25,
        timeout: timedelta | float | None = None,
        deadline: datetime | None = None,
        unique: timedelta | float | None = None,
        task_id: str | None = None,
        retention: timedelta | float | None = None,
        headers: dict[str, str] | None = None,
    ) -> TaskInfo:
        """Enqueue one task, ready now or at ``process_at`` / after ``process_in``.

        Args:
            type: the task type, which selects the handler.
            payload: anything msgpack encodes (bytes stay bytes).
            queue: the queue name.
            process_in: delay (timedelta or seconds) before the task becomes ready.
            process_at: aware datetime at which the task becomes ready.
            max_retry: failed attempts retried before the task is archived.
            timeout: how long one attempt may run.
            deadline: aware datetime after which the task is not run any more.
            unique: lock TTL; while locked, a task with the same type and payload is refused.
            task_id: your own id; enqueueing the same id again while it is live is refused.
            retention: keep the task as completed this long after success.
            headers: str -> str metadata passed to the handler.

        Returns:
            The new task's :class:`TaskInfo`.

        Raises:
            ValidationError: bad arguments (the message says which).
            PayloadTooLargeError: the task is larger than ``max_payload_bytes``.
            TaskIdConflictError: ``task_id`` is used by a live task.
            DuplicateTaskError: a ``unique`` lock for this type and payload is held.
            RedisUnavailableError: Redis cannot be reached.
        """
        task = self._p.prepare(
            type,
            payload,
            queue=queue,
            process_in=process_in,
            process_at=process_at,
            max_retry=max_retry,
            timeout=timeout,
            deadline=deadline,
            unique=unique,
            task_id=task_id,
            retention=retention,
            headers=headers,
        )
        with translate_errors(self.redis):
            self._register([queue])
            script, keys, args = ops.enqueue(self._p.keys(queue), task)
            code = scripts.run(self.redis, script, keys, args)
        raise_for_code(code, queue=queue, task_id=task.id)
        return task.info(task.message.enqueued_at)

    def enqueue_many(self, tasks: Iterable[NewTask]) -> list[TaskInfo]:
        """Enqueue many tasks in one round trip (batched per queue).

        Returns:
            One :class:`TaskInfo` per task, in order.

        Raises:
            ValidationError: a task's arguments are bad (nothing was enqueued).
            EnqueueManyError: some tasks were refused (conflict, duplicate); the rest were
                enqueued, and ``.results`` says which is which.
            RedisUnavailableError: Redis cannot be reached.
        """
        task_list = list(tasks)
        if not task_list:
            return []
        prepared, calls, order = self._p.plan_many(task_list)
        with translate_errors(self.redis):
            self._register(t.queue for t in prepared)
            raw = scripts.run_pipeline(self.redis, calls)
        return self._p.results_many(prepared, order, raw)

    def _register(self, queues: Iterable[str]) -> None:
        new = self._p.unregistered(queues)
        if new:
            self.redis.sadd(self._p.global_keys.queues, *new)
            self._p._registered.update(new)

    def close(self) -> None:
        """Close the connection pool."""
        self.redis.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient:
    """Enqueues tasks from asyncio code; the same surface as :class:`Client`, awaited."""

    def __init__(
        self,
        redis: AnyAsyncRedis,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        clock: Clock | None = None,
    ) -> None:
        self.redis = redis
        self._p = _Producer(namespace=namespace, max_payload_bytes=max_payload_bytes, clock=clock)

    @classmethod
    def from_url(cls, url: str, *, cluster: bool = False, **options: Any) -> Self:
        """A client on its own connection pool to ``url``; ``await close()`` releases it."""
        return cls(aconnect(url, cluster=cluster), **options)

    async def enqueue(
        self,
        type: str,
        payload: Any = None,
        *,
        queue: str = "default",
        process_in: timedelta | float | None = None,
        process_at: datetime | None = None,
        max_retry: int = 25,
        timeout: timedelta | float | None = None,
        deadline: datetime | None = None,
        unique: timedelta | float | None = None,
        task_id: str | None = None,
        retention: timedelta | float | None = None,
        headers: dict[str, str] | None = None,
    ) -> TaskInfo:
        """Enqueue one task; see :meth:`Client.enqueue` for arguments, result and errors."""
        task = self._p.prepare(
            type,
            payload,
            queue=queue,
            process_in=process_in,
            process_at=process_at,
            max_retry=max_retry,
            timeout=timeout,
            deadline=deadline,
            unique=unique,
            task_id=task_id,
            retention=retention,
            headers=headers,
        )
        with translate_errors(self.redis):
            await self._register([queue])
            script, keys, args = ops.enqueue(self._p.keys(queue), task)
            code = await scripts.arun(self.redis, script, keys, args)
        raise_for_code(code, queue=queue, task_id=task.id)
        return task.info(task.message.enqueued_at)

    async def enqueue_many(self, tasks: Iterable[NewTask]) -> list[TaskInfo]:
        """Enqueue many tasks; see :meth:`Client.enqueue_many`."""
        task_list = list(tasks)
        if not task_list:
            return []
        prepared, calls, order = self._p.plan_many(task_list)
        with translate_errors(self.redis):
            await self._register(t.queue for t in prepared)
            raw = await scripts.arun_pipeline(self.redis, calls)
        return self._p.results_many(prepared, order, raw)

    async def _register(self, queues: Iterable[str]) -> None:
        new = self._p.unregistered(queues)
        if new:
            await self.redis.sadd(self._p.global_keys.queues, *new)
            self._p._registered.update(new)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.redis.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
