"""Tables of results with rq_sched's advantage over each peer, and the targets check.

An advantage above 1 means rq_sched is better: ours / theirs for rates, theirs / ours for
latencies, memory and idle commands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

OURS = "rq_sched"


@dataclass(frozen=True)
class Metric:
    path: str
    """Dotted path into a system's results, e.g. "drain.per_s"."""
    label: str
    higher_is_better: bool
    target: str = ""
    min_advantage: float | None = None
    """Target: advantage over the best peer at least this."""
    absolute: float | None = None
    """Target: rq_sched's own value at least (rates) or at most (the rest) this."""
    compare: bool = True
    """False for a reference figure (e.g. the ceiling): no advantage, no best peer."""


def metrics(backlogs: tuple[int, ...] = ()) -> dict[str, list[Metric]]:
    """The compared figures, grouped by table."""
    tables: dict[str, list[Metric]] = {
        "1. enqueue rate (tasks/s, one client)": [
            Metric("enqueue.single_per_s", "one by one", True, ">= 2x, >= 15k/s", 2.0, 15_000),
            Metric("enqueue.concurrent_per_s", "100 producers", True, ">= 30k/s", None, 30_000),
            Metric("enqueue.bulk_per_s", "bulk API", True, ">= 100k/s", None, 100_000),
        ],
        "2. drain throughput (tasks/s, one worker process)": [
            Metric("drain.per_s", "no-op tasks/s", True, ">= 2x, >= 25k/s", 2.0, 25_000),
        ],
        "2b. queue CPU per task while draining (us; worker processes and redis-server)": [
            Metric("drain.worker_cpu_us", "worker", False, "below every peer", 1.0),
            Metric("drain.redis_cpu_us", "redis-server", False, "below every peer", 1.0),
        ],
        "2c. drain with a one-Redis-call handler (INCR; tasks/s, us/task, one worker process)": [
            Metric("drain_call.per_s", "one-call tasks/s", True),
            Metric("drain_call.worker_cpu_us", "worker us", False),
            Metric("drain_call.redis_cpu_us", "redis us", False),
            Metric("drain_call.ceiling_per_s", "ceiling/s", True, compare=False),
            Metric("drain_call.ceiling_cpu_us", "ceiling us", False, compare=False),
            Metric("drain_call.pct_of_ceiling", "% of ceiling", True, ">= 95 %", None, 95),
        ],
        "3. idle pickup latency (ms, enqueue -> handler start)": [
            Metric("pickup.p50", "p50", False, "<= 1 ms", None, 1.0),
            Metric("pickup.p99", "p99", False, "<= 3 ms", None, 3.0),
        ],
        "4. delayed-task lateness (ms, handler start - due)": [
            Metric("delayed.p50", "p50", False),
            Metric("delayed.p99", "p99", False, "<= 5 ms", None, 5.0),
            Metric("delayed.max", "max", False),
        ],
        "5. memory per pending task (bytes, 100-byte two-field dict payload)": [
            Metric(
                "memory.bytes_per_task", "bytes/task", False, "below every peer, <= 240 B", 1.0, 240
            ),
        ],
        "6. idle worker (Redis commands/s)": [
            Metric("idle.per_s", "commands/s", False, "<= 2/s", None, 2.0),
        ],
        "7a. scale (drain tasks/s by worker processes)": [
            Metric(f"scale.{n}.per_s", f"{n} proc", True) for n in (1, 2, 4)
        ],
    }
    rows: list[Metric] = []
    for size in backlogs:
        rows.append(Metric(f"backlog.{size}.enqueue_per_s", f"enqueue@{_short(size)}", True))
        rows.append(Metric(f"backlog.{size}.drain_per_s", f"drain@{_short(size)}", True))
    if rows:
        tables["7b. enqueue + drain with tasks scheduled for later (tasks/s)"] = rows
    return tables


def _short(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


def lookup(results: dict[str, Any], path: str) -> float | None:
    node: Any = results
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, int | float) and not math.isnan(node):
        return float(node)
    return None


def advantage(metric: Metric, ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None:
        return None
    num, den = (ours, theirs) if metric.higher_is_better else (theirs, ours)
    if den == 0:
        return math.inf if num > 0 else None
    return num / den


def best_peer(metric: Metric, results: dict[str, dict[str, Any]]) -> tuple[str, float] | None:
    peers = [(name, lookup(res, metric.path)) for name, res in results.items() if name != OURS]
    valid = [(n, v) for n, v in peers if v is not None]
    if not valid:
        return None
    pick = max if metric.higher_is_better else min
    return pick(valid, key=lambda nv: nv[1])


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_adv(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.2f}x"


def target_check(metric: Metric, results: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Whether rq_sched meets ``metric``'s target; None when the metric has none."""
    if not metric.target:
        return None
    ours = lookup(results.get(OURS, {}), metric.path)
    best = best_peer(metric, results)
    adv = advantage(metric, ours, best[1]) if best else None
    met = ours is not None
    if met and metric.absolute is not None:
        assert ours is not None
        met = ours >= metric.absolute if metric.higher_is_better else ours <= metric.absolute
    if met and metric.min_advantage is not None and adv is not None:
        met = adv >= metric.min_advantage if metric.min_advantage > 1 else adv > 1
    return {
        "metric": metric.path,
        "target": metric.target,
        "rq_sched": ours,
        "best_peer": best[0] if best else None,
        "best_peer_value": best[1] if best else None,
        "advantage": adv,
        "met": met,
    }


def render(results: dict[str, dict[str, Any]], backlogs: tuple[int, ...]) -> str:
    """Every table as text, plus the targets summary."""
    lines: list[str] = []
    systems = list(results)
    for title, group in metrics(backlogs).items():
        lines += ["", f"== {title} =="]
        header = f"{'system':<12}" + "".join(f"{m.label:>16}{'adv':>9}" for m in group)
        lines.append(header)
        for name in systems:
            row = f"{name:<12}"
            for m in group:
                value = lookup(results[name], m.path)
                shown = name != OURS and m.compare
                adv = advantage(m, lookup(results.get(OURS, {}), m.path), value) if shown else None
                row += f"{fmt(value):>16}{fmt_adv(adv) if shown else '':>9}"
            lines.append(row)
        for m in group:
            best = best_peer(m, results) if m.compare else None
            if best:
                adv = advantage(m, lookup(results.get(OURS, {}), m.path), best[1])
                peer = f"{best[0]} {fmt(best[1])}"
                lines.append(f"  best peer for {m.label}: {peer} -> rq_sched {fmt_adv(adv)}")
        notes = _notes(results, group)
        lines += [f"  note: {n}" for n in notes]
    lines += render_fleet(results.get(OURS, {}).get("fleet"))
    lines += render_flow(results.get(OURS, {}).get("flow"))
    checks = [c for m in all_metrics(backlogs) if (c := target_check(m, results))]
    if checks:
        lines += ["", "== targets (rq_sched vs. the best peer in this run) =="]
        for c in checks:
            mark = "MET " if c["met"] else "MISS"
            peer = f"{c['best_peer'] or '-'} {fmt(c['best_peer_value'])}"
            lines.append(
                f"  [{mark}] {c['metric']:<24} target {c['target']:<26} "
                f"rq_sched {fmt(c['rq_sched'])}  best peer {peer}  adv {fmt_adv(c['advantage'])}"
            )
    return "\n".join(lines)


def render_fleet(fleet: Any) -> list[str]:
    """rq_sched's ``rq-sched worker --workers N`` drains: rate, speed-up, CPU per task."""
    if not isinstance(fleet, dict) or "error" in fleet:
        return []
    lines = [
        "",
        "== 8. rq-sched worker --workers N (rq_sched only; drain, CPU per task in us) ==",
        f"{'handler':<10}{'N':>3}{'tasks/s':>12}{'speed-up':>10}{'worker us':>11}{'redis us':>10}",
    ]
    for handler, runs in fleet.items():
        for count, run in runs.items():
            lines.append(
                f"{handler:<10}{count:>3}{fmt(lookup(run, 'per_s')):>12}"
                f"{fmt_adv(lookup(run, 'speedup')):>10}{fmt(lookup(run, 'worker_cpu_us')):>11}"
                f"{fmt(lookup(run, 'redis_cpu_us')):>10}"
            )
            lines += [f"  note: {handler} N={count}: {n}" for n in _collect_notes(run)]
    return lines


def render_flow(flow: Any) -> list[str]:
    """rq_sched's drain under each flow-limit kind, as ratios to no limits."""
    if not isinstance(flow, dict) or "error" in flow:
        return []
    lines = [
        "",
        "== 9. flow-limit overhead on drain (rq_sched only; limits that never hold back) ==",
        f"{'limits':<14}{'tasks/s':>10}{'ratio':>8}{'worker us':>11}{'ratio':>8}"
        f"{'redis us':>10}{'ratio':>8}",
    ]
    for kind, run in flow.items():
        lines.append(
            f"{kind:<14}{fmt(lookup(run, 'per_s')):>10}{fmt_adv(lookup(run, 'per_s_ratio')):>8}"
            f"{fmt(lookup(run, 'worker_cpu_us')):>11}"
            f"{fmt_adv(lookup(run, 'worker_cpu_us_ratio')):>8}"
            f"{fmt(lookup(run, 'redis_cpu_us')):>10}{fmt_adv(lookup(run, 'redis_cpu_us_ratio')):>8}"
        )
        lines += [f"  note: {kind}: {n}" for n in _collect_notes(run)]
    return lines


def all_metrics(backlogs: tuple[int, ...]) -> list[Metric]:
    return [m for group in metrics(backlogs).values() for m in group]


def _notes(results: dict[str, dict[str, Any]], group: list[Metric]) -> list[str]:
    scenarios = {m.path.split(".")[0] for m in group}
    out: list[str] = []
    for name, res in results.items():
        for scenario in sorted(scenarios):
            out += [f"{name}: {n}" for n in _collect_notes(res.get(scenario))]
    return out


def _collect_notes(node: Any) -> list[str]:
    if not isinstance(node, dict):
        return []
    found = [str(node[k]) for k in ("skipped", "note", "bulk_skipped", "error") if k in node]
    for key, value in node.items():
        if isinstance(value, dict) and key != "commands":
            found += [f"{key}: {n}" for n in _collect_notes(value)]
    return found
