"""Seeding queues with tasks in every state through the real Lua scripts (no worker needed).

Active, completed, retry and archived tasks are made the way a worker makes them: enqueue,
dequeue (lease), then done (with retention), retry or archive. Ids are predictable, e.g.
``pending-0``, so tests can assert on exactly which tasks a page or an action touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis

from rq_sched import Client, ManualClock, ops, scripts
from rq_sched.clock import to_ms
from rq_sched.keys import QueueKeys
from rq_sched.message import decode
from rq_sched.scripts import Call

LEASE_S = 600
ERROR = 'ValueError: boom <b>bold</b>\nTraceback (most recent call last):\n  File "h.py", line 1'


@dataclass
class Seeded:
    """The ids seeded in one queue, by state (pending oldest first)."""

    queue: str
    keys: QueueKeys
    ids: dict[str, list[str]] = field(default_factory=dict)


def run(r: redis.Redis, call: Call) -> Any:
    script, keys, args = call
    return scripts.run(r, script, keys, args)


def seed_queue(
    r: redis.Redis,
    namespace: str,
    clock: ManualClock,
    queue: str = "default",
    *,
    counts: dict[str, int] | None = None,
    payload: Any = None,
) -> Seeded:
    """Seed ``queue`` with ``counts`` tasks per state (default 3 pending, 2 of each other)."""
    wanted = {"pending": 3, "active": 2, "scheduled": 2, "retry": 2, "archived": 2, "completed": 2}
    wanted.update(counts or {})
    client = Client(r, namespace=namespace, clock=clock)
    keys = QueueKeys(namespace, queue)
    seeded = Seeded(queue, keys, {state: [] for state in wanted})
    worked = ["completed", "retry", "archived", "active"]
    work_ids = [f"{s}-{i}" for s in worked for i in range(wanted[s])]
    for task_id in work_ids:
        client.enqueue("work", _payload(payload, task_id), queue=queue, task_id=task_id)
    if work_ids:
        _work(r, keys, clock, work_ids, seeded)
    for i in range(wanted["pending"]):
        task_id = f"pending-{i}"
        client.enqueue("email:send", _payload(payload, task_id), queue=queue, task_id=task_id)
        seeded.ids["pending"].append(task_id)
    for i in range(wanted["scheduled"]):
        task_id = f"scheduled-{i}"
        client.enqueue(
            "report",
            _payload(payload, task_id),
            queue=queue,
            task_id=task_id,
            process_in=3600 + i,
        )
        seeded.ids["scheduled"].append(task_id)
    return seeded


def _payload(payload: Any, task_id: str) -> Any:
    return payload if payload is not None else {"task": task_id, "n": 1}


def _work(
    r: redis.Redis, keys: QueueKeys, clock: ManualClock, ids: list[str], seeded: Seeded
) -> None:
    now_s = clock.now()
    now_ms = to_ms(now_s)
    leased = ops.parse_dequeue(run(r, ops.dequeue(keys, LEASE_S * 1000, len(ids))))
    messages = {t.id: t.data for t in leased}
    tokens = {t.id: t.token for t in leased}
    assert sorted(messages) == sorted(ids), "seeding expects an otherwise empty pending list"
    for task_id in ids:
        clock.advance(1)  # distinct times, so "newest first" has one right answer
        now_s = clock.now()
        now_ms = to_ms(now_s)
        state = task_id.split("-")[0]
        message = decode(messages[task_id], task_id=task_id)
        if state == "completed":
            ack = ops.Ack(
                task_id, tokens[task_id], keep_until_ms=now_ms + 3_600_000, result=b'{"ok": true}'
            )
            run(r, ops.done(keys, [ack], now_s))
        elif state == "retry":
            failed = message.failed(ERROR, now_ms).encode()
            call = ops.retry(
                keys, task_id, tokens[task_id], encoded=failed, due_ms=now_ms + 60_000, now_s=now_s
            )
            run(r, call)
        elif state == "archived":
            failed = message.failed(ERROR, now_ms).encode()
            call = ops.archive_active(
                keys,
                task_id,
                tokens[task_id],
                encoded=failed,
                unique=None,
                now_s=now_s,
                limits=ops.ArchiveLimits(),
                count_failure=True,
            )
            run(r, call)
        seeded.ids[state].append(task_id)
