"""Typed tasks: a :class:`TaskHandle` ties a task type to a payload type, checked on both ends.

Declare the handle where producers and workers can both import it, register a handler on it,
and enqueue through it::

    @dataclass
    class Signup:
        user_id: int
        email: str

    signup = TaskHandle("user:signup", Signup)

    @signup.handler(router)
    async def on_signup(payload: Signup, task: Task) -> None: ...

    signup.enqueue(client, Signup(user_id=1, email="a@example.com"))
    await signup.aenqueue(async_client, Signup(user_id=1, email="a@example.com"))

A type checker rejects ``signup.enqueue(client, Login(...))`` (``TaskHandle[Signup]``), the
producer checks the value again at run time (:class:`~rq_sched.ValidationError` before anything
reaches Redis), and the handler receives a ``Signup`` rebuilt from the task's data. A task whose
data does not match (written by other code, or by an incompatible older version) is archived at
once with an error naming the field: retrying could not fix it. Schemas are in
:mod:`~rq_sched.contrib.payloads`. Standard library only; no extra needed.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypedDict, TypeVar, Unpack

from rq_sched.backoff import Backoff
from rq_sched.contrib import payloads
from rq_sched.errors import SkipRetry, ValidationError
from rq_sched.models import NewTask, TaskInfo
from rq_sched.options import check_queue, check_type
from rq_sched.router import Router
from rq_sched.task import Task
from rq_sched.workflows import ParentRef, Policy

__all__ = ["AsyncProducer", "EnqueueOptions", "Producer", "TaskHandle", "TaskOptions"]

P = TypeVar("P")
R = TypeVar("R")


class _TaskFields(TypedDict, total=False):
    """The options of a task that ``enqueue`` and :class:`~rq_sched.NewTask` share."""

    queue: str
    process_in: timedelta | float | None
    process_at: datetime | None
    max_retry: int
    timeout: timedelta | float | None
    deadline: datetime | None
    unique: timedelta | float | None
    task_id: str | None
    retention: timedelta | float | None
    headers: dict[str, str] | None
    key: str | None
    shard_key: str | None


class TaskOptions(_TaskFields, total=False):
    """The options a :class:`~rq_sched.NewTask` takes (``enqueue``'s, but the workflow ones,
    and the debounce or throttle of an ``enqueue_many`` item)."""

    debounce: str | None
    throttle: str | None
    window: timedelta | float | None


class EnqueueOptions(_TaskFields, total=False):
    """The keyword options of :meth:`rq_sched.Client.enqueue`, for typed signatures."""

    depends_on: Sequence[ParentRef] | None
    on_parent_failure: Policy
    group: str | None


class Producer(Protocol):
    """Anything that enqueues like :class:`rq_sched.Client` (a wrapper such as
    :class:`rq_sched.contrib.otel.TracingClient` too)."""

    def enqueue(
        self, type: str, payload: Any = None, **options: Unpack[EnqueueOptions]
    ) -> TaskInfo: ...


class AsyncProducer(Protocol):
    """Anything that enqueues like :class:`rq_sched.AsyncClient`."""

    async def enqueue(
        self, type: str, payload: Any = None, **options: Unpack[EnqueueOptions]
    ) -> TaskInfo: ...


class TaskHandle(Generic[P]):
    """A task type whose payload is a ``P``; see the module docstring.

    Args:
        type: the task type.
        payload_type: the payload's type (see :mod:`~rq_sched.contrib.payloads`).
        queue: the queue used when ``enqueue`` is not given one.

    Raises:
        ValidationError: the type name or the payload type is not usable.
    """

    def __init__(self, type: str, payload_type: type[P], *, queue: str = "default") -> None:
        self.type = check_type(type)
        payloads.check_schema(payload_type, f"payload of {type!r}")
        self.payload_type = payload_type
        self.queue = check_queue(queue)

    def __repr__(self) -> str:
        return f"TaskHandle({self.type!r}, {payloads.type_name(self.payload_type)})"

    def encode(self, payload: P) -> Any:
        """``payload`` as the data stored in the task.

        Raises:
            ValidationError: ``payload`` is not a ``P`` (the message names the field).
        """
        return payloads.encode(payload, self.payload_type, f"payload of {self.type!r}")

    def decode(self, data: object) -> P:
        """The ``P`` that a task's stored data describes.

        Raises:
            ValidationError: ``data`` does not describe a ``P``.
        """
        value: P = payloads.decode(data, self.payload_type, f"payload of {self.type!r}")
        return value

    def new_task(self, payload: P, **options: Unpack[TaskOptions]) -> NewTask:
        """A checked :class:`~rq_sched.NewTask` (for ``enqueue_many`` or enqueue on commit).

        Raises:
            ValidationError: ``payload`` is not a ``P``.
        """
        options.setdefault("queue", self.queue)
        return NewTask(type=self.type, payload=self.encode(payload), **options)

    def enqueue(self, client: Producer, payload: P, **options: Unpack[EnqueueOptions]) -> TaskInfo:
        """Check ``payload`` and enqueue it with ``client`` (options as ``Client.enqueue``).

        Raises:
            ValidationError: ``payload`` is not a ``P``, or an option is bad.
            RqSchedError: whatever ``client.enqueue`` raises.
        """
        options.setdefault("queue", self.queue)
        return client.enqueue(self.type, self.encode(payload), **options)

    async def aenqueue(
        self, client: AsyncProducer, payload: P, **options: Unpack[EnqueueOptions]
    ) -> TaskInfo:
        """:meth:`enqueue` with an :class:`~rq_sched.AsyncClient`."""
        options.setdefault("queue", self.queue)
        return await client.enqueue(self.type, self.encode(payload), **options)

    def handler(
        self,
        router: Router,
        *,
        process: bool = False,
        backoff: Backoff | None = None,
        timeout: float | None = None,
    ) -> Callable[[Callable[[P, Task], R]], Callable[[P, Task], R]]:
        """Register the decorated ``(payload: P, task: Task)`` function on ``router``.

        ``async def`` functions run on the event loop, plain ones in a thread (or a child
        process with ``process=True``), as with :meth:`rq_sched.Router.task`. The function is
        returned unchanged, so it can still be called directly in tests.

        Raises:
            ValidationError: as :meth:`rq_sched.Router.add`.
        """

        def register(function: Callable[[P, Task], R]) -> Callable[[P, Task], R]:
            wrapped: Callable[[Task], Any]
            if inspect.iscoroutinefunction(function):
                wrapped = _async_runner(self, function)
            else:
                wrapped = _SyncRunner(self, function)
            router.add(self.type, wrapped, process=process, backoff=backoff, timeout=timeout)
            return function

        return register

    def payload_of(self, task: Task) -> P:
        """The task's payload as a ``P``; a mismatch archives the task (no retry).

        Raises:
            SkipRetry: the stored data does not describe a ``P``.
        """
        try:
            return self.decode(task.payload)
        except ValidationError as exc:
            raise SkipRetry(f"{exc} (task {task.id}; not retried: the data cannot change)") from exc


def _async_runner(
    handle: TaskHandle[P], function: Callable[[P, Task], Any]
) -> Callable[[Task], Awaitable[Any]]:
    async def run(task: Task) -> Any:
        return await function(handle.payload_of(task), task)

    run.__qualname__ = getattr(function, "__qualname__", run.__qualname__)
    return run


class _SyncRunner(Generic[P]):
    """A plain callable (not a closure) so that a process handler can be pickled."""

    def __init__(self, handle: TaskHandle[P], function: Callable[[P, Task], Any]) -> None:
        self.handle = handle
        self.function = function

    def __call__(self, task: Task) -> Any:
        return self.function(self.handle.payload_of(task), task)
