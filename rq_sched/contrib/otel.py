"""OpenTelemetry tracing: the producer's span continues in the task's span, through headers.

Needs the ``otel`` extra (``pip install 'rq_sched[otel]'``: ``opentelemetry-api``; you bring
the SDK and an exporter, as with any instrumented library)::

    client = TracingClient(Client.from_url(url))          # or AsyncTracingClient(AsyncClient...)
    client.enqueue("email:welcome", {"user": 42})         # a PRODUCER span "send email:welcome"

    router.use(TracingMiddleware())                       # a CONSUMER span "process email:welcome"

The producer span's context is written into the task's headers with the globally configured
propagator (W3C ``traceparent`` by default), so the consumer span is its child, on whatever host
the task runs and however late. Both spans carry ``messaging.system`` (``rq_sched``),
``messaging.destination.name`` (the queue), ``messaging.message.id`` (the task id) and
``rq_sched.task.type``; the consumer span also ``rq_sched.task.retry_count`` and
``rq_sched.task.attempt``. A handler that raises (``SkipRetry`` and ``Retry`` included) ends the
span with status ERROR and the exception recorded. Spans that handlers start themselves are
children of the consumer span, in sync (thread) handlers too; handlers in child processes
(``process=True``) do not see it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Self, Unpack

from rq_sched.batch import Enqueued
from rq_sched.client import AsyncClient, Client
from rq_sched.contrib._optional import missing
from rq_sched.contrib.typed import EnqueueOptions
from rq_sched.models import NewTask, TaskInfo
from rq_sched.router import Next
from rq_sched.task import Task

try:
    from opentelemetry import propagate, trace
except ImportError as exc:  # pragma: no cover - exercised by hand, the test extra installs it
    raise ImportError(
        missing("opentelemetry-api", extra="otel", feature="rq_sched.contrib.otel")
    ) from exc

__all__ = ["AsyncTracingClient", "TracingClient", "TracingMiddleware"]

INSTRUMENTATION = "rq_sched.contrib.otel"
SYSTEM = "rq_sched"


def _tracer(provider: trace.TracerProvider | None) -> trace.Tracer:
    return trace.get_tracer(INSTRUMENTATION, tracer_provider=provider)


@contextmanager
def _send_span(
    tracer: trace.Tracer, task_type: str, queue: str, count: int = 1
) -> Iterator[trace.Span]:
    attributes: dict[str, str | int] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.destination.name": queue,
        "rq_sched.task.type": task_type,
    }
    if count != 1:
        attributes["messaging.batch.message_count"] = count
    with tracer.start_as_current_span(
        f"send {task_type}", kind=trace.SpanKind.PRODUCER, attributes=attributes
    ) as span:
        yield span


def _with_trace_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """``headers`` plus the current span's context (the caller's dict is not changed)."""
    carrier = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def _traced_tasks(tasks: Iterable[NewTask]) -> list[NewTask]:
    return [replace(t, headers=_with_trace_headers(t.headers)) for t in tasks]


def _batch_name(tasks: list[NewTask]) -> tuple[str, str]:
    types = {t.type for t in tasks}
    queues = {t.queue for t in tasks}
    return (types.pop() if len(types) == 1 else "batch"), (
        queues.pop() if len(queues) == 1 else "(several)"
    )


class TracingClient:
    """A :class:`~rq_sched.Client` whose enqueues open a PRODUCER span and pass its context
    to the task in its headers. Same methods as the client (``enqueue``, ``enqueue_many``,
    ``close``); ``.client`` is the wrapped one.

    Raises:
        Whatever the wrapped client raises; the span records it.
    """

    def __init__(self, client: Client, *, tracer_provider: trace.TracerProvider | None = None):
        self.client = client
        self.tracer = _tracer(tracer_provider)

    def enqueue(
        self, type: str, payload: Any = None, **options: Unpack[EnqueueOptions]
    ) -> TaskInfo:
        """:meth:`rq_sched.Client.enqueue` inside a ``send <type>`` span."""
        with _send_span(self.tracer, type, options.get("queue", "default")) as span:
            options["headers"] = _with_trace_headers(options.get("headers"))
            info = self.client.enqueue(type, payload, **options)
            span.set_attribute("messaging.message.id", info.id)
            return info

    def enqueue_many(self, tasks: Iterable[NewTask], *, replicas: int | None = None) -> Enqueued:
        """:meth:`rq_sched.Client.enqueue_many` inside one span for the batch."""
        task_list = list(tasks)
        with _send_span(self.tracer, *_batch_name(task_list), count=len(task_list)):
            return self.client.enqueue_many(_traced_tasks(task_list), replicas=replicas)

    def close(self) -> None:
        """Close the wrapped client."""
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


class AsyncTracingClient:
    """:class:`TracingClient` for an :class:`~rq_sched.AsyncClient` (methods awaited)."""

    def __init__(self, client: AsyncClient, *, tracer_provider: trace.TracerProvider | None = None):
        self.client = client
        self.tracer = _tracer(tracer_provider)

    async def enqueue(
        self, type: str, payload: Any = None, **options: Unpack[EnqueueOptions]
    ) -> TaskInfo:
        """:meth:`rq_sched.AsyncClient.enqueue` inside a ``send <type>`` span."""
        with _send_span(self.tracer, type, options.get("queue", "default")) as span:
            options["headers"] = _with_trace_headers(options.get("headers"))
            info = await self.client.enqueue(type, payload, **options)
            span.set_attribute("messaging.message.id", info.id)
            return info

    async def enqueue_many(
        self, tasks: Iterable[NewTask], *, replicas: int | None = None
    ) -> Enqueued:
        """:meth:`rq_sched.AsyncClient.enqueue_many` inside one span for the batch."""
        task_list = list(tasks)
        with _send_span(self.tracer, *_batch_name(task_list), count=len(task_list)):
            return await self.client.enqueue_many(_traced_tasks(task_list), replicas=replicas)

    async def close(self) -> None:
        """Close the wrapped client."""
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


@dataclass(frozen=True, kw_only=True)
class TracingMiddleware:
    """Router middleware: run each task inside a CONSUMER span continuing the producer's trace.

    Args:
        tracer_provider: where spans go (default: the global provider).
    """

    tracer_provider: trace.TracerProvider | None = None
    _tracer: trace.Tracer = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tracer", _tracer(self.tracer_provider))

    async def __call__(self, task: Task, call_next: Next) -> None:
        parent = propagate.extract(task.headers)
        attributes: dict[str, str | int] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.destination.name": task.queue,
            "messaging.message.id": task.id,
            "rq_sched.task.type": task.type,
            "rq_sched.task.retry_count": task.retry_count,
            "rq_sched.task.attempt": task.retry_count + 1,
        }
        # start_as_current_span records an exception on the span and sets status ERROR.
        with self._tracer.start_as_current_span(
            f"process {task.type}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
        ):
            await call_next(task)
