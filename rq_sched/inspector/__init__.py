"""Admin reads and operator actions on queues, tasks, servers and scheduler entries.

:mod:`~rq_sched.inspector.inspector` holds the one public entry point, :class:`Inspector`;
:mod:`~rq_sched.inspector.lists` (queue reads), :mod:`~rq_sched.inspector.actions` (bulk and
queue-wide actions), :mod:`~rq_sched.inspector.processes` (servers, scheduler, Redis INFO) and
:mod:`~rq_sched.inspector.models` (the result types) do the work. The CLI and the dashboard build
on it; the worker and the scheduler never import it.
"""

from rq_sched.inspector.inspector import Inspector
from rq_sched.inspector.models import (
    BulkResult,
    DailyStats,
    QueueStats,
    RedisNode,
    SchedulerStatus,
    ServerStatus,
    TaskPage,
)

__all__ = [
    "BulkResult",
    "DailyStats",
    "Inspector",
    "QueueStats",
    "RedisNode",
    "SchedulerStatus",
    "ServerStatus",
    "TaskPage",
]
