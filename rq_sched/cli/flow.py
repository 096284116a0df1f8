"""``rq-sched flow``: show or change a queue's flow limits (rate limit, concurrency cap) at run
time. Options given change only what they name; the rest of the stored limits stay.
"""

from __future__ import annotations

import argparse
from typing import Any

from rq_sched.cli.admin import _command, render_table
from rq_sched.flow import FlowLimits, FlowStatus
from rq_sched.inspector.inspector import Inspector


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``flow`` subcommand to the parser."""
    flow = _command(sub, "flow", "show or change a queue's rate limit and concurrency cap", _flow)
    flow.add_argument("queue")
    flow.add_argument("--rate", help="task starts per period across all workers, e.g. 100/s")
    flow.add_argument("--burst", type=int, help="task starts allowed at once after a pause")
    flow.add_argument("--concurrency", type=int, help="most tasks running at once, all workers")
    flow.add_argument("--no-rate", action="store_true", help="remove the rate limit")
    flow.add_argument("--no-concurrency", action="store_true", help="remove the cap")
    flow.add_argument("--clear", action="store_true", help="remove every flow limit")


def _flow(inspector: Inspector, args: argparse.Namespace) -> Any:
    changes = (args.rate, args.burst, args.concurrency)
    changing = any(v is not None for v in changes) or args.no_rate or args.no_concurrency
    if args.clear or changing:
        current = inspector.flow(args.queue)
        limits = None
        if not args.clear:
            rate = None if args.no_rate else _given(args.rate, current.rate)
            burst = _given(args.burst, current.burst)
            cap = None if args.no_concurrency else _given(args.concurrency, current.concurrency)
            limits = FlowLimits(rate=rate, burst=burst, concurrency=cap)
        status = inspector.set_flow(args.queue, limits)
    else:
        status = inspector.flow(args.queue)
    return status if args.json else describe(status)


def _given(value: Any, current: Any) -> Any:
    return current if value is None else value


def describe(status: FlowStatus) -> str:
    """The flow status as a small table for a terminal."""
    if status.rate is None:
        rate = "none"
        tokens = "-"
    else:
        rate = f"{status.rate} (burst {status.burst})"
        tokens = str(status.tokens)
        if status.next_token_at is not None:
            at = status.next_token_at.strftime("%H:%M:%S.%f")[:-3]
            tokens += f", next at {at} UTC"
    cap = "none" if status.concurrency is None else str(status.concurrency)
    rows = [
        ["rate limit", rate],
        ["tokens now", tokens],
        ["concurrency cap", cap],
        ["running (leased)", str(status.active)],
        ["pending", str(status.pending)],
        ["waiting for a slot", "yes" if status.held else "no"],
    ]
    return f"queue {status.queue}\n" + render_table(["", ""], rows)
