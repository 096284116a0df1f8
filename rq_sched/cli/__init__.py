"""The ``rq-sched`` command line: one subcommand module per area, registered here."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from rq_sched.cli import admin, dev, dq, enqueue, flow, scheduler, web, worker

_MODULES = (dev, worker, scheduler, web, admin, enqueue, flow, dq)


class _Parser(argparse.ArgumentParser):
    """Argument errors say how to pass a value that starts with ``-`` (a task id the user
    chose, say), which argparse otherwise reads as an unknown option."""

    def error(self, message: str) -> NoReturn:
        if "arguments are required" in message or "unrecognized arguments" in message:
            message += " (a value that starts with '-', such as a task id, goes after '--': "
            message += "rq-sched task QUEUE -- -ID)"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rq-sched", description="rq_sched: a distributed task queue on Redis.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rq-sched`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for commands that start copies
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
