"""Showing a sharded queue as one queue: its physical queues, summed stats, merged task pages.

A sharded queue (:mod:`rq_sched.shards`) is several physical queues; the inspector, and so the
CLI and the dashboard, name it by its own name. These helpers find its physical queues and
combine what is read from each: counts are summed (with the per-shard stats kept alongside),
and a task list is merged in the order a single queue would list it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import replace
from itertools import zip_longest

from rq_sched import shards
from rq_sched.errors import ValidationError
from rq_sched.inspector.lists import MAX_PAGE_SIZE, NEWEST_FIRST, check_paging, read_page
from rq_sched.inspector.models import BulkResult, QueueStats, TaskPage, TaskSummary, TypeBreakdown
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.models import QueueInfo, TaskState
from rq_sched.scripts import SyncRedis

MAX_MERGED_ROWS = MAX_PAGE_SIZE
"""Deepest row a merged task list reaches (each shard is read from its start down to it)."""


def physical(redis: SyncRedis, namespace: str, queue: str) -> list[str]:
    """Every physical queue of ``queue`` (just ``[queue]`` for a queue that is not sharded and
    has no sub-queue left registered)."""
    pipe = redis.pipeline(transaction=False)
    pipe.hget(GlobalKeys(namespace).shards, queue)
    pipe.smembers(GlobalKeys(namespace).queues)
    raw_n, raw_names = pipe.execute()
    n = shards.parse_counts({queue: raw_n}).get(queue, 1) if raw_n is not None else 1
    return shards.members(queue, n, _texts(raw_names)) if n > 1 else _leftovers(queue, raw_names)


def _leftovers(queue: str, raw_names: Iterable[bytes | str]) -> list[str]:
    found = shards.members(queue, 1, _texts(raw_names))
    return found if len(found) > 1 else [queue]


def logical_names(names: Iterable[str], counts: dict[str, int]) -> list[str]:
    """Registered queue names with sub-queues folded into their queue, plus sharded queues
    that have no task yet, sorted."""
    out = set(counts)
    for name in names:
        parsed = shards.sub_queue_of(name)
        out.add(parsed[0] if parsed is not None else name)
    return sorted(out)


def groups(registry: list[str], counts: dict[str, int]) -> dict[str, list[str]]:
    """Each logical queue (sorted) with its physical queues."""
    return {
        q: shards.members(q, counts[q], registry) if q in counts else _leftovers(q, registry)
        for q in logical_names(registry, counts)
    }


def combine(queue: str, parts: Sequence[QueueStats]) -> QueueStats:
    """One queue's stats from its shards' (counts summed; paused if any shard is paused)."""
    infos = [p.info for p in parts]

    def total(name: str) -> int:
        return sum(int(getattr(i, name)) for i in infos)

    info = QueueInfo(
        queue=queue,
        pending=total("pending"),
        active=total("active"),
        scheduled=total("scheduled"),
        retry=total("retry"),
        archived=total("archived"),
        completed=total("completed"),
        paused=any(i.paused for i in infos),
        processed=total("processed"),
        failed=total("failed"),
        processed_today=total("processed_today"),
        failed_today=total("failed_today"),
        trimmed=total("trimmed"),
    )
    oldest = max(parts, key=lambda p: p.latency)
    memory = [p.memory_bytes for p in parts]
    return QueueStats(
        info,
        oldest.latency,
        oldest.oldest_pending_id,
        None if None in memory else sum(m for m in memory if m is not None),
        tuple(parts),
    )


def merged_page(
    redis: SyncRedis,
    queue: str,
    keys: Sequence[QueueKeys],
    state: TaskState,
    *,
    page: int,
    size: int,
) -> TaskPage:
    """One page of ``state`` across the shards of ``queue``: by time (newest first for archived
    and completed), pending ones taken from the shards in turn, as workers take them.

    Raises:
        ValidationError: bad paging, or a page deeper than MAX_MERGED_ROWS.
    """
    check_paging(page, size)
    depth = page * size
    if depth > MAX_MERGED_ROWS:
        raise ValidationError(
            f"a sharded queue's list reaches row {MAX_MERGED_ROWS} at most; page {page} of "
            f"{size} goes past it: list one shard (named in the queue's stats) to go deeper"
        )
    parts = [read_page(redis, k, state, 1, depth) for k in keys]
    rows: list[TaskSummary]
    if state is TaskState.PENDING:
        rows = [r for turn in zip_longest(*(p.tasks for p in parts)) for r in turn if r]
    else:
        newest = state in NEWEST_FIRST
        rows = list(
            heapq.merge(
                *(p.tasks for p in parts),
                key=lambda r: r.score_at.timestamp() if r.score_at else 0.0,
                reverse=newest,
            )
        )
    start = (page - 1) * size
    return replace(
        parts[0],
        queue=queue,
        page=page,
        size=size,
        total=sum(p.total for p in parts),
        tasks=rows[start : start + size],
    )


def _texts(raw: Iterable[bytes | str]) -> list[str]:
    return [r.decode() if isinstance(r, bytes) else r for r in raw]


def combine_types(queue: str, parts: Sequence[TypeBreakdown]) -> TypeBreakdown:
    """One queue's type breakdown from its shards' (samples, totals and counts summed)."""
    sampled: dict[str, int] = {}
    totals: dict[str, int] = {}
    types: dict[str, dict[str, int]] = {}
    for part in parts:
        for state, n in part.sampled.items():
            sampled[state] = sampled.get(state, 0) + n
        for state, n in part.totals.items():
            totals[state] = totals.get(state, 0) + n
        for name, row in part.types.items():
            into = types.setdefault(name, {})
            for state, n in row.items():
                into[state] = into.get(state, 0) + n
    return TypeBreakdown(queue, sampled, totals, types)


def combine_bulk(queue: str, parts: Sequence[BulkResult]) -> BulkResult:
    """One bulk action's outcome over a queue's shards (what remains summed when counted)."""
    remaining = [p.remaining for p in parts]
    return BulkResult(
        queue,
        parts[0].state,
        parts[0].action,
        sum(p.done for p in parts),
        sum(p.skipped for p in parts),
        sum(p.trimmed for p in parts),
        None if None in remaining else sum(r for r in remaining if r is not None),
    )
