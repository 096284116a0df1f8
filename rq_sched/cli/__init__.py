"""The ``rq-sched`` command line: one subcommand module per area, registered here."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from rq_sched.cli import admin, dev, dq, scheduler, web, worker

_MODULES = (dev, worker, scheduler, web, admin, dq)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rq-sched", description="rq_sched: a distributed task queue on Redis."
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rq-sched`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
