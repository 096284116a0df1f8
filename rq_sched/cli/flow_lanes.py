"""The lanes' options of ``rq-sched flow``: ``--type``/``--type-*``/``--no-type`` (one task
type's limits) and ``--for-key``/``--for-key-*``/``--no-for-key`` (one key's own limits),
merged into the queue's current ones so that only what is named changes, and the tables that
show them.
"""

from __future__ import annotations

import argparse
from typing import Any

from rq_sched.cli.tables import render_table
from rq_sched.errors import ValidationError
from rq_sched.flow import FlowStatus, KeyLimits, TypeLimits

_SHOWN_IN_ERRORS = 10
"""Keys with limits of their own named in an error (a queue may have up to 1000)."""


def add_arguments(flow: argparse.ArgumentParser) -> None:
    """Add the per-type and per-key options to the ``flow`` parser."""
    flow.add_argument("--type", metavar="TYPE", help="the task type the --type-* options limit")
    flow.add_argument("--type-rate", help="task starts per period of that type, e.g. 10/s")
    flow.add_argument("--type-burst", type=int, help="starts of that type allowed at once")
    flow.add_argument("--type-concurrency", type=int, help="most tasks of that type running")
    flow.add_argument(
        "--type-weight", type=int, help="turns of the round robin that type's lane takes"
    )
    flow.add_argument("--no-type-rate", action="store_true", help="remove that type's rate")
    flow.add_argument("--no-type-concurrency", action="store_true", help="remove that type's cap")
    flow.add_argument(
        "--no-type",
        action="append",
        default=[],
        metavar="TYPE",
        help="remove every limit of that task type (repeatable)",
    )
    flow.add_argument(
        "--for-key",
        metavar="KEY",
        help="the key the --for-key-* options give limits of its own (a key new to them "
        "starts from the per-key defaults as they are now)",
    )
    flow.add_argument("--for-key-rate", help="task starts per period of that key, e.g. 50/s")
    flow.add_argument("--for-key-burst", type=int, help="starts of that key allowed at once")
    flow.add_argument("--for-key-concurrency", type=int, help="most tasks of that key running")
    flow.add_argument(
        "--for-key-weight", type=int, help="turns of the round robin that key takes (default 1)"
    )
    flow.add_argument("--no-for-key-rate", action="store_true", help="no rate for that key")
    flow.add_argument("--no-for-key-concurrency", action="store_true", help="no cap for that key")
    flow.add_argument(
        "--no-for-key",
        action="append",
        default=[],
        metavar="KEY",
        help="remove a key's own limits: the per-key defaults apply to it again (repeatable)",
    )


def lanes_named(args: argparse.Namespace) -> bool:
    """Whether any per-type or per-key option is given (the limits are to be changed)."""
    return (
        args.type is not None
        or args.for_key is not None
        or bool(_type_options(args) or _key_options(args) or args.no_type or args.no_for_key)
    )


def _type_options(args: argparse.Namespace) -> list[str]:
    """The --type-* options given, by name."""
    given = {
        "--type-rate": args.type_rate is not None,
        "--type-burst": args.type_burst is not None,
        "--type-concurrency": args.type_concurrency is not None,
        "--type-weight": args.type_weight is not None,
        "--no-type-rate": args.no_type_rate,
        "--no-type-concurrency": args.no_type_concurrency,
    }
    return [name for name, on in given.items() if on]


def _key_options(args: argparse.Namespace) -> list[str]:
    """The --for-key-* options given, by name."""
    given = {
        "--for-key-rate": args.for_key_rate is not None,
        "--for-key-burst": args.for_key_burst is not None,
        "--for-key-concurrency": args.for_key_concurrency is not None,
        "--for-key-weight": args.for_key_weight is not None,
        "--no-for-key-rate": args.no_for_key_rate,
        "--no-for-key-concurrency": args.no_for_key_concurrency,
    }
    return [name for name, on in given.items() if on]


def changed_types(current: FlowStatus, args: argparse.Namespace) -> dict[str, TypeLimits]:
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
            "--type-weight, --no-type-rate or --no-type-concurrency change; give one of them "
            "(to remove all of its limits: --no-type TYPE)"
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
        if args.type_weight is not None:
            raise ValidationError(
                f"--type-weight weighs the lane of a limited type, and {name!r} would have "
                "no limits: give it a rate or a cap too (--type-rate, --type-concurrency)"
            )
        if old is None:
            raise ValidationError(
                f"task type {name!r} has no limits to remove; set some with --type-rate or "
                "--type-concurrency"
            )
        del types[name]  # neither limit is left: the type is served as any other
        return
    try:
        types[name] = TypeLimits(
            rate=rate,
            burst=_given(args.type_burst, old.burst if old else 1),
            concurrency=cap,
            weight=_given(args.type_weight, old.weight if old else 1),
        )
    except ValidationError as exc:
        raise ValidationError(f"--type {name}: {exc}") from None


def changed_keys(
    current: FlowStatus, args: argparse.Namespace, defaults: KeyLimits
) -> dict[str, KeyLimits]:
    """The keys' own limits with ``--for-key``/``--for-key-*`` and ``--no-for-key`` applied;
    ``defaults``: the per-key defaults as they will be, where a key new to ``--for-key``
    starts from.

    Raises:
        ValidationError: a --for-key-* option without --for-key (or the reverse), an option
            and its --no- twin together, a key both changed and removed, or removed while it
            has no limits of its own.
    """
    keys = dict(current.keys or {})
    options = _key_options(args)
    if options and args.for_key is None:
        raise ValidationError(
            f"{', '.join(options)} set(s) one key's own limits: name it with --for-key KEY"
        )
    if args.for_key is not None and not options:
        raise ValidationError(
            "--for-key names the key that --for-key-rate, --for-key-burst, "
            "--for-key-concurrency, --for-key-weight, --no-for-key-rate or "
            "--no-for-key-concurrency change; give one of them (to give it back the "
            "per-key defaults: --no-for-key KEY)"
        )
    for option in ("rate", "concurrency"):
        if getattr(args, f"for_key_{option}") is not None and getattr(args, f"no_for_key_{option}"):
            raise ValidationError(f"--for-key-{option} and --no-for-key-{option} contradict")
    for name in args.no_for_key:
        if name == args.for_key:
            raise ValidationError(f"key {name!r} is both changed (--for-key) and removed")
        if keys.pop(name, None) is None:
            raise ValidationError(
                f"key {name!r} has no limits of its own on queue {current.queue!r} to remove "
                f"({_listed(keys)})"
            )
    if args.for_key is not None:
        _change_key(keys, args, defaults)
    return keys


def _listed(keys: dict[str, KeyLimits]) -> str:
    if not keys:
        return "no key has"
    names = ", ".join(list(keys)[:_SHOWN_IN_ERRORS])
    more = f" and {len(keys) - _SHOWN_IN_ERRORS} more" if len(keys) > _SHOWN_IN_ERRORS else ""
    return f"keys with their own: {names}{more}"


def _change_key(keys: dict[str, KeyLimits], args: argparse.Namespace, base: KeyLimits) -> None:
    """Merge the --for-key-* options into the own limits of ``args.for_key`` (in ``keys``),
    or into ``base`` (the defaults) for a key that has none yet."""
    name = args.for_key
    old = keys.get(name, base)
    rate = None if args.no_for_key_rate else _given(args.for_key_rate, old.rate)
    if rate is None and args.for_key_burst is not None:
        raise ValidationError(
            f"--for-key-burst sets how many tasks of key {name!r} its rate lets start at "
            "once: give the key a rate too (--for-key-rate, e.g. 50/s)"
        )
    try:
        keys[name] = KeyLimits(
            rate=rate,
            # A burst without a rate is not stored: none is kept, so as shown is as stored.
            burst=_given(args.for_key_burst, old.burst) if rate is not None else 1,
            concurrency=(
                None
                if args.no_for_key_concurrency
                else _given(args.for_key_concurrency, old.concurrency)
            ),
            weight=_given(args.for_key_weight, old.weight),
        )
    except ValidationError as exc:
        raise ValidationError(f"--for-key {name}: {exc}") from None


def _given(value: Any, current: Any) -> Any:
    return current if value is None else value


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
                str(t.weight),
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
        "weight",
        "in lane",
        "running",
        "tokens",
        "state",
        "next token",
    ]
    return f"{len(rows)} limited task type(s):\n" + render_table(headers, rows)


def describe_key_limits(status: FlowStatus) -> str:
    """The keys with limits of their own as a table (empty when the queue gives none)."""
    rows = [
        [
            key,
            k.rate or "none",
            str(k.burst) if k.rate is not None else "-",
            "none" if k.concurrency is None else str(k.concurrency),
            str(k.weight),
        ]
        for key, k in (status.keys or {}).items()
    ]
    if not rows:
        return ""
    table = render_table(["key", "rate", "burst", "cap", "weight"], rows)
    return f"{len(rows)} key(s) with limits of their own (instead of the per-key defaults):\n" + (
        table
    )
