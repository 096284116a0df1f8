"""``tools/failover`` options, the runs they ask for, and the table of results."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from failover_lib.run import SCENARIOS, Outcome, Plan, measure_rate, run, to_json

COLUMNS = [
    ("scenario", 18), ("replicas", 8), ("acknowledged", 12), ("unconfirmed", 11),
    ("refused", 7), ("run", 6), ("lost", 4), ("duplicated", 10), ("worker_pause_s", 14),
    ("producer_pause_s", 16), ("redirects", 9),
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/failover", description=__doc__)
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="repeatable")
    parser.add_argument("--replicas", default="0,1", help="WAIT counts to run, e.g. 0,1")
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200.0, help="enqueues/s per producer")
    parser.add_argument("--before", type=float, default=3.0)
    parser.add_argument("--after", type=float, default=3.0)
    parser.add_argument("--rate-seconds", type=float, default=3.0,
                        help="length of the enqueue-rate measurement (0: skip it)")  # fmt: skip
    parser.add_argument("--dir", type=Path, help="where servers and logs go (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    scenarios = args.only or list(SCENARIOS)
    counts = [int(x) for x in args.replicas.split(",")]
    base = args.dir or Path(tempfile.mkdtemp(prefix="rq-sched-failover-"))
    outcomes: list[Outcome] = []
    for scenario in scenarios:
        for replicas in counts:
            plan = Plan(
                scenario, replicas=replicas, producers=args.producers, workers=args.workers,
                rate=args.rate, before=args.before, after=args.after,
            )  # fmt: skip
            outcome = run(plan, base / f"{scenario}-r{replicas}")
            outcomes.append(outcome)
            print(_row(outcome), flush=True)
    rates: dict[str, float] = {}
    if args.rate_seconds > 0:
        for kind in dict.fromkeys(SCENARIOS[s][0] for s in scenarios):
            scenario = next(s for s in scenarios if SCENARIOS[s][0] == kind)
            for replicas in counts:
                name = f"{kind} replicas={replicas}"
                where = base / f"rate-{kind}-r{replicas}"
                rates[name] = round(measure_rate(scenario, replicas, args.rate_seconds, where))
                print(f"enqueue rate, one producer, {name}: {rates[name]}/s", flush=True)
    print()
    print(" | ".join(name.ljust(width) for name, width in COLUMNS))
    for outcome in outcomes:
        print(_row(outcome))
    if args.json:
        args.json.write_text(to_json(outcomes, rates))
    return 0


def _row(outcome: Outcome) -> str:
    return " | ".join(str(getattr(outcome, name)).ljust(width) for name, width in COLUMNS)
