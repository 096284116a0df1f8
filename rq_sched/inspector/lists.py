"""Bounded reads of queues for the inspector: stats with latency and memory, daily history, and
pages of task summaries per state.

Every function reads a bounded amount of data: counts are O(1) commands, lists are read one page
at a time (LRANGE / ZRANGE by index), and stats for many queues cost two round trips in total.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rq_sched.clock import from_ms, utc_day
from rq_sched.errors import CorruptTaskError, ValidationError
from rq_sched.inspector.models import (
    DailyStats,
    QueueStats,
    TaskPage,
    TaskSummary,
    TypeBreakdown,
    error_preview,
    payload_preview,
)
from rq_sched.keys import QueueKeys
from rq_sched.message import decode
from rq_sched.models import QueueInfo, TaskState
from rq_sched.ops import DAILY_COUNTER_DAYS
from rq_sched.options import check_count
from rq_sched.scripts import SyncRedis

log = logging.getLogger(__name__)

MAX_SCORE_MS = 253_402_300_799_999
"""The last ms of year 9999: the latest time a datetime holds (scores beyond are corrupt)."""
MAX_PAGE_SIZE = 500
"""Largest page of a task list."""
MAX_HISTORY_DAYS = DAILY_COUNTER_DAYS
"""Daily counters are kept this long, so older days read as zero."""
MAX_OFFSET = 2**53
"""Largest task offset a page may reach: far beyond any real queue, and a number both Redis
(int64) and the browser (double) hold exactly."""
FILTER_SCAN_LIMIT = 20_000
"""Tasks of one state a type filter looks at, at most, per request (a bounded read)."""
FILTER_BATCH = 1_000
"""Tasks read per round trip while filtering by type."""
MEMORY_SAMPLES = 5
"""Nested values MEMORY USAGE samples per key: an estimate, cheap even on large hashes."""
NEWEST_FIRST = frozenset({TaskState.ARCHIVED, TaskState.COMPLETED})
"""States listed with the highest score first (the most recent failure or completion)."""


def state_key(keys: QueueKeys, state: TaskState) -> str:
    """The key listing the tasks of ``state`` (a list for pending, a sorted set otherwise)."""
    return {
        TaskState.PENDING: keys.pending,
        TaskState.ACTIVE: keys.lease,
        TaskState.SCHEDULED: keys.scheduled,
        TaskState.RETRY: keys.retry,
        TaskState.ARCHIVED: keys.archived,
        TaskState.COMPLETED: keys.completed,
    }[state]


KEYED_MEMBER_PREFIX = 28
"""Characters before the task id in a keyed ready task's member (key digest 16 + sequence 12,
see ``lua/includes/keyed.lua``)."""


def count_state(redis: SyncRedis, keys: QueueKeys, state: TaskState) -> int:
    """How many tasks are in ``state``; pending counts the keyed ready tasks too."""
    if state is TaskState.PENDING:
        pipe = redis.pipeline(transaction=False)
        pipe.llen(keys.pending)
        pipe.zcard(keys.keyed[0])
        plain, keyed = pipe.execute()
        return int(plain) + int(keyed)
    return int(redis.zcard(state_key(keys, state)))


def pending_window(redis: SyncRedis, keys: QueueKeys, offset: int, count: int) -> list[str]:
    """``count`` pending ids after the first ``offset``: the pending list from its oldest end,
    then the keyed ready tasks by key and order (they are pending too, served round robin)."""
    ids: list[str] = []
    plain = int(redis.llen(keys.pending))
    if offset < plain:
        raw: list[Any] = redis.lrange(keys.pending, -(offset + count), -(offset + 1))
        ids = [_text(i) for i in reversed(raw)]
    if len(ids) < count:
        start = max(0, offset - plain)
        members: list[Any] = redis.zrange(keys.keyed[0], start, start + count - len(ids) - 1)
        ids += [_text(m)[KEYED_MEMBER_PREFIX:] for m in members]
    return ids


def parse_state(state: object) -> TaskState:
    """A :class:`TaskState` from its name.

    Raises:
        ValidationError: not one of the six state names.
    """
    try:
        return TaskState(str(state))
    except ValueError:
        names = ", ".join(s.value for s in TaskState)
        raise ValidationError(f"unknown task state {state!r}; use one of: {names}") from None


def read_stats(
    redis: SyncRedis, queues: Sequence[QueueKeys], now_s: float, *, memory: bool = False
) -> list[QueueStats]:
    """Counts, paused flag, counters and latency of each queue (plus memory if asked)."""
    if not queues:
        return []
    day = utc_day(now_s)
    # One queue is one slot, so its counts can be read as one consistent snapshot.
    pipe = redis.pipeline(transaction=len(queues) == 1)
    for keys in queues:
        pipe.llen(keys.pending)
        for key in (keys.lease, keys.scheduled, keys.retry, keys.archived, keys.completed):
            pipe.zcard(key)
        pipe.exists(keys.paused)
        # GETs, not MGET: redis-py refuses MGET in cluster pipelines even within one slot.
        for key in (keys.processed, keys.failed, keys.processed_on(day), keys.failed_on(day)):
            pipe.get(key)
        pipe.hget(keys.limits, "trimmed")
        pipe.lindex(keys.pending, -1)
        pipe.zcard(keys.keyed[0])
    replies = pipe.execute()
    width = _STATS_REPLIES
    per_queue = [replies[i * width : (i + 1) * width] for i in range(len(queues))]
    oldest = [_text(reply[-2]) if reply[-2] is not None else None for reply in per_queue]
    enqueued = _enqueued_at(redis, queues, oldest)
    sizes = _memory(redis, queues) if memory else [None] * len(queues)
    out = []
    for keys, reply, head, at_ms, size in zip(
        queues, per_queue, oldest, enqueued, sizes, strict=True
    ):
        latency = max(0.0, now_s - at_ms / 1000) if at_ms else 0.0
        out.append(QueueStats(_info(keys.queue, reply), latency, head, size))
    return out


_STATS_REPLIES = 14
"""Replies per queue in read_stats: 6 counts, paused, 5 counters, the oldest pending id, the
keyed ready tasks (pending too)."""


def _info(queue: str, reply: list[Any]) -> QueueInfo:
    pending, active, scheduled, retry, archived, completed, paused = reply[:7]
    pending += reply[13]
    processed, failed, processed_today, failed_today, trimmed = (count(c) for c in reply[7:12])
    return QueueInfo(
        queue=queue,
        pending=pending,
        active=active,
        scheduled=scheduled,
        retry=retry,
        archived=archived,
        completed=completed,
        paused=bool(paused),
        processed=processed,
        failed=failed,
        processed_today=processed_today,
        failed_today=failed_today,
        trimmed=trimmed,
    )


def _enqueued_at(
    redis: SyncRedis, queues: Sequence[QueueKeys], ids: Sequence[str | None]
) -> list[int]:
    """Enqueue time (ms) of each queue's oldest pending task; 0 when none or unreadable."""
    wanted = [(keys, task_id) for keys, task_id in zip(queues, ids, strict=True) if task_id]
    if not wanted:
        return [0] * len(queues)
    pipe = redis.pipeline(transaction=False)
    for keys, wanted_id in wanted:
        pipe.hget(keys.msg, wanted_id)
    found = iter(pipe.execute())
    out = []
    for task_id in ids:
        data = next(found) if task_id else None
        if data is None:
            out.append(0)
            continue
        try:
            out.append(decode(data, task_id=str(task_id)).enqueued_at)
        except CorruptTaskError:
            out.append(0)
    return out


def _memory(redis: SyncRedis, queues: Sequence[QueueKeys]) -> list[int | None]:
    pipe = redis.pipeline(transaction=False)
    for keys in queues:
        for key in keys.all_fixed():
            pipe.memory_usage(key, samples=MEMORY_SAMPLES)
    replies = pipe.execute()
    width = len(queues[0].all_fixed())
    return [
        sum(int(r or 0) for r in replies[i * width : (i + 1) * width]) for i in range(len(queues))
    ]


def read_history(
    redis: SyncRedis, queues: Sequence[QueueKeys], now_s: float, days: int
) -> list[DailyStats]:
    """Processed and failed per UTC day, oldest day first, summed over ``queues``.

    Raises:
        ValidationError: ``days`` is not between 1 and MAX_HISTORY_DAYS.
    """
    if not 1 <= check_count(days, "days") <= MAX_HISTORY_DAYS:
        raise ValidationError(f"days must be between 1 and {MAX_HISTORY_DAYS}, got {days}")
    names = [utc_day(now_s - 86400 * back) for back in range(days - 1, -1, -1)]
    processed = [0] * days
    failed = [0] * days
    if queues:
        pipe = redis.pipeline(transaction=False)
        for keys in queues:
            for d in names:
                pipe.get(keys.processed_on(d))
                pipe.get(keys.failed_on(d))
        counts = pipe.execute()
        for start in range(0, len(counts), 2 * days):
            for i in range(days):
                processed[i] += count(counts[start + 2 * i])
                failed[i] += count(counts[start + 2 * i + 1])
    return [DailyStats(d, p, f) for d, p, f in zip(names, processed, failed, strict=True)]


def read_page(
    redis: SyncRedis, keys: QueueKeys, state: TaskState, page: int, size: int
) -> TaskPage:
    """One page of the tasks in ``state``: pending from the oldest (next to run), active,
    scheduled and retry by time due, archived and completed newest first.

    Raises:
        ValidationError: ``page`` < 1 or ``size`` outside 1..MAX_PAGE_SIZE.
    """
    check_paging(page, size)
    start = (page - 1) * size
    pipe = redis.pipeline(transaction=False)
    scores: list[float | None]
    if state is TaskState.PENDING:
        total = count_state(redis, keys, state)
        ids = pending_window(redis, keys, start, size)
        scores = [None] * len(ids)
    else:
        key = state_key(keys, state)
        pipe.zcard(key)
        pipe.zrange(key, start, start + size - 1, desc=state in NEWEST_FIRST, withscores=True)
        total, pairs = pipe.execute()
        ids = [_text(member) for member, _ in pairs]
        scores = [score for _, score in pairs]
    tasks = summaries(redis, keys, state, ids, scores)
    return TaskPage(keys.queue, state, page, size, int(total), tasks)


def read_page_of_type(  # noqa: PLR0917 - the same order as read_page, plus the type
    redis: SyncRedis, keys: QueueKeys, state: TaskState, task_type: str, page: int, size: int
) -> TaskPage:
    """One page of the tasks in ``state`` whose type is ``task_type``, in list order.

    Looks at no more than FILTER_SCAN_LIMIT tasks, FILTER_BATCH per round trip; the page says
    how many it scanned and whether it reached the end of the state.

    Raises:
        ValidationError: bad paging (see check_paging).
    """
    check_paging(page, size)
    start, matches, scanned = (page - 1) * size, 0, 0
    wanted: list[tuple[str, float | None]] = []
    while scanned < FILTER_SCAN_LIMIT:
        batch = _ids_window(redis, keys, state, scanned, FILTER_BATCH)
        if not batch:
            break
        scanned += len(batch)
        found: list[Any] = redis.hmget(keys.msg, [task_id for task_id, _ in batch])
        for (task_id, score), data in zip(batch, found, strict=True):
            if data is not None and _type_of(data, task_id) == task_type:
                if start <= matches < start + size:
                    wanted.append((task_id, score))
                matches += 1
        if len(batch) < FILTER_BATCH:
            break
    complete = scanned < FILTER_SCAN_LIMIT or not _ids_window(redis, keys, state, scanned, 1)
    ids, scores = [i for i, _ in wanted], [s for _, s in wanted]
    tasks = summaries(redis, keys, state, ids, scores)
    return TaskPage(keys.queue, state, page, size, matches, tasks, task_type, scanned, complete)


def _ids_window(
    redis: SyncRedis, keys: QueueKeys, state: TaskState, offset: int, count: int
) -> list[tuple[str, float | None]]:
    """``count`` (id, score) pairs of ``state`` from ``offset``, in list order."""
    if state is TaskState.PENDING:
        return [(i, None) for i in pending_window(redis, keys, offset, count)]
    pairs: list[Any] = redis.zrange(
        state_key(keys, state),
        offset,
        offset + count - 1,
        desc=state in NEWEST_FIRST,
        withscores=True,
    )
    return [(_text(member), score) for member, score in pairs]


BREAKDOWN_PER_STATE = 1_000
"""Tasks per state a type breakdown looks at (a bounded read: at most 6 x this many)."""


def read_type_breakdown(
    redis: SyncRedis, keys: QueueKeys, per_state: int = BREAKDOWN_PER_STATE
) -> TypeBreakdown:
    """Counts per task type and state over the first ``per_state`` tasks of each state."""
    pipe = redis.pipeline(transaction=False)
    for state in TaskState:
        key = state_key(keys, state)
        if state is TaskState.PENDING:
            pipe.llen(key)
            pipe.lrange(key, -per_state, -1)
        else:
            pipe.zcard(key)
            pipe.zrange(key, 0, per_state - 1, desc=state in NEWEST_FIRST)
    replies = pipe.execute()
    totals: dict[str, int] = {}
    sampled: dict[str, int] = {}
    ids: dict[str, list[str]] = {}
    for n, state in enumerate(TaskState):
        totals[state.value] = int(replies[2 * n])
        ids[state.value] = [_text(i) for i in replies[2 * n + 1]]
        if state is TaskState.PENDING and len(ids[state.value]) < per_state:
            keyed = pending_window(redis, keys, len(ids[state.value]), per_state)
            ids[state.value] += keyed[: per_state - len(ids[state.value])]
            totals[state.value] += int(redis.zcard(keys.keyed[0]))
        sampled[state.value] = len(ids[state.value])
    pipe = redis.pipeline(transaction=False)
    for state in TaskState:
        pipe.hmget(keys.msg, ids[state.value] or ["-"])
    types: dict[str, dict[str, int]] = {}
    for state, found in zip(TaskState, pipe.execute(), strict=True):
        for task_id, data in zip(ids[state.value], found, strict=False):
            name = _type_of(data, task_id) if data is not None else None
            row = types.setdefault(name or "?", {})
            row[state.value] = row.get(state.value, 0) + 1
    return TypeBreakdown(keys.queue, sampled, totals, types)


def _type_of(data: bytes, task_id: str) -> str | None:
    try:
        return decode(data, task_id=task_id).type
    except CorruptTaskError:
        return None


def check_paging(page: int, size: int) -> None:
    """Raises ValidationError unless page >= 1 and 1 <= size <= MAX_PAGE_SIZE."""
    check_count(page, "page")
    check_count(size, "size")
    if page < 1:
        raise ValidationError(f"page numbers start at 1, got {page}")
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ValidationError(f"page size must be between 1 and {MAX_PAGE_SIZE}, got {size}")
    if page * size > MAX_OFFSET:
        raise ValidationError(
            f"page {page} of size {size} is past any queue (at most {MAX_OFFSET // size} pages); "
            "ask for a smaller page number"
        )


def summaries(
    redis: SyncRedis,
    keys: QueueKeys,
    state: TaskState,
    ids: Sequence[str],
    scores: Sequence[float | None],
) -> list[TaskSummary]:
    """Decode the messages of ``ids`` into list rows; unreadable ones say so in last_error."""
    if not ids:
        return []
    pipe = redis.pipeline(transaction=False)
    pipe.hmget(keys.msg, list(ids))
    pipe.hmget(keys.lost, list(ids))
    messages, lost = pipe.execute()
    return [
        _summary(keys.queue, state, task_id, data, score=score, lost=count(times))
        for task_id, data, score, times in zip(ids, messages, scores, lost, strict=True)
    ]


def _summary(
    queue: str,
    state: TaskState,
    task_id: str,
    data: bytes | None,
    *,
    score: float | None,
    lost: int,
) -> TaskSummary:
    at = when(score)
    due = at if state in (TaskState.SCHEDULED, TaskState.RETRY) else None
    try:
        if data is None:
            raise CorruptTaskError("its message is missing (deleted meanwhile)")
        message = decode(data, task_id=task_id)
    except CorruptTaskError as exc:
        return TaskSummary(
            task_id, queue, state, "?", "", 0, 0, f"unreadable: {exc}", None, None, due, at, lost
        )
    return TaskSummary(
        id=task_id,
        queue=queue,
        state=state,
        type=message.type,
        payload_preview=payload_preview(message.payload),
        retried=message.retried,
        max_retry=message.max_retry,
        last_error=error_preview(message.last_error),
        last_failed_at=from_ms(message.last_failed_at) if message.last_failed_at else None,
        enqueued_at=from_ms(message.enqueued_at) if message.enqueued_at else None,
        next_process_at=due,
        score_at=at,
        lost_count=lost,
    )


def when(score: float | None) -> datetime | None:
    """A sorted-set score (epoch ms) as a datetime; None if absent or beyond what a datetime
    holds (``inf``, ``1e300``: planted or corrupt), so one bad score cannot fail a page."""
    if score is None or not -MAX_SCORE_MS <= score <= MAX_SCORE_MS:
        return None
    return from_ms(score)


def count(raw: bytes | str | int | None) -> int:
    """A stored counter (processed, failed, lost) as an int; 0 if absent or not an integer
    (a corrupt counter is logged, and must not fail the stats of every queue)."""
    if raw is None:
        return 0
    try:
        return int(raw)
    except ValueError:
        log.warning("ignoring a stored counter that is not an integer: %r", raw)
        return 0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
