"""``manage.py rqsched_scheduler``: ``rq-sched scheduler`` with the ``RQ_SCHED`` settings.

Entries come from ``RQ_SCHED['SCHEDULE']`` (a TOML file, reloaded when it changes or on
SIGHUP) and/or ``RQ_SCHED['SCHEDULE_APP']`` (``module:attribute`` of a Scheduler or of a
function returning entries); ``--config`` and ``--app`` override them. Run as many as you like:
each tick is still enqueued exactly once.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from rq_sched import cli
from rq_sched.contrib.django.conf import settings


class Command(BaseCommand):
    """Run the periodic scheduler until SIGTERM or SIGINT."""

    help = "Run the rq_sched periodic scheduler with the RQ_SCHED settings."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--config", help="TOML file of entries (default: RQ_SCHED['SCHEDULE'])")
        parser.add_argument("--app", help="module:attribute (default: RQ_SCHED['SCHEDULE_APP'])")
        parser.add_argument("--check", action="store_true", help="print the next fires and exit")
        parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")

    def handle(self, *args: Any, **options: Any) -> None:
        conf = settings()
        config = options["config"] or conf.schedule
        app = options["app"] or conf.schedule_app
        if not config and not app:
            raise CommandError(
                "no entries: set RQ_SCHED['SCHEDULE'] (a TOML file) and/or "
                "RQ_SCHED['SCHEDULE_APP'], or pass --config / --app"
            )
        argv = ["--log-level", options["log_level"], "scheduler", "--url", conf.url]
        argv += ["--namespace", conf.namespace]
        if config:
            argv += ["--config", config]
        if app:
            argv += ["--app", app]
        if conf.cluster:
            argv.append("--cluster")
        if options["check"]:
            argv.append("--check")
        code = cli.main(argv)
        if code:
            sys.exit(code)
