"""``rq-sched flow``: show or change a queue's flow limits (rate limit, concurrency cap, the
per-key limits of its keyed tasks, and the limits of single task types) at run time. Options
given change only what they name; the rest of the stored limits stay. The status lists the
limited task types and the keys with the most waiting tasks.
"""

from __future__ import annotations

import argparse
from typing import Any

from rq_sched.cli.runner import _command
from rq_sched.cli.tables import render_table
from rq_sched.errors import ValidationError
from rq_sched.flow import FlowLimits, FlowStatus, TypeLimits
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
    flow.add_argument("--type", metavar="TYPE", help="the task type the --type-* options limit")
    flow.add_argument("--type-rate", help="task starts per period of that type, e.g. 10/s")
    flow.add_argument("--type-burst", type=int, help="starts of that type allowed at once")
    flow.add_argument("--type-concurrency", type=int, help="most tasks of that type running")
    flow.add_argument("--no-type-rate", action="store_true", help="remove that type's rate")
    flow.add_argument("--no-type-concurrency", action="store_true", help="remove that type's cap")
    flow.add_argument(
        "--no-type",
        action="append",
        default=[],
        metavar="TYPE",
        help="remove every limit of that task type (repeatable)",
    )
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
    types_named = args.type is not None or bool(_type_options(args)) or bool(args.no_type)
    if args.clear or any(v is not None for v in changes) or any(removals) or types_named:
        limits = None if args.clear else _changed(inspector.flow(args.queue), args)
        status = inspector.set_flow(args.queue, limits)
    else:
        status = inspector.flow(args.queue)
    keys = inspector.flow_keys(args.queue, args.keys)
    if args.json:
        # The status's own fields as before, with the busiest keys added.
        return {**jsonable(status), "keys": jsonable(keys)}
    text = describe(status)
    if status.types:
        text += "\n" + describe_types(status)
    return text + "\n" + describe_keys(keys)


def _changed(current: FlowStatus, args: argparse.Namespace) -> FlowLimits:
    key_cap = (
        None if args.no_key_concurrency else _given(args.key_concurrency, current.key_concurrency)
    )
    hold = _given(args.key_hold_on_retry, current.key_hold_on_retry)
    return FlowLimits(
        rate=None if args.no_rate else _given(args.rate, current.rate),
        burst=_given(args.burst, current.burst),
        concurrency=None if args.no_concurrency else _given(args.concurrency, current.concurrency),
        key_rate=None if args.no_key_rate else _given(args.key_rate, current.key_rate),
        key_burst=_given(args.key_burst, current.key_burst),
        key_concurrency=key_cap,
        # Removing the per-key cap removes the hold that needs it.
        key_hold_on_retry=hold and key_cap is not None,
        # The types' limits stay as they are unless named (FlowLimits replaces them all).
        types=_changed_types(current, args),
    )


def _type_options(args: argparse.Namespace) -> list[str]:
    """The --type-* options given, by name."""
    given = {
        "--type-rate": args.type_rate is not None,
        "--type-burst": args.type_burst is not None,
        "--type-concurrency": args.type_concurrency is not None,
        "--no-type-rate": args.no_type_rate,
        "--no-type-concurrency": args.no_type_concurrency,
    }
    return [name for name, on in given.items() if on]


def _changed_types(current: FlowStatus, args: argparse.Namespace) -> dict[str, TypeLimits]:
    """The queue's per-type limits with ``--type``/``--type-*`` and ``--no-type`` applied.

    Raises:
        ValidationError: a --type-* option without --type (or the reverse), a type both
            changed and removed, or removed while it has no limits.
    """
    types = current.type_limits()
    options = _type_options(args)
    if options and args.type is None:
        raise ValidationError(
            f"{', '.join(options)} limit(s) one task type: name it with --type TYPE"
        )
    if args.type is not None and not options:
        raise ValidationError(
            "--type names the task type that --type-rate, --type-burst, --type-concurrency, "
            "--no-type-rate or --no-type-concurrency change; give one of them (to remove "
            "all of its limits: --no-type TYPE)"
        )
    for name in args.no_type:
        if name == args.type:
            raise ValidationError(f"task type {name!r} is both changed (--type) and removed")
        if types.pop(name, None) is None:
            limited = ", ".join(types) or "none"
            raise ValidationError(
                f"task type {name!r} has no limits on queue {current.queue!r} to remove "
                f"(limited types: {limited})"
            )
    if args.type is not None:
        _change_type(types, args)
    return types


def _change_type(types: dict[str, TypeLimits], args: argparse.Namespace) -> None:
    """Merge the --type-* options into the limits of ``args.type`` (in ``types``)."""
    name = args.type
    old = types.get(name)
    rate = None if args.no_type_rate else _given(args.type_rate, old and old.rate)
    cap = (
        None if args.no_type_concurrency else _given(args.type_concurrency, old and old.concurrency)
    )
    if rate is None and args.type_burst is not None:
        raise ValidationError(
            f"--type-burst sets how many tasks of {name!r} its rate lets start at once: "
            "give the type a rate too (--type-rate, e.g. 10/s)"
        )
    if rate is None and cap is None:
        if old is None:
            raise ValidationError(
                f"task type {name!r} has no limits to remove; set some with --type-rate or "
                "--type-concurrency"
            )
        del types[name]  # neither limit is left: the type is served as any other
        return
    try:
        types[name] = TypeLimits(
            rate=rate, burst=_given(args.type_burst, old.burst if old else 1), concurrency=cap
        )
    except ValidationError as exc:
        raise ValidationError(f"--type {name}: {exc}") from None


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


def describe_types(status: FlowStatus) -> str:
    """The limited task types as a table (empty when the queue limits none)."""
    rows = []
    for t in status.types:
        due = "-"
        if t.next_token_at is not None:
            due = t.next_token_at.strftime("%H:%M:%S.%f")[:-3] + " UTC"
        rows.append(
            [
                t.type,
                t.rate or "none",
                str(t.burst) if t.rate is not None else "-",
                "none" if t.concurrency is None else str(t.concurrency),
                str(t.pending),
                str(t.running),
                "-" if t.tokens is None else str(t.tokens),
                t.state,
                due,
            ]
        )
    if not rows:
        return ""
    headers = [
        "type",
        "rate",
        "burst",
        "cap",
        "in lane",
        "running",
        "tokens",
        "state",
        "next token",
    ]
    return f"{len(rows)} limited task type(s):\n" + render_table(headers, rows)


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
