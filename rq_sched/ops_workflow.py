"""The script calls of tasks that wait for other tasks (docs/workflows.md): a dependant held
until its parents' outcomes are delivered to it, the brief state of a workflow's task, and
aggregation groups that wait to be committed as one task. Callers import them through
:mod:`rq_sched.ops`.
"""

from __future__ import annotations

from collections.abc import Sequence

from rq_sched import scripts
from rq_sched.keys import QueueKeys
from rq_sched.ops_lifecycle import BATCH_LIMIT, outcome_entry
from rq_sched.options import Prepared
from rq_sched.scripts import Call


def dep_hold(keys: QueueKeys, task_id: str, held: bytes, record: bytes) -> Call:
    """Store a task that waits for its parents (see ``lua/dep_hold.lua``)."""
    return (
        scripts.load("dep_hold"),
        (keys.msg, keys.archived, keys.held, keys.deps, keys.result, keys.dep_parents),
        (task_id, held, record),
    )


def dep_link(
    keys: QueueKeys,
    parent_id: str,
    child: QueueKeys,
    child_id: str,
    *,
    index: int,
    expect_new: bool,
) -> Call:
    """Register ``child_id`` (of ``child``'s queue) as a dependant of ``parent_id``."""
    return (
        scripts.load("dep_link"),
        (
            keys.msg,
            keys.lease,
            keys.scheduled,
            keys.retry,
            keys.archived,
            keys.completed,
            keys.result,
            keys.children,
            keys.outbox,
            keys.held,
            keys.dependants(parent_id),
        ),
        (parent_id, child.queue, child_id, index, "1" if expect_new else "0"),
    )


def dep_report(
    keys: QueueKeys, child_id: str, index: int, entry: bytes, outcome: str, *, parent: str
) -> Call:
    """Deliver one parent's outcome to a held child (idempotent); ``parent`` is its
    "queue/id" name, for the error text of a failed parent."""
    return (
        scripts.load("dep_report"),
        (
            keys.held,
            keys.deps,
            keys.reports,
            keys.msg,
            keys.pending,
            keys.marker,
            keys.archived,
            keys.waiters,
            *keys.outbox_keys,
            keys.dep_parents,
        ),
        (child_id, index, entry, outcome, keys.final_prefix, parent),
    )


def dep_drop(keys: QueueKeys, task_id: str) -> Call:
    """An operator deletes a held task; NOT_FOUND when none is held under ``task_id``."""
    return (
        scripts.load("dep_drop"),
        (
            keys.held,
            keys.deps,
            keys.dep_parents,
            keys.reports,
            keys.waiters,
            *keys.outbox_keys,
        ),
        (task_id, keys.final_prefix, outcome_entry("deleted", None)),
    )


def dep_ack(keys: QueueKeys, task_id: str) -> Call:
    """Drop a delivered outcome record and the list of dependants it was delivered to."""
    return scripts.load("dep_ack"), (*keys.outbox_keys, keys.dependants(task_id)), (task_id,)


def dep_due(keys: QueueKeys, grace_ms: int, limit: int = BATCH_LIMIT) -> Call:
    """Ids whose recorded outcome is older than ``grace_ms`` and still undelivered."""
    return scripts.load("dep_due"), (keys.outbox_at,), (grace_ms, limit)


def dep_read(keys: QueueKeys, task_id: str) -> Call:
    """A task's dependants and recorded outcome: ``[[msgpack (child queue, child id, index),
    ...], entry or None]``."""
    return scripts.load("dep_read"), (keys.dependants(task_id), keys.outbox), (task_id,)


def task_brief(keys: QueueKeys, task_id: str) -> Call:
    """``[held, message or None, active, archived, completed]`` of one task (workflow status)."""
    return (
        scripts.load("task_brief"),
        (keys.held, keys.msg, keys.lease, keys.archived, keys.completed),
        (task_id,),
    )


def enqueue_grouped(
    keys: QueueKeys, group: str, entry: bytes, now_ms: int, limits: tuple[int, int, int]
) -> Call:
    """Add a task to aggregation group ``group``; ``limits`` (grace ms, max delay ms, max size)
    apply when the queue stores none. The reply is the group's size."""
    return (
        scripts.load("enqueue_grouped"),
        (keys.agg_group(group), keys.agg_groups, keys.agg_first, keys.agg_conf, keys.marker),
        (group, entry, now_ms, *limits),
    )


def agg_due(keys: QueueKeys, now_ms: int, limit: int = BATCH_LIMIT) -> Call:
    """Groups due by ``now_ms``: ``[groups, next due ms or -1]``."""
    return scripts.load("agg_due"), (keys.agg_groups,), (now_ms, limit)


def agg_take(keys: QueueKeys, group: str, now_ms: int, max_size: int) -> Call:
    """Read a due group's head entries (up to its max size)."""
    return (
        scripts.load("agg_take"),
        (keys.agg_group(group), keys.agg_groups, keys.agg_conf),
        (group, now_ms, max_size),
    )


def agg_commit(
    keys: QueueKeys,
    group: str,
    *,
    now_ms: int,
    grace_ms: int,
    task: Prepared | None,
    entries: Sequence[bytes],
) -> Call:
    """Replace the group's head ``entries`` by ``task`` (None: drop them), if still its head.
    The reply is 1 committed, 0 not the head any more, or CONFLICT (``task``'s id is taken:
    nothing changed)."""
    return (
        scripts.load("agg_commit"),
        (
            keys.agg_group(group),
            keys.agg_groups,
            keys.agg_first,
            keys.agg_conf,
            keys.msg,
            keys.pending,
            keys.marker,
            keys.archived,
            keys.result,
            keys.held,
        ),
        (
            group,
            now_ms,
            grace_ms,
            task.id if task is not None else "",
            task.encoded if task is not None else b"",
            *entries,
        ),
    )


def agg_conf(keys: QueueKeys, limits: tuple[int, int, int]) -> Call:
    """Store the queue's aggregation limits (grace ms, max delay ms, max size)."""
    return scripts.load("agg_conf"), (keys.agg_conf,), limits
