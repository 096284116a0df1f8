"""``tools/chaos``: run a soak, audit it, print the table and the verdict.

Exit status: 0 for a clean audit, 1 for any violation (the seed is printed to replay it),
2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from chaos_lib import ledger as ledger_mod
from chaos_lib.audit import Audit, ledger_lines
from chaos_lib.plan import ALL_KINDS, BASIC, ISSUE10, KNOWN_BAD, SURVIVABLE
from chaos_lib.report import print_report, summary
from chaos_lib.roles import OPS
from chaos_lib.run import Settings, Soak

MAX_TASKS_SHOWN = 15
MAX_LINES_SHOWN = 25


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/chaos",
        description="Chaos soak with an audit: run workers, producers, schedulers and an "
        "operator while injecting faults, then account for every task.",
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds of chaos (120; 45 with --quick)"
    )
    parser.add_argument("--seed", type=int, help="replay the fault schedule of this seed")
    parser.add_argument("--aof", choices=("always", "everysec"), default="always")
    parser.add_argument("--quick", action="store_true", help="a CI-sized run (45 s of chaos)")
    parser.add_argument(
        "--faults",
        default="all",
        help="comma-separated fault kinds, or 'all', 'survivable' (what today's main survives), "
        "'basic', 'issue10' (the kinds issue 10's fixes made clean) or 'known-bad'; kinds: "
        f"{', '.join(ALL_KINDS)}",
    )
    parser.add_argument(
        "--ops",
        default=",".join(OPS),
        help=f"operator actions to take (default all: {','.join(OPS)})",
    )
    parser.add_argument("--rate", type=float, help="producer iterations per second (each)")
    parser.add_argument("--fault-gap", type=float, help="mean seconds between faults")
    parser.add_argument("--workers", type=int, default=3, help="rq_sched.Server workers (+1 CLI)")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="handler slots per worker (%(default)s)"
    )
    parser.add_argument(
        "--no-cli-worker",
        action="store_true",
        help="no `rq-sched worker` (its archive limit is the default 10,000)",
    )
    parser.add_argument("--settle", type=float, help="seconds to wait for queues to empty")
    parser.add_argument("--dir", type=Path, help="keep the run (ledger, logs, Redis) here")
    parser.add_argument("--json", type=Path, help="write the audit summary here as JSON")
    parser.add_argument(
        "--audit-only",
        type=Path,
        metavar="DIR",
        help="audit a kept run directory again (no new run)",
    )
    return parser.parse_args(argv)


def kinds_of(text: str) -> tuple[str, ...]:
    named = {
        "all": ALL_KINDS,
        "survivable": SURVIVABLE,
        "basic": BASIC,
        "issue10": ISSUE10,
        "known-bad": KNOWN_BAD,
    }
    if text in named:
        if not named[text]:
            raise SystemExit(f"tools/chaos: no fault kind is {text!r} today")
        return named[text]
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown:
        raise SystemExit(
            f"tools/chaos: unknown fault kind(s) {unknown}; use {', '.join(ALL_KINDS)}"
        )
    return kinds


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def ops_of(text: str) -> tuple[str, ...]:
    ops = tuple(o.strip() for o in text.split(",") if o.strip())
    unknown = [o for o in ops if o not in OPS]
    if unknown:
        raise SystemExit(f"tools/chaos: unknown operator action(s) {unknown}; use {', '.join(OPS)}")
    return ops


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.audit_only:
        return audit_only(args.audit_only, args.aof)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    duration = args.duration if args.duration is not None else 45.0 if args.quick else 120.0
    run_dir = args.dir or Path(tempfile.mkdtemp(prefix="rq-sched-chaos-"))
    settings = Settings(
        seed=seed,
        duration=duration,
        aof=args.aof,
        kinds=kinds_of(args.faults),
        run_dir=run_dir,
        rate=args.rate or (3.0 if args.quick else 12.0),
        mean_gap=args.fault_gap or (2.0 if args.quick else 1.5),
        settle_timeout=args.settle or (60.0 if args.quick else 180.0),
        workers=args.workers,
        concurrency=args.concurrency,
        cli_worker=not args.no_cli_worker,
        ops=ops_of(args.ops),
    )
    print(f"chaos: seed {seed}, {duration:g}s, aof {args.aof}, faults {','.join(settings.kinds)}")
    print(f"chaos: run directory {run_dir}", flush=True)
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupt)  # so a SIGTERM still stops what the soak started
    snapshot = Soak(settings).run()
    with (run_dir / "snapshot.pickle").open("wb") as handle:
        pickle.dump(snapshot, handle)  # lets `--audit-only` audit this run again
    events = list(ledger_mod.read(run_dir / "ledger"))
    result = Audit(events, snapshot, args.aof).run()
    print_report(result, seed=seed, aof=args.aof, wall=time.monotonic() - started)
    if args.json:
        args.json.write_text(json.dumps(summary(result, seed=seed, aof=args.aof), indent=1))
    if result.violations:
        _show_lines(result.violations, events)
        print(
            f"\nchaos: VIOLATIONS; replay with: tools/chaos --seed {seed} --duration {duration:g} "
            f"--aof {args.aof} --faults {args.faults} --ops {args.ops}"
        )
        print(f"chaos: ledger and logs kept in {run_dir}")
        return 1
    if args.dir is None:
        shutil.rmtree(run_dir, ignore_errors=True)
    print("chaos: clean")
    return 0


def audit_only(run_dir: Path, aof: str) -> int:
    with (run_dir / "snapshot.pickle").open("rb") as handle:
        snapshot = pickle.load(handle)  # our own file, written by this tool
    events = list(ledger_mod.read(run_dir / "ledger"))
    runs = [e for e in events if e["ev"] == "run"]
    seed = int(runs[0]["seed"]) if runs else 0
    aof = str(runs[0]["aof"]) if runs else aof
    result = Audit(events, snapshot, aof).run()
    print_report(result, seed=seed, aof=aof, wall=0.0)
    if result.violations:
        _show_lines(result.violations, events)
        return 1
    return 0


def _show_lines(
    violations: dict[str, list[tuple[str, str]]], events: list[dict[str, object]]
) -> None:
    shown = 0
    for kind, cases in sorted(violations.items()):
        for task, detail in cases[:3]:
            if shown >= MAX_TASKS_SHOWN or task == "-" or "/" not in task:
                continue
            shown += 1
            print(f"\n--- {kind}: {task}: {detail}")
            for line in ledger_lines(events, task)[:MAX_LINES_SHOWN]:
                print("   ", json.dumps(line, default=str))


if __name__ == "__main__":
    sys.exit(main())
