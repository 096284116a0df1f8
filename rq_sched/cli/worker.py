"""``rq-sched worker``: run a worker server for a router given as ``module:attribute``."""

from __future__ import annotations

import argparse
import sys

from rq_sched.cli.common import add_redis_options, fail, import_object
from rq_sched.cli.fleet import Fleet, watch_supervisor, worker_command
from rq_sched.errors import ValidationError
from rq_sched.ops import ArchiveLimits
from rq_sched.router import Router
from rq_sched.worker.config import parse_queues
from rq_sched.worker.server import Server
from rq_sched.worker.supervisor import ServerUnhealthyError

DEFAULT_ARCHIVE = ArchiveLimits()

EXIT_UNHEALTHY = 3
"""Exit status when a background loop kept failing (2 is bad usage): restart the worker."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "worker",
        help="run a worker server",
        description="Run handlers from ROUTER (module:attribute, e.g. myapp.tasks:router).",
    )
    parser.add_argument("router", help="module:attribute of a rq_sched.Router")
    add_redis_options(parser)
    parser.add_argument(
        "--queues", default="default", help="weighted queues, e.g. critical=6,default=3,low=1"
    )
    parser.add_argument(
        "--strict", action="store_true", help="strict priority: heavier queues always first"
    )
    parser.add_argument("--concurrency", type=int, default=10, help="handlers at once")
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="run every sync handler in child processes, at most N at once",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run N worker processes under this command (one event loop each; about one core"
        " each), restarted if they die and stopped together (default %(default)s)",
    )
    parser.add_argument("--shutdown-timeout", type=float, default=10.0, metavar="SECONDS")
    parser.add_argument("--lease", type=float, default=10.0, metavar="SECONDS")
    parser.add_argument(
        "--archive-max-size",
        type=int,
        default=DEFAULT_ARCHIVE.max_size,
        metavar="N",
        help="archived tasks kept per queue; the oldest beyond are deleted (default %(default)s)."
        " Give every server of a queue the same archive limits",
    )
    parser.add_argument(
        "--archive-max-age",
        type=float,
        default=DEFAULT_ARCHIVE.max_age_s,
        metavar="SECONDS",
        help="archived tasks older than this are deleted (default %(default)s: 90 days)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        router = import_object(args.router)
        if not isinstance(router, Router):
            return fail(f"{args.router} is a {type(router).__name__}, not a rq_sched.Router")
        server = Server.from_url(
            args.url,
            cluster=args.cluster,
            queues=parse_queues(args.queues),
            strict_priority=args.strict,
            concurrency=args.concurrency,
            processes=args.processes,
            shutdown_timeout=args.shutdown_timeout,
            lease_duration=args.lease,
            archive_limits=ArchiveLimits(
                max_size=args.archive_max_size, max_age_s=args.archive_max_age
            ),
            namespace=args.namespace,
        )
        if not isinstance(args.workers, int) or args.workers < 1:
            raise ValidationError(f"--workers must be an int >= 1; got {args.workers!r}")
    except ValidationError as exc:
        return fail(str(exc))
    if args.workers > 1:
        # Everything above was checked here once; each worker checks it again as it starts.
        command = worker_command(getattr(args, "argv", sys.argv[1:]))
        return Fleet(command, args.workers, shutdown_timeout=args.shutdown_timeout).run()
    watch_supervisor(server.stop)
    try:
        server.run(router)
    except ServerUnhealthyError as exc:
        print(f"rq-sched: error: {exc}", file=sys.stderr)
        return EXIT_UNHEALTHY
    return 0
