"""``rq-sched dq``: the beanstalkd bridge for operators — put a delayed job, revoke it, watch a
tube (consume and print its jobs), and count a tube's jobs on every node.

Nodes come from ``--node host:port`` (repeatable) or ``RQ_SCHED_DQ_NODES`` (comma-separated),
the tube from ``--tube`` or ``RQ_SCHED_DQ_TUBE``. ``put --backend redis`` enqueues on rq_sched's
Redis instead, the way a producer configured for that backend would.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from rq_sched.cli.common import add_redis_options, fail
from rq_sched.errors import RqSchedError, ValidationError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rq-sched dq put|revoke|consume|stats``."""
    parser = sub.add_parser(
        "dq",
        help="beanstalkd bridge (go-queue dq): put, revoke, consume, stats",
        description="Operate go-queue dq tubes on beanstalkd (or the Redis backend).",
    )
    actions = parser.add_subparsers(dest="dq_command", required=True, metavar="ACTION")
    put = _action(actions, "put", "put a delayed job; prints its id")
    when = put.add_mutually_exclusive_group()
    when.add_argument("--delay", type=float, default=0.0, help="seconds from now (%(default)s)")
    when.add_argument("--at", help="ISO 8601 time with an offset, e.g. 2030-01-01T09:00:00+00:00")
    put.add_argument("body", help="job body; '-' reads it from stdin")
    put.add_argument("--backend", choices=("beanstalkd", "redis"), default="beanstalkd")
    put.add_argument("--type", default="dq", help="task type with --backend redis (%(default)s)")
    put.add_argument("--queue", default="default", help="queue with --backend redis")
    revoke = _action(actions, "revoke", "delete a job by the id put printed")
    revoke.add_argument("ids")
    consume = _action(actions, "consume", "consume a tube, printing each job")
    consume.add_argument("--max", type=int, default=0, help="stop after this many jobs")
    consume.add_argument("--duration", type=float, default=0.0, help="stop after seconds")
    consume.add_argument("--concurrency", type=int, default=1, help="workers per node")
    consume.add_argument(
        "--mixed-pool",
        action="store_true",
        help="Go consumers share the tube: retries become new jobs Go will run (docs/dq.md)",
    )
    _action(actions, "stats", "job counts of the tube on every node")


def _action(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, help=help_text, description=help_text.capitalize())
    parser.add_argument(
        "--node",
        action="append",
        default=None,
        help="beanstalkd host:port, repeatable (env RQ_SCHED_DQ_NODES, comma-separated)",
    )
    parser.add_argument(
        "--tube",
        default=os.environ.get("RQ_SCHED_DQ_TUBE", "tube"),
        help="tube (env RQ_SCHED_DQ_TUBE; default %(default)s)",
    )
    add_redis_options(parser)
    parser.set_defaults(handler=lambda args: _run(name, args))
    return parser


def _run(action: str, args: argparse.Namespace) -> int:
    try:
        commands = importlib.import_module("rq_sched.dq.commands")
    except ImportError as exc:
        return fail(str(exc))
    try:
        code: int = getattr(commands, action)(args)
    except ValidationError as exc:  # DqConfigError included
        return fail(str(exc))
    except RqSchedError as exc:
        print(f"rq-sched: {exc}", file=sys.stderr)
        return 1
    return code
