"""Reads of what runs against Redis rather than what is queued: worker servers and the tasks they
run, the periodic scheduler's entries and history, and a summary of Redis INFO.

Servers and schedulers publish themselves with heartbeats (a sorted set of id -> expiry ms);
the inspector lists only those whose heartbeat has not expired, at most a bounded number.
Records that cannot be parsed (written by another version) are skipped, not fatal.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from redis.cluster import RedisCluster

from rq_sched.clock import from_ms
from rq_sched.connection import describe
from rq_sched.errors import ValidationError
from rq_sched.inspector.models import (
    RedisNode,
    SchedulerEntry,
    SchedulerStatus,
    ServerStatus,
)
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.models import ScheduleEntryInfo, ScheduleRecord, ServerInfo, WorkerInfo
from rq_sched.scripts import SyncRedis

log = logging.getLogger(__name__)

MAX_SERVERS = 500
"""Most live servers (or scheduler instances) listed."""
MAX_ENTRIES = 1000
"""Most scheduler entries listed."""
MAX_HISTORY = 100
"""Most fires of one entry listed."""
INFO_FIELDS = (
    "redis_version",
    "redis_mode",
    "role",
    "os",
    "uptime_in_seconds",
    "connected_clients",
    "blocked_clients",
    "used_memory",
    "used_memory_human",
    "used_memory_peak_human",
    "maxmemory_human",
    "maxmemory_policy",
    "mem_fragmentation_ratio",
    "total_commands_processed",
    "instantaneous_ops_per_sec",
    "keyspace_hits",
    "keyspace_misses",
    "evicted_keys",
    "expired_keys",
    "aof_enabled",
    "rdb_last_save_time",
    "connected_slaves",
)
"""The INFO fields shown; the rest of INFO is left to redis-cli."""

_BAD_RECORD = (ValueError, KeyError, TypeError, AttributeError)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def live_ids(redis: SyncRedis, key: str, now_ms: int) -> list[tuple[str, int]]:
    """Members of a heartbeat sorted set whose expiry is still ahead, with that expiry."""
    pairs: list[Any] = redis.zrange(
        key, now_ms, "+inf", byscore=True, offset=0, num=MAX_SERVERS, withscores=True
    )
    return [(_text(member), int(score)) for member, score in pairs]


def read_servers(redis: SyncRedis, global_keys: GlobalKeys, now_ms: int) -> list[ServerStatus]:
    """Live worker servers with the tasks each is running, by host and pid."""
    alive = live_ids(redis, global_keys.servers, now_ms)
    if not alive:
        return []
    pipe = redis.pipeline(transaction=False)
    for server_id, _ in alive:
        pipe.get(global_keys.server(server_id))
        pipe.hgetall(global_keys.workers(server_id))
    replies = pipe.execute()
    out = []
    for index, (server_id, expiry) in enumerate(alive):
        raw, workers = replies[2 * index], replies[2 * index + 1]
        if raw is None:
            continue  # its info key expired between the two reads
        try:
            info = ServerInfo.from_json(raw)
            running = sorted(
                (WorkerInfo.from_json(w) for w in workers.values()), key=lambda w: w.started_at
            )
        except _BAD_RECORD as exc:
            log.warning("skipping unreadable record of server %s: %s", server_id, exc)
            continue
        out.append(ServerStatus(info, from_ms(expiry), running))
    return sorted(out, key=lambda s: (s.info.host, s.info.pid, s.info.id))


def read_scheduler(
    redis: SyncRedis, global_keys: GlobalKeys, now_ms: int, history: int
) -> SchedulerStatus:
    """Live scheduler instances and every entry (by next fire) with its last ``history`` fires.

    Raises:
        ValidationError: ``history`` is not between 0 and MAX_HISTORY.
    """
    if not 0 <= history <= MAX_HISTORY:
        raise ValidationError(f"history must be between 0 and {MAX_HISTORY}, got {history}")
    instances = [i for i, _ in live_ids(redis, global_keys.schedulers, now_ms)]
    entries: list[ScheduleEntryInfo] = []
    for entry_id, raw in redis.hscan_iter(global_keys.scheduler_entries, count=200):
        try:
            entries.append(ScheduleEntryInfo.from_json(raw))
        except _BAD_RECORD as exc:
            log.warning("skipping unreadable scheduler entry %s: %s", _text(entry_id), exc)
        if len(entries) >= MAX_ENTRIES:
            break
    histories: list[Any] = [[] for _ in entries]
    paused: list[Any] = [0 for _ in entries]
    if entries:
        pipe = redis.pipeline(transaction=False)
        pipe.smismember(global_keys.scheduler_paused, [e.id for e in entries])
        for entry in entries if history else ():
            pipe.lrange(global_keys.scheduler_history(entry.id), 0, history - 1)
        paused, *read = pipe.execute()
        histories = read or histories
    records = [parse_records(raw_history) for raw_history in histories]
    outcomes = fire_outcomes(redis, global_keys.namespace, records)
    out = [
        SchedulerEntry(entry, fires, states, bool(flag))
        for entry, fires, states, flag in zip(entries, records, outcomes, paused, strict=True)
    ]
    far = from_ms(2**42)
    out.sort(key=lambda e: (e.info.next_fire or far, e.info.name))
    return SchedulerStatus(sorted(instances), out)


MAX_OUTCOMES = 2_000
"""Most fires whose task state is looked up in one read (6 commands each, one pipeline)."""


def fire_outcomes(
    redis: SyncRedis, namespace: str, records: list[list[ScheduleRecord]]
) -> list[list[str]]:
    """The state each fire's task is in now: a task state, ``gone`` (deleted, trimmed or never
    stored), ``error`` (the fire enqueued nothing) or ``skipped`` (the entry was paused).
    Past MAX_OUTCOMES fires, ``unknown``."""
    looked: list[tuple[int, int, QueueKeys, str]] = []
    out = [["unknown"] * len(fires) for fires in records]
    for e, fires in enumerate(records):
        for f, fire in enumerate(fires):
            if fire.skipped:
                out[e][f] = "skipped"
            elif fire.error or not fire.task_id:
                out[e][f] = "error"
            elif len(looked) < MAX_OUTCOMES:
                looked.append((e, f, QueueKeys(namespace, fire.queue), fire.task_id))
    if not looked:
        return out
    pipe = redis.pipeline(transaction=False)
    for _, _, keys, task_id in looked:
        pipe.hexists(keys.msg, task_id)
        for key in (keys.lease, keys.scheduled, keys.retry, keys.archived, keys.completed):
            pipe.zscore(key, task_id)
    replies = pipe.execute()
    for n, (e, f, _, _) in enumerate(looked):
        exists, *scores = replies[6 * n : 6 * n + 6]
        out[e][f] = _state_name(bool(exists), scores)
    return out


def _state_name(exists: bool, scores: list[Any]) -> str:
    if not exists:
        return "gone"
    names = ("active", "scheduled", "retry", "archived", "completed")
    found = (name for name, score in zip(names, scores, strict=True) if score is not None)
    return next(found, "pending")


def parse_records(raw: list[Any]) -> list[ScheduleRecord]:
    """History records from their JSON; unreadable ones are logged and skipped."""
    out = []
    for item in raw:
        try:
            out.append(ScheduleRecord.from_json(item))
        except (*_BAD_RECORD, json.JSONDecodeError) as exc:
            log.warning("skipping unreadable scheduler history record: %s", exc)
    return out


def read_redis_info(redis: SyncRedis) -> list[RedisNode]:
    """The INFO summary of the Redis node, or of every primary of a cluster."""
    if isinstance(redis, RedisCluster):
        raw = redis.info(target_nodes=RedisCluster.PRIMARIES)
        nodes = {"cluster": raw} if "redis_version" in raw else raw
    else:
        nodes = {describe(redis): redis.info()}
    return [RedisNode(str(name), _pick(info)) for name, info in sorted(nodes.items())]


def _pick(info: dict[str, Any]) -> dict[str, str]:
    out = {field: str(info[field]) for field in INFO_FIELDS if field in info}
    for name, value in info.items():
        if name.startswith("db") and isinstance(value, dict):
            out[f"{name}_keys"] = str(value.get("keys", 0))
    return out
