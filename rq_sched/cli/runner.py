"""How an operations subcommand runs: its parser gets the Redis options and ``--json``, its
handler gets an :class:`~rq_sched.inspector.inspector.Inspector`, errors become exit codes with a
message that says what to do, and what the handler returns is printed (a string as it is, else
as JSON). A destructive command asks for confirmation here too.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from rq_sched.cli.common import add_redis_options, complain, fail, say
from rq_sched.errors import RedisUnavailableError, RqSchedError, ValidationError
from rq_sched.inspector.inspector import Inspector
from rq_sched.inspector.models import jsonable

Handler = Callable[[Inspector, argparse.Namespace], Any]


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    handler: Handler,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:])
    add_redis_options(parser)
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.set_defaults(handler=lambda args: _run(handler, args))
    return parser


def _run(handler: Handler, args: argparse.Namespace) -> int:
    try:
        inspector = Inspector.from_url(args.url, cluster=args.cluster, namespace=args.namespace)
    except ValueError as exc:
        return fail(f"bad --url {args.url!r}: {exc}")
    try:
        result = handler(inspector, args)
    except ValidationError as exc:
        return fail(str(exc))
    except RedisUnavailableError as exc:
        return complain(_unreachable(args, exc))
    except RqSchedError as exc:
        return complain(str(exc))
    finally:
        inspector.close()
    if args.json:
        print(json.dumps(jsonable(result), indent=2))  # json escapes control characters
    elif isinstance(result, str):
        say(result)
    return 0


def _acts(args: argparse.Namespace) -> bool:
    """Whether the command changes anything (else it only reads)."""
    return args.command in ("pause", "unpause") or bool(
        getattr(args, "delete", False)
        or getattr(args, "bulk", None)
        or getattr(args, "shards", None) is not None
        or getattr(args, "action", None)
    )


def _unreachable(args: argparse.Namespace, exc: RedisUnavailableError) -> str:
    # The shared message advises retrying writes with the same task_id; that fits enqueue,
    # not a read, and an operator action needs a look before it is repeated.
    cause = exc.__cause__ or exc
    text = (
        f"cannot talk to Redis at {args.url} ({cause}). Is redis-server running and the URL "
        "right? `rq-sched dev` starts a private one."
    )
    if _acts(args):
        text += " If the connection dropped mid-action, look at the queue before repeating it."
    return text


def _confirmed(args: argparse.Namespace, what: str) -> None:
    """Refuse a destructive command unless --yes was given or a person at a terminal says yes.

    Raises:
        ValidationError: not confirmed.
    """
    if args.yes:
        return
    if sys.stdin.isatty() and sys.stdout.isatty():
        answer = input(f"{what}? Type yes to go on: ")
        if answer.strip().lower() == "yes":
            return
    raise ValidationError(f"not confirmed: {what}; add --yes to do it without a question")
