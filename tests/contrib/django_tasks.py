"""Handlers for the ``manage.py rqsched_worker`` test: they run in a worker process started by
the management command, and report through Redis what Django looked like there."""

from __future__ import annotations

import redis
from django.conf import settings
from django.db import connection

from rq_sched import Router, Task

router = Router()


@router.task("dj:report")
def report(task: Task) -> None:
    """Pushes the configured namespace and a query's result to ``payload["key"]``."""
    with connection.cursor() as cursor:  # the ORM's connection works in a handler thread
        cursor.execute("SELECT 40 + 2")
        (answer,) = cursor.fetchone()
    with redis.Redis.from_url(settings.RQ_SCHED["URL"]) as conn:
        conn.rpush(task.payload["key"], f"{settings.RQ_SCHED['NAMESPACE']}:{answer}")
