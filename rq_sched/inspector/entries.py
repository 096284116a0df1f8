"""Operator actions on periodic scheduler entries: run an entry now, pause and resume it.

Pausing adds the entry's id to ``scheduler:paused``; every scheduler process reads that set at
the entry's ticks and skips them (recorded in the history as ``skipped``) until it is resumed.
An entry is named by its id or, failing that, by its name; one that no scheduler publishes is
refused (TaskNotFoundError), so no stale flag is left for an entry that later gets that name.

The scheduler publishes an entry's spec, type and queue but only a preview of its payload, so
"run now" copies the task of the entry's most recent fire that is still stored (type, payload,
retries, timeout, headers) into a new task with its own id, and records the run in the entry's
history like a fire, where the dashboard shows its outcome. An entry whose fired tasks are all
gone (deleted or trimmed) cannot be run now; the next regular fire will make one again.
"""

from __future__ import annotations

from typing import Any

from rq_sched.client import Client
from rq_sched.clock import from_ms, to_ms
from rq_sched.errors import CorruptTaskError, TaskNotFoundError, TaskStateError
from rq_sched.inspector.processes import MAX_HISTORY, parse_records
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.message import decode
from rq_sched.models import ScheduleEntryInfo, ScheduleRecord, TaskInfo
from rq_sched.scripts import SyncRedis


def run_now(
    redis: SyncRedis, global_keys: GlobalKeys, client: Client, entry_id: str, now_s: float
) -> TaskInfo:
    """Enqueue a copy of ``entry_id``'s latest stored fire now, and record it in its history.

    Raises:
        TaskNotFoundError: no such entry.
        TaskStateError: none of the entry's recent fires is still stored to copy.
    """
    raw = redis.hget(global_keys.scheduler_entries, entry_id)
    if raw is None:
        raise TaskNotFoundError(f"no periodic entry {entry_id!r}")
    entry = ScheduleEntryInfo.from_json(raw)
    history: list[Any] = redis.lrange(global_keys.scheduler_history(entry_id), 0, MAX_HISTORY - 1)
    source = _latest_stored(redis, global_keys.namespace, parse_records(history))
    if source is None:
        raise TaskStateError(
            f"entry {entry.name!r} has no stored fire to copy its payload from (the scheduler "
            "publishes only a preview); it runs again at its next fire"
        )
    queue, message = source
    now_ms = to_ms(now_s)
    info = client.enqueue(
        message.type,
        message.payload,
        queue=queue,
        max_retry=message.max_retry,
        timeout=message.timeout or None,
        headers=dict(message.headers or {}) or None,
        task_id=f"{entry_id}:now:{now_ms}",
    )
    record = ScheduleRecord(from_ms(now_ms), from_ms(now_ms), info.id, queue)
    pipe = redis.pipeline(transaction=False)
    pipe.lpush(global_keys.scheduler_history(entry_id), record.to_json())
    pipe.ltrim(global_keys.scheduler_history(entry_id), 0, MAX_HISTORY - 1)
    pipe.execute()
    return info


def set_paused(redis: SyncRedis, global_keys: GlobalKeys, entry: str, paused: bool) -> bool:
    """Pause (or resume) the periodic entry with id or name ``entry``.

    Returns:
        True when the flag changed, False when the entry already was in that state.

    Raises:
        TaskNotFoundError: no running scheduler publishes such an entry.
    """
    entry_id = find_entry(redis, global_keys, entry)
    key = global_keys.scheduler_paused
    changed = redis.sadd(key, entry_id) if paused else redis.srem(key, entry_id)
    return bool(changed)


def find_entry(redis: SyncRedis, global_keys: GlobalKeys, entry: str) -> str:
    """The id of the published entry whose id (or else name) is ``entry``.

    Raises:
        TaskNotFoundError: there is none.
    """
    if redis.hexists(global_keys.scheduler_entries, entry):
        return entry
    for _, raw in redis.hscan_iter(global_keys.scheduler_entries, count=200):
        try:
            info = ScheduleEntryInfo.from_json(raw)
        except (ValueError, KeyError, TypeError):
            continue
        if info.name == entry:
            return info.id
    raise TaskNotFoundError(f"no periodic entry {entry!r} (give its id or name; see rq-sched cron)")


def _latest_stored(redis: SyncRedis, namespace: str, fires: list[ScheduleRecord]) -> Any:
    """(queue, message) of the newest fire whose task is still stored, or None."""
    candidates = [f for f in fires if f.task_id and not f.error]
    if not candidates:
        return None
    pipe = redis.pipeline(transaction=False)
    for fire in candidates:
        pipe.hget(QueueKeys(namespace, fire.queue).msg, fire.task_id)
    for fire, data in zip(candidates, pipe.execute(), strict=True):
        if data is None:
            continue
        try:
            return fire.queue, decode(data, task_id=fire.task_id)
        except CorruptTaskError:
            continue
    return None
