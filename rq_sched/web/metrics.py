"""Prometheus metrics for ``/metrics``, read from Redis at scrape time.

A custom collector rather than gauges updated in the background: the numbers live in Redis
(shared by every worker), so each scrape reads them fresh with the inspector's bounded queries,
and an idle dashboard sends Redis nothing. Each app has its own registry, so several apps (or
tests) in one process do not collide.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from rq_sched.errors import RqSchedError
from rq_sched.flow import MAX_KEY_LIMITS, FlowStatus
from rq_sched.inspector.inspector import Inspector
from rq_sched.models import TaskState

log = logging.getLogger(__name__)


class QueueCollector(Collector):
    """Queue sizes per state, processed/failed/trimmed totals, latency, paused flags, live
    servers."""

    def __init__(self, inspector: Inspector) -> None:
        self.inspector = inspector

    def describe(self) -> list[Metric]:
        # Returning nothing keeps registration from calling collect() (and Redis).
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("rq_sched_redis_up", "1 when Redis answered this scrape")
        try:
            stats = self.inspector.all_queue_stats()
            servers = len(self.inspector.servers())
        except RqSchedError as exc:
            log.warning("metrics scrape could not read Redis: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        size = GaugeMetricFamily(
            "rq_sched_queue_tasks", "Tasks in the queue by state", labels=["queue", "state"]
        )
        processed = CounterMetricFamily(
            "rq_sched_processed", "Tasks processed successfully", labels=["queue"]
        )
        failed = CounterMetricFamily("rq_sched_failed", "Failed task attempts", labels=["queue"])
        latency = GaugeMetricFamily(
            "rq_sched_queue_latency_seconds",
            "How long the oldest pending task has waited",
            labels=["queue"],
        )
        paused = GaugeMetricFamily("rq_sched_queue_paused", "1 when paused", labels=["queue"])
        trimmed = CounterMetricFamily(
            "rq_sched_archive_trimmed",
            "Archived tasks deleted by the archive's size and age limits",
            labels=["queue"],
        )
        for s in stats:
            q = s.info.queue
            for state in TaskState:
                size.add_metric([q, state.value], getattr(s.info, state.value))
            processed.add_metric([q], s.info.processed)
            failed.add_metric([q], s.info.failed)
            latency.add_metric([q], s.latency)
            paused.add_metric([q], int(s.info.paused))
            trimmed.add_metric([q], s.info.trimmed)
        yield from flow_metrics(self.inspector, [s.info.queue for s in stats])
        servers_gauge = GaugeMetricFamily("rq_sched_servers", "Live worker servers")
        servers_gauge.add_metric([], servers)
        yield from (size, processed, failed, latency, paused, trimmed, servers_gauge)


def flow_metrics(inspector: Inspector, queues: list[str]) -> Iterator[Metric]:
    """Flow limits of the queues that have any: rate, tokens now, cap, tasks held; per key;
    per limited task type; and per key with limits of its own."""
    rate = GaugeMetricFamily(
        "rq_sched_flow_rate_per_second", "Rate limit: task starts per second", labels=["queue"]
    )
    tokens = GaugeMetricFamily(
        "rq_sched_flow_tokens", "Tasks the rate limit lets start right now", labels=["queue"]
    )
    cap = GaugeMetricFamily(
        "rq_sched_flow_concurrency_cap", "Most tasks running at once", labels=["queue"]
    )
    held = GaugeMetricFamily(
        "rq_sched_flow_held", "1 while ready tasks wait for a slot of the cap", labels=["queue"]
    )
    key_rate = GaugeMetricFamily(
        "rq_sched_flow_key_rate_per_second",
        "Per-key rate limit: task starts per second of each key",
        labels=["queue"],
    )
    key_cap = GaugeMetricFamily(
        "rq_sched_flow_key_concurrency_cap",
        "Per-key cap: most tasks of one key running at once",
        labels=["queue"],
    )
    keyed = GaugeMetricFamily(
        "rq_sched_flow_keyed_pending", "Keyed ready tasks (also in pending)", labels=["queue"]
    )
    keys_ready = GaugeMetricFamily(
        "rq_sched_flow_keys_ready",
        "Keys with ready tasks whose turn may come now",
        labels=["queue"],
    )
    keys_waiting = GaugeMetricFamily(
        "rq_sched_flow_keys_waiting_token",
        "Keys with ready tasks held by their rate limit",
        labels=["queue"],
    )
    by_type = TypeGauges()
    by_key = KeyGauges()
    for queue in queues:
        try:
            status = inspector.flow(queue)
        except RqSchedError as exc:
            log.warning("metrics scrape could not read the flow limits of %s: %s", queue, exc)
            continue
        by_type.add(status)
        by_key.add(status)
        if status.interval_ms is not None:
            rate.add_metric([queue], 1000 / status.interval_ms)
            tokens.add_metric([queue], status.tokens or 0)
        if status.concurrency is not None:
            cap.add_metric([queue], status.concurrency)
            held.add_metric([queue], int(status.held))
        if status.key_interval_ms is not None:
            key_rate.add_metric([queue], 1000 / status.key_interval_ms)
        if status.key_concurrency is not None:
            key_cap.add_metric([queue], status.key_concurrency)
        if status.key_limited or status.keyed_pending:
            keyed.add_metric([queue], status.keyed_pending)
            keys_ready.add_metric([queue], status.keys_ready)
            keys_waiting.add_metric([queue], status.keys_waiting)
    yield from (rate, tokens, cap, held, key_rate, key_cap, keyed, keys_ready, keys_waiting)
    yield from by_type.families()
    yield from by_key.families()


class TypeGauges:
    """The per-task-type flow gauges (``FlowLimits.types``), labelled by queue and type."""

    def __init__(self) -> None:
        labels = ["queue", "type"]
        self.rate = GaugeMetricFamily(
            "rq_sched_flow_type_rate_per_second",
            "Per-type rate limit: task starts per second of the type",
            labels=labels,
        )
        self.tokens = GaugeMetricFamily(
            "rq_sched_flow_type_tokens",
            "Tasks of the type its rate lets start right now",
            labels=labels,
        )
        self.cap = GaugeMetricFamily(
            "rq_sched_flow_type_concurrency_cap",
            "Per-type cap: most tasks of the type running at once",
            labels=labels,
        )
        self.running = GaugeMetricFamily(
            "rq_sched_flow_type_running",
            "Tasks of a limited type running under its limits",
            labels=labels,
        )
        self.pending = GaugeMetricFamily(
            "rq_sched_flow_type_pending",
            "Ready tasks of a limited type in its lane (also in pending)",
            labels=labels,
        )
        self.weight = GaugeMetricFamily(
            "rq_sched_flow_type_weight",
            "Turns of the round robin a limited type's lane takes per turn of a weight-1 lane",
            labels=labels,
        )

    def add(self, status: FlowStatus) -> None:
        """Add the limited types of one queue."""
        for t in status.types:
            labels = [status.queue, t.type]
            if t.interval_ms is not None:
                self.rate.add_metric(labels, 1000 / t.interval_ms)
                self.tokens.add_metric(labels, t.tokens or 0)
            if t.concurrency is not None:
                self.cap.add_metric(labels, t.concurrency)
            self.running.add_metric(labels, t.running)
            self.pending.add_metric(labels, t.pending)
            self.weight.add_metric(labels, t.weight)

    def families(self) -> tuple[Metric, ...]:
        return (self.rate, self.tokens, self.cap, self.running, self.pending, self.weight)


class KeyGauges:
    """The gauges of the keys with limits of their own (``FlowLimits.keys``), labelled by
    queue and key: at most ``MAX_KEY_LIMITS`` series per queue and gauge."""

    def __init__(self) -> None:
        labels = ["queue", "key"]
        bound = f"at most {MAX_KEY_LIMITS} keys per queue"
        self.rate = GaugeMetricFamily(
            "rq_sched_flow_key_own_rate_per_second",
            f"A key's own rate limit: task starts per second of the key ({bound})",
            labels=labels,
        )
        self.cap = GaugeMetricFamily(
            "rq_sched_flow_key_own_concurrency_cap",
            f"A key's own cap: most tasks of the key running at once ({bound})",
            labels=labels,
        )
        self.weight = GaugeMetricFamily(
            "rq_sched_flow_key_own_weight",
            f"Turns of the round robin a key with limits of its own takes per turn of a "
            f"weight-1 key ({bound})",
            labels=labels,
        )

    def add(self, status: FlowStatus) -> None:
        """Add the keys with limits of their own of one queue."""
        for key, limits in (status.keys or {}).items():
            labels = [status.queue, key]
            if limits.interval_ms is not None:
                self.rate.add_metric(labels, 1000 / limits.interval_ms)
            if limits.concurrency is not None:
                self.cap.add_metric(labels, limits.concurrency)
            self.weight.add_metric(labels, limits.weight)

    def families(self) -> tuple[Metric, ...]:
        return (self.rate, self.cap, self.weight)


def registry_for(inspector: Inspector) -> CollectorRegistry:
    """A registry holding only the queue collector of ``inspector``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(inspector))
    return registry


async def metrics(request: Request) -> Response:
    """GET /metrics in the Prometheus text format."""
    registry: CollectorRegistry = request.app.state.metrics_registry
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
