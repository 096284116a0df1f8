"""Options every subcommand shares: where Redis is and which namespace to use."""

from __future__ import annotations

import argparse
import os

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def add_redis_options(parser: argparse.ArgumentParser) -> None:
    """``--url`` (env RQ_SCHED_URL), ``--cluster`` and ``--namespace`` (env RQ_SCHED_NAMESPACE)."""
    parser.add_argument(
        "--url",
        default=os.environ.get("RQ_SCHED_URL", DEFAULT_URL),
        help="Redis URL (env RQ_SCHED_URL; default %(default)s)",
    )
    parser.add_argument(
        "--cluster", action="store_true", help="the URL names a node of a Redis Cluster"
    )
    parser.add_argument(
        "--namespace",
        default=os.environ.get("RQ_SCHED_NAMESPACE", "rqs"),
        help="key namespace (env RQ_SCHED_NAMESPACE; default %(default)s)",
    )
