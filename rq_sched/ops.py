"""Argument building for every Lua script, apart from executing it: the one module to import.

Each function returns a :data:`~rq_sched.scripts.Call` (script, KEYS, ARGV) that the sync client,
the async client, the worker and the tests all run the same way. Keeping the argument layout in
one place keeps it in step with the script headers in ``lua/``. Callers write ``ops.<name>``;
the builders are written in three modules, by what the call is for:

- :mod:`rq_sched.ops_lifecycle`: a task's life (enqueue, lease, settle, progress, trim) and the
  limits and outcome records every call shares;
- :mod:`rq_sched.ops_admin`: an operator's actions (archive, delete, run now, cancel, pause);
- :mod:`rq_sched.ops_workflow`: tasks that wait for others (dependencies, aggregation groups).
"""

from __future__ import annotations

from rq_sched.ops_admin import archive, cancel, delete, run_now, set_paused
from rq_sched.ops_lifecycle import (
    BATCH_LIMIT,
    CORRUPT_TYPE,
    DAILY_COUNTER_DAYS,
    ENQUEUE_BATCH_LIMIT,
    MAX_ARCHIVE,
    Ack,
    ArchiveLimits,
    Leased,
    archive_active,
    archive_corrupt,
    claim_tick,
    day_expire_at,
    dequeue,
    done,
    enqueue,
    enqueue_batch,
    extend,
    forward,
    outcome_entry,
    parse_dequeue,
    progress,
    recover,
    requeue,
    retry,
    trim,
    unwait,
)
from rq_sched.ops_workflow import (
    agg_commit,
    agg_conf,
    agg_due,
    agg_take,
    dep_ack,
    dep_drop,
    dep_due,
    dep_hold,
    dep_link,
    dep_read,
    dep_report,
    enqueue_grouped,
    task_brief,
)

__all__ = [
    "BATCH_LIMIT",
    "CORRUPT_TYPE",
    "DAILY_COUNTER_DAYS",
    "ENQUEUE_BATCH_LIMIT",
    "MAX_ARCHIVE",
    "Ack",
    "ArchiveLimits",
    "Leased",
    "agg_commit",
    "agg_conf",
    "agg_due",
    "agg_take",
    "archive",
    "archive_active",
    "archive_corrupt",
    "cancel",
    "claim_tick",
    "day_expire_at",
    "delete",
    "dep_ack",
    "dep_drop",
    "dep_due",
    "dep_hold",
    "dep_link",
    "dep_read",
    "dep_report",
    "dequeue",
    "done",
    "enqueue",
    "enqueue_batch",
    "enqueue_grouped",
    "extend",
    "forward",
    "outcome_entry",
    "parse_dequeue",
    "progress",
    "recover",
    "requeue",
    "retry",
    "run_now",
    "set_paused",
    "task_brief",
    "trim",
    "unwait",
]
