"""The periodic scheduler: cron and ``@every`` entries turned into tasks exactly once per tick.

:mod:`~rq_sched.scheduler.scheduler` runs the entries, :mod:`~rq_sched.scheduler.entries` builds
them from code or TOML, and :mod:`~rq_sched.scheduler.cron` parses schedules. The scheduler
imports the store and never the worker or the inspector.
"""

from rq_sched.scheduler.scheduler import Scheduler

__all__ = ["Scheduler"]
