"""The Django app config: checks the ``RQ_SCHED`` settings when Django starts."""

from __future__ import annotations

from django.apps import AppConfig

from rq_sched.contrib.django.conf import settings


class RqSchedConfig(AppConfig):
    """``rq_sched.contrib.django`` in ``INSTALLED_APPS``; its label is ``rq_sched``."""

    name = "rq_sched.contrib.django"
    label = "rq_sched"
    verbose_name = "rq_sched task queue"

    def ready(self) -> None:
        settings()  # a mistake in RQ_SCHED fails at startup, not at the first enqueue
