"""A router for a worker process in the OpenTelemetry test: it sets up the SDK in that process
and writes each finished span as a JSON line to the file named by RQ_SCHED_TEST_SPANS."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from rq_sched import Router, Task
from rq_sched.contrib.otel import TracingMiddleware


class JsonLinesExporter(SpanExporter):
    """Appends id, parent, name and attributes of each span to a file, one JSON line each."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.lock, open(self.path, "a") as out:
            for span in spans:
                assert span.context is not None
                line = {
                    "name": span.name,
                    "trace_id": span.context.trace_id,
                    "span_id": span.context.span_id,
                    "parent_id": span.parent.span_id if span.parent else None,
                    "attributes": dict(span.attributes or {}),
                }
                out.write(json.dumps(line) + "\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(
    SimpleSpanProcessor(JsonLinesExporter(os.environ["RQ_SCHED_TEST_SPANS"]))
)
trace.set_tracer_provider(provider)

router = Router()
router.use(TracingMiddleware())


@router.task("otel:echo")
async def echo(task: Task) -> None:
    return None
