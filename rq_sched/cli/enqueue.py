"""``rq-sched enqueue``: enqueue one task from the shell, now or later, or once per window
under a key (``--debounce`` / ``--throttle``), and print what happened.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from rq_sched.cli.common import add_redis_options, complain, fail, say
from rq_sched.cli.tables import when
from rq_sched.client import Client
from rq_sched.durations import parse_duration_ms
from rq_sched.errors import RqSchedError, TaskNotFoundError, ValidationError
from rq_sched.inspector.inspector import Inspector
from rq_sched.inspector.models import task_json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``enqueue`` subcommand to the parser."""
    parser = sub.add_parser(
        "enqueue",
        help="enqueue one task",
        description="Enqueue a task of TYPE with a JSON payload, now or later.",
    )
    parser.add_argument("type")
    parser.add_argument("payload", nargs="?", help="JSON, e.g. '{\"to\": 42}' (default: null)")
    add_redis_options(parser)
    parser.add_argument("--queue", default="default")
    later = parser.add_mutually_exclusive_group()
    later.add_argument("--in", dest="process_in", metavar="DURATION", help="e.g. 30s, 5m, 1h30m")
    later.add_argument("--at", dest="process_at", metavar="ISO", help="e.g. 2030-01-01T09:00Z")
    parser.add_argument("--max-retry", type=int, default=25)
    parser.add_argument("--task-id", help="your own id (idempotent enqueue)")
    parser.add_argument("--unique", metavar="DURATION", help="refuse duplicates for this long")
    parser.add_argument("--retention", metavar="DURATION", help="keep the completed task")
    parser.add_argument("--timeout", metavar="DURATION", help="limit on one attempt")
    dedup = parser.add_mutually_exclusive_group()
    dedup.add_argument(
        "--debounce",
        metavar="KEY",
        help="run once per --window under KEY: the newest call's task wins, at the window's end",
    )
    dedup.add_argument(
        "--throttle",
        metavar="KEY",
        help="keep the first call under KEY per --window and drop the rest (reported)",
    )
    parser.add_argument("--window", metavar="DURATION", help="for --debounce / --throttle")
    parser.add_argument("--json", action="store_true", help="print the task as JSON")
    parser.set_defaults(handler=_enqueue)


def _enqueue(args: argparse.Namespace) -> int:
    try:
        options = _enqueue_options(args)
        window = _dedup_window(args)
        client = Client.from_url(args.url, cluster=args.cluster, namespace=args.namespace)
    except ValidationError as exc:
        return fail(str(exc))
    try:
        if window is not None:
            return _enqueue_deduplicated(client, args, options, window)
        info = client.enqueue(args.type, options.pop("payload"), **options)
    except ValidationError as exc:
        return fail(str(exc))
    except RqSchedError as exc:
        return complain(str(exc))
    finally:
        client.close()
    if args.json:
        print(json.dumps(task_json(info), indent=2))
    else:
        due = f" due {when(info.next_process_at, None)}" if info.next_process_at else ""
        say(f"enqueued {info.id} ({info.type}) on {info.queue}: {info.state.value}{due}")
    return 0


def _dedup_window(args: argparse.Namespace) -> float | None:
    """The --window of a --debounce / --throttle call (None for a plain enqueue)."""
    key = args.debounce if args.debounce is not None else args.throttle
    if key is None:
        if args.window is not None:
            raise ValidationError("--window goes with --debounce KEY or --throttle KEY")
        return None
    if args.window is None:
        raise ValidationError("--debounce and --throttle need --window, e.g. --window 30s")
    option = "--debounce" if args.debounce is not None else "--throttle"
    if args.debounce is not None and (args.process_in or args.process_at or args.unique):
        raise ValidationError(
            "--debounce runs the task at the window's end: leave out --in, --at and --unique"
        )
    if args.throttle is not None and args.unique:
        raise ValidationError("--throttle already keeps one task per window: leave out --unique")
    window = _seconds(args.window, "--window")
    assert window is not None  # args.window is set
    if not window > 0:
        raise ValidationError(f"{option}: --window must be longer than 0, e.g. 30s")
    return window


def _enqueue_deduplicated(
    client: Client, args: argparse.Namespace, options: dict[str, Any], window: float
) -> int:
    """``rq-sched enqueue --debounce KEY`` / ``--throttle KEY``: what happened, and the task."""
    payload = options.pop("payload")
    if args.debounce is not None:
        for unused in ("process_in", "process_at", "unique"):
            options.pop(unused)
        debounced = client.debounce(args.type, payload, key=args.debounce, window=window, **options)
        task_id: str | None = debounced.id
        what = "replaced the waiting task" if debounced.replaced else "enqueued"
        outcome = {"debounced": True, "replaced": debounced.replaced}
    else:
        options.pop("unique")
        throttled = client.throttle(args.type, payload, key=args.throttle, window=window, **options)
        task_id = throttled.id
        what = "dropped: the window keeps" if throttled.dropped else "enqueued"
        outcome = {"throttled": True, "dropped": throttled.dropped}
    info = None
    if task_id is not None:
        inspector = Inspector(client.redis, namespace=client.namespace)
        try:
            info = inspector.get_task(args.queue, task_id)
        except TaskNotFoundError:  # it ran and was not kept, meanwhile
            info = None
    if args.json:
        print(json.dumps({**outcome, "task": task_json(info) if info else None}, indent=2))
    elif info is None:
        say(f"{what} no task (the window's task has ended)")
    else:
        due = f" due {when(info.next_process_at, None)}" if info.next_process_at else ""
        say(f"{what} {info.id} ({info.type}) on {info.queue}: {info.state.value}{due}")
    return 0


def _enqueue_options(args: argparse.Namespace) -> dict[str, Any]:
    try:
        payload = json.loads(args.payload) if args.payload is not None else None
    except ValueError as exc:
        raise ValidationError(
            f"payload must be JSON ({exc}); quote strings, e.g. '\"hello\"' or '{{\"to\": 42}}'"
        ) from None
    return {
        "payload": payload,
        "queue": args.queue,
        "process_in": _seconds(args.process_in, "--in"),
        "process_at": _instant(args.process_at),
        "max_retry": args.max_retry,
        "task_id": args.task_id,
        "unique": _seconds(args.unique, "--unique"),
        "retention": _seconds(args.retention, "--retention"),
        "timeout": _seconds(args.timeout, "--timeout"),
    }


def _seconds(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration_ms(text) / 1000
    except ValidationError as exc:
        raise ValidationError(f"{option}: {exc}") from None


def _instant(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            f"--at {text!r} is not an ISO 8601 time; write e.g. 2030-01-01T09:00:00Z"
        ) from None
    if at.tzinfo is None:
        raise ValidationError(
            f"--at {text!r} has no UTC offset; add one, e.g. {text}Z or {text}+02:00"
        )
    return at.astimezone(UTC)
