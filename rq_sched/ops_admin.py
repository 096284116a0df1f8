"""The script calls of an operator's actions on one task or on a queue: archive, delete, run
now, cancel a running task, pause. The inspector builds them (for the CLI and the dashboard);
the worker archives with :func:`archive` too, a retry cancelled while it was written. Callers
import them through :mod:`rq_sched.ops`.
"""

from __future__ import annotations

from rq_sched import scripts
from rq_sched.clock import to_ms
from rq_sched.keys import QueueKeys
from rq_sched.ops_lifecycle import ArchiveLimits, outcome_entry
from rq_sched.scripts import Call


def archive(
    keys: QueueKeys, task_id: str, *, unique: str | None, now_s: float, limits: ArchiveLimits
) -> Call:
    """An operator archives a pending, scheduled or retry task. The reply is
    ``[1, archived tasks deleted by the trim]``; the trim uses the queue's stored limits
    (``limits`` only when it has none)."""
    return (
        scripts.load("archive"),
        (
            *keys.state_keys,
            keys.result,
            keys.lost,
            keys.unique(unique),
            keys.cancel,
            keys.limits,
            keys.waiters,
            *keys.outbox_keys,
            keys.progress,
            *keys.keyed,
            keys.marker,
        ),
        (
            task_id,
            to_ms(now_s),
            limits.max_size,
            int(limits.max_age_s * 1000),
            keys.final_prefix,
            outcome_entry("archived", "archived by an operator"),
        ),
    )


def cancel(keys: QueueKeys, task_id: str, unique: str | None) -> Call:
    """Record a cancel request for an active task (before announcing it)."""
    return (
        scripts.load("cancel"),
        (keys.msg, keys.lease, keys.cancel),
        (task_id, unique or ""),
    )


def delete(keys: QueueKeys, task_id: str, unique: str | None) -> Call:
    return (
        scripts.load("delete"),
        (
            *keys.state_keys,
            keys.result,
            keys.lost,
            keys.unique(unique),
            keys.cancel,
            keys.waiters,
            keys.progress,
            *keys.outbox_keys,
            *keys.keyed,
            keys.marker,
        ),
        (task_id, keys.final_prefix, outcome_entry("deleted", None)),
    )


def run_now(keys: QueueKeys, task_id: str) -> Call:
    return (
        scripts.load("run_now"),
        (*keys.state_keys, keys.marker, *keys.keyed),
        (task_id,),
    )


def set_paused(keys: QueueKeys, paused: bool) -> Call:
    return scripts.load("set_paused"), (keys.paused, keys.marker), ("1" if paused else "0",)
