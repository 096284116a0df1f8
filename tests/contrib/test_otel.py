"""OpenTelemetry: the producer's span is the parent of the task's span across a real worker
(in this process, and in a worker process of its own), with the task's attributes, and a
failure is recorded on the task's span."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from rq_sched import AsyncClient, Client, NewTask, Router, Task
from rq_sched.contrib.otel import AsyncTracingClient, TracingClient, TracingMiddleware
from rq_sched.contrib.typed import TaskHandle
from tests.polling import wait_until
from tests.worker_support import cli_worker, fast_backoff, running_server, stop_process


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(spans: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    try:
        yield provider
    finally:
        provider.shutdown()


def finished(spans: InMemorySpanExporter, name: str, count: int = 1) -> list[ReadableSpan]:
    def found() -> list[ReadableSpan] | None:
        got = [s for s in spans.get_finished_spans() if s.name == name]
        return got if len(got) >= count else None

    return wait_until(found, what=f"{count} finished span(s) named {name!r}")


def test_the_task_span_is_a_child_of_the_producer_span_with_the_tasks_attributes(
    redis_url: str,
    r: redis.Redis,
    namespace: str,
    provider: TracerProvider,
    spans: InMemorySpanExporter,
) -> None:
    router = Router()
    router.use(TracingMiddleware(tracer_provider=provider))
    tracer = provider.get_tracer("test")

    @router.task("mail:send")
    def send(task: Task) -> None:  # a thread handler: its own span nests under the task's
        with tracer.start_as_current_span("smtp"):
            pass

    client = TracingClient(Client(r, namespace=namespace), tracer_provider=provider)
    info = client.enqueue("mail:send", {"to": "a@example.com"}, queue="mail", headers={"k": "v"})
    with running_server(redis_url, router, namespace=namespace, queues={"mail": 1}):
        (consumer,) = finished(spans, "process mail:send")
    (producer,) = finished(spans, "send mail:send")
    (inner,) = finished(spans, "smtp")
    assert producer.kind is SpanKind.PRODUCER and consumer.kind is SpanKind.CONSUMER
    assert producer.context is not None and consumer.context is not None
    assert consumer.context.trace_id == producer.context.trace_id
    assert consumer.parent is not None and consumer.parent.span_id == producer.context.span_id
    assert inner.parent is not None and inner.parent.span_id == consumer.context.span_id
    assert dict(producer.attributes or {}) == {
        "messaging.system": "rq_sched",
        "messaging.operation.type": "send",
        "messaging.destination.name": "mail",
        "rq_sched.task.type": "mail:send",
        "messaging.message.id": info.id,
    }
    assert dict(consumer.attributes or {}) == {
        "messaging.system": "rq_sched",
        "messaging.operation.type": "process",
        "messaging.destination.name": "mail",
        "messaging.message.id": info.id,
        "rq_sched.task.type": "mail:send",
        "rq_sched.task.retry_count": 0,
        "rq_sched.task.attempt": 1,
    }
    assert consumer.status.status_code is StatusCode.UNSET
    assert info.headers["k"] == "v" and "traceparent" in info.headers


def test_a_failed_attempt_is_recorded_and_the_retry_has_its_own_span_in_the_same_trace(
    redis_url: str,
    r: redis.Redis,
    namespace: str,
    provider: TracerProvider,
    spans: InMemorySpanExporter,
) -> None:
    router = Router()
    router.use(TracingMiddleware(tracer_provider=provider))

    @router.task("flaky", backoff=fast_backoff)
    async def flaky(task: Task) -> None:
        if task.retry_count == 0:
            raise RuntimeError("smtp down")

    async def produce() -> None:
        async with AsyncTracingClient(
            AsyncClient.from_url(redis_url, namespace=namespace), tracer_provider=provider
        ) as client:
            await client.enqueue("flaky", None)

    asyncio.run(produce())
    with running_server(redis_url, router, namespace=namespace):
        first, second = finished(spans, "process flaky", count=2)
    (producer,) = finished(spans, "send flaky")
    assert first.status.status_code is StatusCode.ERROR
    assert [e.name for e in first.events] == ["exception"]
    assert (first.events[0].attributes or {})["exception.message"] == "smtp down"
    assert second.status.status_code is StatusCode.UNSET
    assert [(s.attributes or {})["rq_sched.task.attempt"] for s in (first, second)] == [1, 2]
    assert producer.context is not None
    for span in (first, second):
        assert span.parent is not None and span.parent.span_id == producer.context.span_id


def test_a_batch_and_a_typed_handle_carry_the_context_too(
    redis_url: str,
    r: redis.Redis,
    namespace: str,
    provider: TracerProvider,
    spans: InMemorySpanExporter,
) -> None:
    client = TracingClient(Client(r, namespace=namespace), tracer_provider=provider)
    infos = client.enqueue_many([NewTask(type="thumb", payload=n) for n in range(3)])
    typed = TaskHandle("thumb", int).enqueue(client, 4)
    batch, single = finished(spans, "send thumb", count=2)
    assert (batch.attributes or {})["messaging.batch.message_count"] == 3
    assert batch.context is not None and single.context is not None
    parents = {info.headers["traceparent"].split("-")[2] for info in infos}
    assert parents == {format(batch.context.span_id, "016x")}
    assert typed.headers["traceparent"].split("-")[2] == format(single.context.span_id, "016x")


def test_the_context_crosses_into_a_worker_process(
    redis_url: str,
    r: redis.Redis,
    namespace: str,
    tmp_path: Path,
    provider: TracerProvider,
    spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "spans.jsonl"
    monkeypatch.setenv("RQ_SCHED_TEST_SPANS", str(out))
    worker = cli_worker(redis_url, namespace, router="tests.contrib.otel_worker:router")
    try:
        tracer = provider.get_tracer("test")
        client = TracingClient(Client(r, namespace=namespace), tracer_provider=provider)
        with tracer.start_as_current_span("web request"):
            info = client.enqueue("otel:echo", {"n": 1})
        lines: list[str] = wait_until(
            lambda: out.read_text().splitlines() if out.exists() else None,
            timeout=30,
            what="the worker's span file",
        )
    finally:
        code, err = stop_process(worker)
    assert code == 0, err
    (request,) = finished(spans, "web request")
    (producer,) = finished(spans, "send otel:echo")
    consumer = json.loads(lines[0])
    assert producer.context is not None and request.context is not None
    assert consumer["name"] == "process otel:echo"
    assert consumer["trace_id"] == producer.context.trace_id == request.context.trace_id
    assert consumer["parent_id"] == producer.context.span_id
    assert consumer["attributes"]["messaging.message.id"] == info.id
