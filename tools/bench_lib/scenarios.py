"""The scenarios every system runs, each on a fresh database and bounded in time.

Each function returns plain metrics (or ``{"skipped": why}``) for the JSON file and the
tables. Producer-side timing happens in the system's own interpreter (bench_lib.producer);
worker-side times come from the probe in the handlers (bench_lib.probe).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench_lib.probe import CALLS
from bench_lib.runner import Runner
from bench_lib.systems import System

Metrics = dict[str, Any]

PAYLOAD: dict[str, Any] = {"id": 1234567, "data": "x" * 76}
"""The task argument of the one-call drain and the memory scenario: a two-field dict of
100 bytes as compact JSON (each system then encodes it its own way)."""


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is: ``--quick`` or full."""

    enqueue: int
    bulk: int
    drain: int
    drain_budget: float
    scale: tuple[int, ...]
    pickup: int
    pickup_budget: float
    delayed: int
    delay_range: tuple[float, float]
    memory: int
    idle_seconds: float
    backlogs: tuple[int, int]
    backlog_tasks: int
    backlog_budget: float
    """Longest time allowed for building one backlog; bigger builds are skipped with a note."""
    ceiling_rounds: int
    """Runs of the bare-loop ceiling per one-call drain; the median is reported."""
    fleet: tuple[int, ...]
    """Worker process counts of ``rq-sched worker --workers N``."""
    fleet_n: int
    flow_rounds: int
    """Rounds over the flow-limit kinds (interleaved); the median per kind is reported."""


QUICK = Sizes(
    enqueue=2000, bulk=10_000, drain=5000, drain_budget=8, scale=(1, 2), pickup=30,
    pickup_budget=8, delayed=30, delay_range=(0.5, 1.5), memory=5000, idle_seconds=3,
    backlogs=(2000, 20_000), backlog_tasks=1000, backlog_budget=8, ceiling_rounds=3,
    fleet=(1, 2, 4), fleet_n=10_000, flow_rounds=1,
)  # fmt: skip
FULL = Sizes(
    enqueue=10_000, bulk=100_000, drain=20_000, drain_budget=20, scale=(1, 2, 4), pickup=200,
    pickup_budget=30, delayed=200, delay_range=(0.5, 3.0), memory=20_000, idle_seconds=10,
    backlogs=(10_000, 1_000_000), backlog_tasks=10_000, backlog_budget=60, ceiling_rounds=3,
    fleet=(1, 2, 4), fleet_n=60_000, flow_rounds=3,
)  # fmt: skip


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, linearly interpolated."""
    data = sorted(values)
    if not data:
        return float("nan")
    pos = (len(data) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summary(values: list[float]) -> Metrics:
    return {
        "n": len(values),
        "p50": pct(values, 0.5),
        "p99": pct(values, 0.99),
        "max": max(values) if values else float("nan"),
        "mean": sum(values) / len(values) if values else float("nan"),
    }


@dataclass
class Context:
    runner: Runner
    sizes: Sizes
    caps: dict[str, bool]
    earlier: Metrics
    """This system's results so far (the enqueue rate sizes the backlog builds)."""


def enqueue(ctx: Context, system: System) -> Metrics:
    """N tasks one by one from one client; from 100 concurrent producers in one process; and
    the bulk API where one exists."""
    r, s = ctx.runner, ctx.sizes
    r.fresh()
    single = r.produce(system, "fill", timeout=120, n=s.enqueue)
    out: Metrics = {"single_per_s": single["rate"], "n": s.enqueue}
    r.fresh()
    many = r.produce(system, "fill_concurrent", timeout=120, n=s.enqueue * 5, producers=100)
    out["concurrent_per_s"] = many["rate"]
    if not many["concurrent"]:
        out["concurrent_note"] = "no asyncio client: the 100 producers take turns"
    if ctx.caps["bulk"]:
        r.fresh()
        bulk = r.produce(system, "fill", timeout=120, n=s.bulk, bulk=True)
        out.update(bulk_per_s=bulk["rate"], bulk_n=s.bulk)
    else:
        out["bulk_skipped"] = "no bulk enqueue API"
    return out


def drain_run(
    ctx: Context,
    system: System,
    workers: int,
    n: int,
    *,
    handler: str = "noop",
    payload: Any = 0,
    setup: Callable[[], None] | None = None,
) -> Metrics:
    """``n`` pre-enqueued tasks through ``workers`` worker processes; ``setup`` runs after the
    tasks are enqueued, before the workers start."""
    r = ctx.runner
    r.fresh()
    r.produce(system, "fill", timeout=300, n=n, bulk=True, payload=payload)
    if setup is not None:
        setup()
    marks: dict[str, Any] = {}

    def first_start() -> None:  # CPU counted from here: worker start-up is not a task's cost
        marks["cpu"], marks["done"] = r.cpu_seconds(), r.done()

    with r.workers(system, workers, handler=handler):
        done = r.wait_done(n, ctx.sizes.drain_budget, on_first=first_start)
        cpu = r.cpu_seconds()
    return drained(r, n, done, marks.get("done", done), marks.get("cpu", cpu), cpu)


def drained(
    r: Runner,
    n: int,
    done: int,
    done_before: int,
    cpu_before: tuple[float, float],
    cpu_after: tuple[float, float],
) -> Metrics:
    """A drain's figures: rate from first to last handler start, and worker and Redis CPU
    per task over the tasks started between the two CPU readings."""
    first, last = r.span()
    rate = (done - 1) / (last - first) if done > 1 and last > first else 0.0
    out: Metrics = {"per_s": rate, "done": done, "n": n, "seconds": last - first}
    counted = done - done_before
    if counted > 0:
        out["worker_cpu_us"] = (cpu_after[0] - cpu_before[0]) / counted * 1e6
        out["redis_cpu_us"] = (cpu_after[1] - cpu_before[1]) / counted * 1e6
    if done < n:
        out["note"] = f"stopped after the time budget: {done} of {n} done"
    elif done > n:
        out["note"] = f"{done} handler runs for {n} tasks (some ran more than once)"
    return out


def drain(ctx: Context, system: System) -> Metrics:
    """Throughput of one worker process (and, for rq_sched, 20k tasks in full mode)."""
    return drain_run(ctx, system, 1, ctx.sizes.drain)


def drain_call(ctx: Context, system: System) -> Metrics:
    """One worker process draining tasks whose handler makes one Redis call (``INCR``), next
    to the ceiling: the same body in a bare loop, same concurrency, one process."""
    r, n = ctx.runner, ctx.sizes.drain
    r.fresh()
    ceilings = sorted((r.ceiling(n) for _ in range(ctx.sizes.ceiling_rounds)),
                      key=lambda c: c["per_s"])  # fmt: skip
    ceiling = ceilings[len(ceilings) // 2]
    out = drain_run(ctx, system, 1, n, handler="call", payload=PAYLOAD)
    calls = int(ctx.runner.r.get(CALLS) or 0)
    out.update(
        calls=calls,
        ceiling_per_s=ceiling["per_s"],
        ceiling_cpu_us=ceiling["cpu_us"],
        ceiling_redis_cpu_us=ceiling["redis_cpu_us"],
        ceiling_runs=[c["per_s"] for c in ceilings],
        pct_of_ceiling=100 * out["per_s"] / ceiling["per_s"],
    )
    if calls < out["done"]:
        out["error"] = f"{out['done']} handler runs counted but only {calls} calls made"
    elif calls > n and "note" not in out:
        out["note"] = f"the handler ran {calls} times for {n} tasks (some ran more than once)"
    return out


def pickup(ctx: Context, system: System) -> Metrics:
    """Idle worker; one task at a time; enqueue -> handler start."""
    r = ctx.runner
    r.fresh()
    s = ctx.sizes
    with r.workers(system, 1, probe="stamp"):
        res = r.produce(
            system, "pickup", timeout=90 + s.pickup_budget, n=s.pickup, budget=s.pickup_budget
        )
    out = summary(res["latencies_ms"])
    if out["n"] < s.pickup:
        out["note"] = f"{out['n']} of {s.pickup} tasks within the {s.pickup_budget:.0f} s budget"
    return out


def delayed(ctx: Context, system: System) -> Metrics:
    """Tasks due in 0.5-3 s: handler start - due time."""
    if not ctx.caps["delayed"]:
        return {"skipped": system.no_delayed or "no delayed tasks"}
    r, (lo, hi) = ctx.runner, ctx.sizes.delay_range
    r.fresh()
    with r.workers(system, 1, probe="stamp"):
        res = r.produce(
            system, "lateness", timeout=90 + hi, n=ctx.sizes.delayed, min_delay=lo, max_delay=hi
        )
    out = summary(res["late_ms"])
    if res.get("missing"):
        out["note"] = f"{res['missing']} of {ctx.sizes.delayed} never ran within {hi + 10:.0f} s"
    return out


def memory(ctx: Context, system: System) -> Metrics:
    """used_memory growth per pending task, each with :data:`PAYLOAD` as its argument."""
    ctx.runner.fresh()
    res = ctx.runner.produce(system, "memory", timeout=300, n=ctx.sizes.memory, payload=PAYLOAD)
    return {"bytes_per_task": res["bytes_per_task"], "n": ctx.sizes.memory}


def idle(ctx: Context, system: System) -> Metrics:
    """Redis commands per second sent by one idle worker (INFO commandstats delta)."""
    r = ctx.runner
    r.fresh()
    with r.workers(system, 1):
        r.produce(system, "warm", timeout=90)
        time.sleep(1.0)
        before, t0 = r.command_calls(), time.monotonic()
        time.sleep(ctx.sizes.idle_seconds)
        after, t1 = r.command_calls(), time.monotonic()
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}
    seconds = t1 - t0
    return {
        "per_s": sum(delta.values()) / seconds,
        "seconds": seconds,
        "commands": dict(sorted(delta.items(), key=lambda kv: -kv[1])),
    }


def scale(ctx: Context, system: System) -> Metrics:
    """Drain throughput with 1, 2 and 4 worker processes (1 is the drain scenario's run)."""
    out: Metrics = {}
    for count in ctx.sizes.scale:
        if count == 1 and "per_s" in ctx.earlier.get("drain", {}):
            out["1"] = ctx.earlier["drain"]
            continue
        out[str(count)] = drain_run(ctx, system, count, ctx.sizes.drain)
    return out


def backlog(ctx: Context, system: System) -> Metrics:
    """Enqueue + drain of N tasks with 10k vs 1M (quick: 2k vs 20k) tasks scheduled for later."""
    if system.no_backlog:
        return {"skipped": system.no_backlog}
    if not ctx.caps["delayed"]:
        return {"skipped": system.no_delayed or "no delayed tasks"}
    s, r = ctx.sizes, ctx.runner
    out: Metrics = {}
    for size in s.backlogs:
        estimate = _build_estimate(ctx, size)
        if estimate > s.backlog_budget:
            out[str(size)] = {
                "skipped": f"building the backlog would take ~{estimate:.0f} s "
                f"(budget {s.backlog_budget:.0f} s)"
            }
            continue
        r.fresh()
        built = r.produce(
            system, "fill", timeout=s.backlog_budget * 3, n=size, bulk=True, backlog=True
        )
        enq = r.produce(system, "fill", timeout=120, n=s.backlog_tasks)
        with r.workers(system, 1):
            done = r.wait_done(s.backlog_tasks, s.drain_budget)
        first, last = r.span()
        out[str(size)] = {
            "build_per_s": built["rate"],
            "enqueue_per_s": enq["rate"],
            "drain_per_s": (done - 1) / (last - first) if done > 1 and last > first else 0.0,
            "done": done,
            "n": s.backlog_tasks,
        }
    return out


def _build_estimate(ctx: Context, size: int) -> float:
    rates = ctx.earlier.get("enqueue", {})
    rate = rates.get("bulk_per_s") if ctx.caps["bulk_delayed"] else rates.get("single_per_s")
    return size / rate if rate else 0.0


SCENARIOS: dict[str, Callable[[Context, System], Metrics]] = {
    "enqueue": enqueue,
    "drain": drain,
    "drain_call": drain_call,
    "pickup": pickup,
    "delayed": delayed,
    "memory": memory,
    "idle": idle,
    "scale": scale,
    "backlog": backlog,
}
