"""The scenarios only rq_sched runs: its multi-process worker command and its flow limits.

- ``fleet``: ``rq-sched worker --workers N`` (N = 1, 2, 4) draining no-op and one-call tasks;
  rate, speed-up against N = 1, worker and redis-server CPU per task. The queue is paused
  while the tasks are enqueued and until all N worker servers have registered, so the drain
  starts with every process ready and the figures are of N processes draining together.
- ``flow``: one worker draining no-op tasks with no flow limits, a per-queue rate limit, a
  concurrency cap, both, and both on the task type, each set so high it never holds a task
  back, so only their bookkeeping is measured; the kinds are interleaved over the rounds and
  compared to "none".
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

from bench_lib.probe import CALLS
from bench_lib.runner import BenchError
from bench_lib.scenarios import PAYLOAD, Context, Metrics, drain_run, drained
from bench_lib.systems import CONCURRENCY, System
from rq_sched import Client, FlowLimits, Inspector, TypeLimits

QUEUE = "default"
APP = "bench_lib.adapters.sys_rq_sched:router"

FLOW_KINDS: dict[str, FlowLimits | None] = {
    "none": None,
    "rate": FlowLimits(rate="1000000/s", burst=1000),
    "cap": FlowLimits(concurrency=10 * CONCURRENCY),
    "rate+cap": FlowLimits(rate="1000000/s", burst=1000, concurrency=10 * CONCURRENCY),
    "type rate+cap": FlowLimits(
        types={"bench:noop": TypeLimits(rate="1000000/s", burst=1000, concurrency=10 * CONCURRENCY)}
    ),
}
"""A rate of a million starts a second (bursts of 1000, ten times a dequeue batch) and a cap of
ten times the worker's concurrency: limits in force that never hold a task back. "type
rate+cap" puts them on the drained task type (its tasks then go through the type's lane)."""


def fleet_argv(url: str, count: int) -> list[str]:
    """The ``rq-sched worker --workers N`` command the fleet scenario runs."""
    return [
        sys.executable, "-m", "rq_sched.cli", "worker", APP, "--url", url,
        "--concurrency", str(CONCURRENCY), "--workers", str(count),
    ]  # fmt: skip


def fleet(ctx: Context, system: System) -> Metrics:
    """Drain with ``rq-sched worker --workers N``, no-op and one-call handler."""
    out: Metrics = {}
    for handler in ("noop", "call"):
        runs: Metrics = {str(c): fleet_run(ctx, system, c, handler) for c in ctx.sizes.fleet}
        base = runs.get("1", {}).get("per_s")
        for run in runs.values():
            if base and "per_s" in run:
                run["speedup"] = run["per_s"] / base
        out[handler] = runs
    return out


def fleet_run(ctx: Context, system: System, count: int, handler: str) -> Metrics:
    r, n = ctx.runner, ctx.sizes.fleet_n
    r.fresh()
    inspector = Inspector.from_url(r.url)
    try:
        inspector.pause(QUEUE)
        payload = PAYLOAD if handler == "call" else 0
        r.produce(system, "fill", timeout=300, n=n, bulk=True, payload=payload)
        with r.workers(system, 1, handler=handler, argv=fleet_argv(r.url, count)):
            deadline = time.monotonic() + 60
            while len(inspector.servers()) < count:
                if time.monotonic() > deadline:
                    return {"error": f"{count} worker servers did not register within 60 s"}
                time.sleep(0.05)
            before = r.cpu_seconds()
            inspector.unpause(QUEUE)
            done = r.wait_done(n, ctx.sizes.drain_budget)
            after = r.cpu_seconds()
        out = drained(r, n, done, 0, before, after)
        if handler == "call":
            out["calls"] = int(r.r.get(CALLS) or 0)
        return out
    finally:
        inspector.close()


def flow(ctx: Context, system: System) -> Metrics:
    """Drain with each flow-limit kind; medians and ratios to no limits."""
    runs: dict[str, list[Metrics]] = {kind: [] for kind in FLOW_KINDS}
    for _ in range(ctx.sizes.flow_rounds):
        for kind, limits in FLOW_KINDS.items():
            runs[kind].append(drain_run(ctx, system, 1, ctx.sizes.drain, setup=_limit(ctx, limits)))
    out: Metrics = {kind: _median(rs) for kind, rs in runs.items()}
    base = out["none"]
    for kind in FLOW_KINDS:
        for key in ("per_s", "worker_cpu_us", "redis_cpu_us"):
            if base.get(key) and key in out[kind]:
                out[kind][f"{key}_ratio"] = out[kind][key] / base[key]
    return out


def _limit(ctx: Context, limits: FlowLimits | None) -> Callable[[], None]:
    def setup() -> None:
        if limits is None:
            return
        client = Client.from_url(ctx.runner.url)
        try:
            client.set_flow(QUEUE, limits)
        finally:
            client.close()
        inspector = Inspector.from_url(ctx.runner.url)
        try:
            status = inspector.flow(QUEUE)
        finally:
            inspector.close()
        types = {
            t.type: TypeLimits(rate=t.rate, burst=t.burst, concurrency=t.concurrency)
            for t in status.types
        }
        stored = FlowLimits(
            rate=status.rate,
            burst=status.burst,
            concurrency=status.concurrency,
            types=types or None,
        )
        if stored != limits:  # the drain must run with exactly these limits in force
            raise BenchError(f"flow limits read back as {stored}, set {limits}")

    return setup


def _median(runs: list[Metrics]) -> Metrics:
    out: Metrics = {"rounds": len(runs), "done": min(run["done"] for run in runs)}
    for key in ("per_s", "worker_cpu_us", "redis_cpu_us"):
        values = [run[key] for run in runs if key in run]
        if values:
            out[key] = statistics.median(values)
    notes = [run["note"] for run in runs if "note" in run]
    if notes:
        out["note"] = "; ".join(notes)
    return out


SCENARIOS = {"fleet": fleet, "flow": flow}
"""Run for rq_sched only; the peers' multi-process figures are in the ``scale`` scenario."""
