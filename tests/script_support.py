"""Helpers for the script tests: build tasks, run one script call, snapshot a queue's keys.

A snapshot maps each key of the queue (its suffix after ``ns:{q}:``) to a plain Python value, so
a test can assert the *exact* Redis state a script left behind, not just a count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from rq_sched import scripts
from rq_sched.keys import QueueKeys
from rq_sched.message import TaskMessage
from rq_sched.options import Prepared
from rq_sched.scripts import Call

NOW_MS = 1_800_000_000_000
"""The fixed "now" of the script tests (epoch ms)."""
TOKEN = 7
"""The fencing token of the leases :meth:`Store.seed_active` seeds."""


def task(
    task_id: str,
    *,
    queue: str = "q",
    due_ms: int = 0,
    unique: str | None = None,
    unique_ttl_ms: int = 0,
    payload: Any = b"p",
    task_type: str = "t",
) -> Prepared:
    """A prepared task with a fixed message (so its encoding is predictable)."""
    message = TaskMessage(type=task_type, payload=payload, unique=unique, enqueued_at=NOW_MS)
    return Prepared(
        id=task_id,
        queue=queue,
        message=message,
        encoded=message.encode(),
        due_ms=due_ms,
        unique_ttl_ms=unique_ttl_ms,
    )


def enc(task_id: str, **kwargs: Any) -> bytes:
    """The stored message bytes of :func:`task` with the same arguments."""
    return task(task_id, **kwargs).encoded


@dataclass
class Store:
    """One queue in a random namespace on the session Redis."""

    r: redis.Redis
    keys: QueueKeys

    def run(self, call: Call) -> Any:
        script, keys, args = call
        return scripts.run(self.r, script, keys, args)

    def snapshot(self) -> dict[str, Any]:
        """Every key of the queue, by suffix, as plain values (lists, dicts, tuples)."""
        prefix = self.keys.prefix + ":"
        out: dict[str, Any] = {}
        for raw in self.r.scan_iter(match=self.keys.pattern(), count=1000):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            out[key.removeprefix(prefix)] = self.value(key)
        return out

    def value(self, key: str) -> Any:
        r: Any = self.r  # replies are bytes: the connection does not decode responses
        kind = r.type(key).decode()
        if kind == "string":
            return r.get(key)
        if kind == "list":
            return [v.decode() for v in r.lrange(key, 0, -1)]
        if kind == "zset":
            return {m.decode(): int(s) for m, s in r.zrange(key, 0, -1, withscores=True)}
        if kind == "hash":
            return {k.decode(): v for k, v in r.hgetall(key).items()}
        raise AssertionError(f"unexpected type {kind} of {key}")

    def without(self, snapshot: dict[str, Any], *suffixes: str) -> dict[str, Any]:
        return {k: v for k, v in snapshot.items() if k not in suffixes}

    def seed_pending(self, *ids: str) -> None:
        """Tasks ready to run, oldest first (``ids[0]`` is dequeued first)."""
        for task_id in ids:
            self.r.hset(self.keys.msg, task_id, enc(task_id))
            self.r.lpush(self.keys.pending, task_id)

    def seed_active(self, task_id: str, lease_ms: int = NOW_MS + 30_000) -> int:
        """A task leased to a worker under the fencing token :data:`TOKEN`."""
        self.seed_zset("lease", task_id, lease_ms)
        self.r.hset(self.keys.token, task_id, TOKEN)
        return TOKEN

    def seed_zset(self, name: str, task_id: str, score: int) -> None:
        """A task listed in one of the sorted-set states (lease, scheduled, retry, ...)."""
        self.r.hset(self.keys.msg, task_id, enc(task_id))
        self.r.zadd(getattr(self.keys, name), {task_id: score})


def redis_ms(r: redis.Redis) -> int:
    """Redis's own clock (TIME) in ms: the clock every lease is written and judged by."""
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


def expire_lease(store: Store, task_id: str) -> None:
    """Make a lease look expired to Redis TIME (the worker holding it stalled past it)."""
    store.r.zadd(store.keys.lease, {task_id: redis_ms(store.r) - 1}, xx=True)
