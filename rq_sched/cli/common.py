"""Options every subcommand shares: where Redis is and which namespace to use."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from rq_sched.errors import ValidationError

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def add_redis_options(parser: argparse.ArgumentParser) -> None:
    """``--url`` (env RQ_SCHED_URL), ``--cluster`` and ``--namespace`` (env RQ_SCHED_NAMESPACE)."""
    parser.add_argument(
        "--url",
        default=os.environ.get("RQ_SCHED_URL", DEFAULT_URL),
        help="Redis URL: redis://, rediss://, unix://, or "
        "redis+sentinel://host1:26379,host2:26379/<master>/<db> (env RQ_SCHED_URL; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--cluster", action="store_true", help="the URL names a node of a Redis Cluster"
    )
    parser.add_argument(
        "--namespace",
        default=os.environ.get("RQ_SCHED_NAMESPACE", "rqs"),
        help="key namespace (env RQ_SCHED_NAMESPACE; default %(default)s)",
    )


def import_object(spec: str) -> object:
    """Import ``package.module:attribute`` (the attribute may be dotted).

    Raises:
        ValidationError: the spec is malformed or names nothing importable.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValidationError(f"expected module:attribute (e.g. myapp.tasks:router), got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`, find the user's package in the cwd
    try:
        target: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValidationError(f"cannot import {module_name!r}: {exc}") from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise ValidationError(f"{module_name!r} has no attribute {attribute!r}") from exc
    return target


def printable(text: str) -> str:
    """``text`` safe for a terminal: every control, format (bidi) or other unprintable
    character but a newline shown as its escape (``\\x1b``), so data from Redis (ids, types,
    payloads, errors) cannot retitle the window, clear the screen or move the cursor."""
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)


def say(text: str) -> None:
    """Print ``text`` for a person (escaped with :func:`printable`)."""
    print(printable(text))


def complain(message: str) -> int:
    """Print an operational failure (escaped) and return exit code 1."""
    print(f"rq-sched: {printable(message)}", file=sys.stderr)
    return 1


def fail(message: str) -> int:
    """Print an error for the operator (escaped) and return the exit code for bad usage."""
    print(f"rq-sched: error: {printable(message)}", file=sys.stderr)
    return 2
