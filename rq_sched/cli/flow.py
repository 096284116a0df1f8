"""``rq-sched flow``: show or change a queue's flow limits (rate limit, concurrency cap, the
per-key limits of its keyed tasks, the limits of single task types and of single keys) at run
time. Options given change only what they name; the rest of the stored limits stay. The status
lists the limited task types, the keys with limits of their own and the keys with the most
waiting tasks. The per-type and per-key options live in :mod:`rq_sched.cli.flow_lanes`.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from rq_sched.cli import flow_lanes
from rq_sched.cli.flow_lanes import (
    changed_keys,
    changed_types,
    describe_key_limits,
    describe_types,
    lanes_named,
)
from rq_sched.cli.runner import _command
from rq_sched.cli.tables import render_table
from rq_sched.flow import FlowLimits, FlowStatus, KeyLimits
from rq_sched.inspector.inspector import Inspector
from rq_sched.inspector.models import jsonable
from rq_sched.keyed import FlowKeys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``flow`` subcommand to the parser."""
    flow = _command(sub, "flow", "show or change a queue's rate limit and concurrency cap", _flow)
    flow.add_argument("queue")
    flow.add_argument("--rate", help="task starts per period across all workers, e.g. 100/s")
    flow.add_argument("--burst", type=int, help="task starts allowed at once after a pause")
    flow.add_argument("--concurrency", type=int, help="most tasks running at once, all workers")
    flow.add_argument("--no-rate", action="store_true", help="remove the rate limit")
    flow.add_argument("--no-concurrency", action="store_true", help="remove the cap")
    flow.add_argument("--key-rate", help="task starts per period of each key, e.g. 10/s")
    flow.add_argument("--key-burst", type=int, help="starts of one key allowed at once")
    flow.add_argument("--key-concurrency", type=int, help="most tasks of one key running at once")
    flow.add_argument(
        "--key-hold-on-retry",
        action=argparse.BooleanOptionalAction,
        help="a task waiting for a retry keeps its key's slot (strict order per key)",
    )
    flow.add_argument("--no-key-rate", action="store_true", help="remove the per-key rate")
    flow.add_argument("--no-key-concurrency", action="store_true", help="remove the per-key cap")
    flow_lanes.add_arguments(flow)
    flow.add_argument("--keys", type=int, default=10, help="keys listed (most waiting first)")
    flow.add_argument("--clear", action="store_true", help="remove every flow limit")


def _flow(inspector: Inspector, args: argparse.Namespace) -> Any:
    changes = (
        args.rate,
        args.burst,
        args.concurrency,
        args.key_rate,
        args.key_burst,
        args.key_concurrency,
        args.key_hold_on_retry,
    )
    removals = (args.no_rate, args.no_concurrency, args.no_key_rate, args.no_key_concurrency)
    if args.clear or any(v is not None for v in changes) or any(removals) or lanes_named(args):
        limits = None if args.clear else _changed(inspector.flow(args.queue), args)
        status = inspector.set_flow(args.queue, limits)
    else:
        status = inspector.flow(args.queue)
    keys = inspector.flow_keys(args.queue, args.keys)
    if args.json:
        # The status's own fields, with the busiest keys under "keys" (as before the keys'
        # own limits came) and the keys' own limits (FlowStatus.keys) under "key_limits".
        shown = jsonable(status)
        return {**shown, "key_limits": shown["keys"], "keys": jsonable(keys)}
    text = describe(status)
    for table in (describe_types(status), describe_key_limits(status)):
        if table:
            text += "\n" + table
    return text + "\n" + describe_keys(keys)


def _changed(current: FlowStatus, args: argparse.Namespace) -> FlowLimits:
    key_rate = None if args.no_key_rate else _given(args.key_rate, current.key_rate)
    key_cap = (
        None if args.no_key_concurrency else _given(args.key_concurrency, current.key_concurrency)
    )
    hold = _given(args.key_hold_on_retry, current.key_hold_on_retry)
    limits = FlowLimits(
        rate=None if args.no_rate else _given(args.rate, current.rate),
        burst=_given(args.burst, current.burst),
        concurrency=None if args.no_concurrency else _given(args.concurrency, current.concurrency),
        key_rate=key_rate,
        key_burst=_given(args.key_burst, current.key_burst),
        key_concurrency=key_cap,
        # Removing the per-key cap removes the hold that needs it.
        key_hold_on_retry=hold and key_cap is not None,
        # The types' limits stay as they are unless named (FlowLimits replaces them all).
        types=changed_types(current, args),
    )
    # So do the keys' own; a key new to --for-key starts from the per-key defaults being set
    # (checked above).
    defaults = KeyLimits(limits.key_rate, limits.key_burst, limits.key_concurrency)
    return dataclasses.replace(limits, keys=changed_keys(current, args, defaults))


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
    if status.key_limited or status.keyed_pending:
        key_rate = (
            "none" if status.key_rate is None else f"{status.key_rate} (burst {status.key_burst})"
        )
        key_cap = "none" if status.key_concurrency is None else str(status.key_concurrency)
        if status.key_hold_on_retry:
            key_cap += ", held through retries"
        rows += [
            ["per-key rate", key_rate],
            ["per-key concurrency", key_cap],
            ["keyed pending", str(status.keyed_pending)],
            ["keys in turn", str(status.keys_ready)],
            ["keys waiting for a token", str(status.keys_waiting)],
        ]
    return f"queue {status.queue}\n" + render_table(["", ""], rows)


def describe_keys(keys: FlowKeys) -> str:
    """The busiest fairness keys as a table (empty when the queue has none)."""
    if not keys.total:
        return ""
    rows = []
    for k in keys.keys:
        state = k.state
        if k.next_token_at is not None:
            state += " until " + k.next_token_at.strftime("%H:%M:%S.%f")[:-3] + " UTC"
        tokens = "-" if k.tokens is None else str(k.tokens)
        rows.append([k.key, str(k.pending), str(k.running), tokens, state])
    table = render_table(["key", "pending", "running", "tokens", "state"], rows)
    return f"{keys.total} key(s) with tasks, the busiest:\n{table}"
