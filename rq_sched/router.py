"""The handler registry: which function runs which task type, and middleware around them."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, TypeVar, overload

from rq_sched.aggregation import Aggregate, Aggregation, GroupLimits
from rq_sched.backoff import Backoff
from rq_sched.durations import duration_seconds
from rq_sched.errors import ValidationError
from rq_sched.options import check_type
from rq_sched.task import Task

Next = Callable[[Task], Awaitable[None]]
Middleware = Callable[[Task, Next], Awaitable[None]]
"""``async def mw(task, call_next)``: run code around ``await call_next(task)``; raise to fail."""

AggregateT = TypeVar("AggregateT", bound=Aggregate)
HandlerKind = Literal["async", "thread", "process"]
Handler = Callable[[Task], Any]


@dataclass(frozen=True, slots=True)
class Route:
    """A registered handler and how to run it."""

    type: str
    handler: Handler
    kind: HandlerKind
    backoff: Backoff | None = None
    timeout: float | None = None
    """Default per-attempt timeout for this type when the task sets none."""


@dataclass
class Router:
    """Maps task types to handlers.

    Example::

        router = Router()

        @router.task("email:welcome")
        async def welcome(task: Task) -> None: ...

        @router.task("report:render", process=True, timeout=60)
        def render(task: Task) -> bytes: ...
    """

    routes: dict[str, Route] = field(default_factory=dict)
    middleware: list[Middleware] = field(default_factory=list)
    aggregation: Aggregation | None = None
    """The aggregator of tasks enqueued with ``group=`` (see :meth:`aggregator`)."""

    @overload
    def aggregator(
        self,
        aggregate: None = None,
        *,
        grace: timedelta | float = 60.0,
        max_delay: timedelta | float | None = None,
        max_size: int | None = None,
    ) -> Callable[[AggregateT], AggregateT]: ...

    @overload
    def aggregator(
        self,
        aggregate: AggregateT,
        *,
        grace: timedelta | float = 60.0,
        max_delay: timedelta | float | None = None,
        max_size: int | None = None,
    ) -> AggregateT: ...

    def aggregator(
        self,
        aggregate: Aggregate | None = None,
        *,
        grace: timedelta | float = 60.0,
        max_delay: timedelta | float | None = None,
        max_size: int | None = None,
    ) -> Any:
        """Register the function that turns a batch of a group's tasks into one task
        (``aggregate(group, tasks) -> NewTask | None``): ``router.aggregator(fn, grace=...)``,
        or as a decorator, ``@router.aggregator(grace=...)``.

        A group (tasks of one queue enqueued with the same ``group=``) is aggregated
        ``grace`` seconds after its newest task, at most ``max_delay`` after its oldest, or at
        once when it holds ``max_size`` tasks (also the most one batch takes). Workers store
        these limits in the queues they serve; enqueues use them.

        Raises:
            ValidationError: an aggregator is already registered, or bad limits.
        """
        if self.aggregation is not None:
            raise ValidationError("this router already has an aggregator")
        limits = GroupLimits(grace=grace, max_delay=max_delay, max_size=max_size)

        def register(fn: AggregateT) -> AggregateT:
            if self.aggregation is not None:
                raise ValidationError("this router already has an aggregator")
            self.aggregation = Aggregation(fn, limits)
            return fn

        return register if aggregate is None else register(aggregate)

    def task(
        self,
        task_type: str,
        *,
        process: bool = False,
        backoff: Backoff | None = None,
        timeout: float | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function for ``task_type``.

        ``async def`` handlers run on the event loop, plain ``def`` handlers in a thread pool,
        and ``process=True`` handlers (module-level ``def``) in a child process that a timeout or
        cancellation kills. A handler that returns ``bytes`` or ``str`` keeps it as the task's
        result, as :meth:`Task.write_result` would (stored when the task has ``retention``).

        Raises:
            ValidationError: the type is already registered, or the handler does not fit.
        """

        def register(handler: Handler) -> Handler:
            self.add(task_type, handler, process=process, backoff=backoff, timeout=timeout)
            return handler

        return register

    def add(
        self,
        task_type: str,
        handler: Handler,
        *,
        process: bool = False,
        backoff: Backoff | None = None,
        timeout: float | None = None,
    ) -> None:
        """Register ``handler`` for ``task_type`` (the non-decorator form of :meth:`task`)."""
        check_type(task_type)
        if task_type in self.routes:
            raise ValidationError(f"task type {task_type!r} already has a handler")
        if not callable(handler):
            raise ValidationError(f"handler for {task_type!r} is not callable: {handler!r}")
        if not isinstance(process, bool):
            raise ValidationError(f"process must be True or False, got {process!r}")
        if backoff is not None and not callable(backoff):
            # Caught here, not at the first retry deep inside a worker.
            raise ValidationError(
                f"backoff for {task_type!r} must be a function (retried, error, task) -> "
                f"seconds, e.g. rq_sched.backoff.exponential(); got {backoff!r}"
            )
        is_async = inspect.iscoroutinefunction(handler)
        if process and is_async:
            raise ValidationError(
                f"handler for {task_type!r}: process=True needs a plain `def` function"
            )
        kind: HandlerKind = "process" if process else "async" if is_async else "thread"
        limit = (
            duration_seconds(timeout, "timeout", allow_zero=False, allow_text=False)
            if timeout is not None
            else None
        )
        self.routes[task_type] = Route(task_type, handler, kind, backoff, limit)

    def use(self, middleware: Middleware) -> Middleware:
        """Add middleware; the first added runs outermost. Usable as a decorator."""
        self.middleware.append(middleware)
        return middleware

    def include(self, other: Router) -> None:
        """Add every route and middleware of ``other`` (and its aggregator, if it has one)."""
        for route in other.routes.values():
            if route.type in self.routes:
                raise ValidationError(f"task type {route.type!r} already has a handler")
            self.routes[route.type] = route
        self.middleware.extend(other.middleware)
        if other.aggregation is not None:
            if self.aggregation is not None:
                raise ValidationError("both routers have an aggregator; keep one")
            self.aggregation = other.aggregation
