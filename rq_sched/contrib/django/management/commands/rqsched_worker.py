"""``manage.py rqsched_worker``: ``rq-sched worker`` with the ``RQ_SCHED`` settings.

Django is set up before the router is imported, so handlers use the ORM as in any view
(``async def`` handlers through Django's async ORM API or ``sync_to_async``). Handlers
registered with ``process=True`` run in child processes that import only their own module:
such a handler must call ``django.setup()`` itself before it touches the ORM.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from rq_sched import cli
from rq_sched.contrib.django.conf import settings


class Command(BaseCommand):
    """Run a worker server until SIGTERM or SIGINT (exit status as ``rq-sched worker``)."""

    help = "Run a rq_sched worker server with the RQ_SCHED settings."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "router", nargs="?", help="module:attribute of the Router (default: RQ_SCHED['ROUTER'])"
        )
        parser.add_argument("--queues", help="e.g. critical=6,default=3 (default: RQ_SCHED)")
        parser.add_argument("--concurrency", type=int, help="handlers at once (default: RQ_SCHED)")
        parser.add_argument("--processes", type=int, help="run sync handlers in N child processes")
        parser.add_argument("--shutdown-timeout", type=float, default=10.0, metavar="SECONDS")
        parser.add_argument("--lease", type=float, help="lease seconds (default: RQ_SCHED)")
        parser.add_argument(
            "--archive-max-size", type=int, help="archived tasks kept per queue (RQ_SCHED)"
        )
        parser.add_argument(
            "--archive-max-age", type=float, help="seconds archived tasks are kept (RQ_SCHED)"
        )
        parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")

    def handle(self, *args: Any, **options: Any) -> None:
        conf = settings()
        router = options["router"] or conf.router
        if not router:
            raise CommandError(
                "name the router: manage.py rqsched_worker myapp.tasks:router, or set "
                "RQ_SCHED['ROUTER']"
            )
        concurrency = conf.concurrency if options["concurrency"] is None else options["concurrency"]
        processes = conf.processes if options["processes"] is None else options["processes"]
        argv = [
            "--log-level", options["log_level"], "worker", router,
            "--url", conf.url, "--namespace", conf.namespace,
            "--queues", options["queues"] or conf.queues_text,
            "--concurrency", str(concurrency), "--processes", str(processes),
            "--shutdown-timeout", str(options["shutdown_timeout"]),
            "--lease", str(_given(options["lease"], conf.lease)),
            "--archive-max-size", str(_given(options["archive_max_size"], conf.archive_max_size)),
            "--archive-max-age", str(_given(options["archive_max_age"], conf.archive_max_age)),
        ]  # fmt: skip
        if conf.cluster:
            argv.append("--cluster")
        code = cli.main(argv)
        if code:
            sys.exit(code)


def _given(option: object, setting: object) -> object:
    """The command-line value when one was given, else the setting's."""
    return setting if option is None else option
