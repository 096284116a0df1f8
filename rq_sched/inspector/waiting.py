"""Tasks held until their parents are final (``depends_on``, chain links, group callbacks):
listed with how many parents have reported, for operators (docs/workflows.md).

A held task is in no state yet (it is not in ``msg``), so the state listings never show it; this
module reads the ``held`` and ``deps`` hashes of a queue instead, a bounded page at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from rq_sched.errors import CorruptTaskError
from rq_sched.keys import QueueKeys
from rq_sched.message import decode
from rq_sched.scripts import SyncRedis

_RELEASED_TAIL = b"\xc0\x00\xc0\xc0"
"""The four fields a release appends, at their empty values, so a held message decodes."""


@dataclass(frozen=True, slots=True)
class WaitingTask:
    """A task waiting for its parents."""

    id: str
    queue: str
    type: str
    payload: Any
    parents: list[str]
    """Its parents as ``queue/id``, in ``depends_on`` order."""
    reported: int
    """How many parents have reported a final outcome so far."""
    policy: str
    """"cancel" or "run": what a parent's failure does to it."""
    failed: str | None = None
    """The first parent failure reported, if any (it decides the release under "cancel")."""


def read_waiting(redis: SyncRedis, keys: QueueKeys, limit: int) -> list[WaitingTask]:
    """Up to ``limit`` tasks of the queue waiting for their parents (HSCAN order)."""
    out: list[WaitingTask] = []
    cursor = 0
    while len(out) < limit:
        reply: Any = redis.hscan(keys.deps, cursor, count=min(limit, 500))
        cursor, found = reply
        records = {_text(k): v for k, v in found.items()}
        ids = list(records)[: limit - len(out)]
        if ids:
            messages: Any = redis.hmget(keys.held, ids)
            for task_id, message in zip(ids, messages, strict=True):
                if message is not None:
                    record = msgpack.unpackb(records[task_id], raw=False)
                    names = _parent_names(redis, keys, task_id, record)
                    out.append(_waiting(keys, task_id, message, record, names))
        if int(cursor) == 0:
            break
    return out


def is_waiting(redis: SyncRedis, keys: QueueKeys, task_id: str) -> bool:
    """Whether ``task_id`` is held until its parents are final."""
    return bool(redis.hexists(keys.held, task_id))


def _parent_names(
    redis: SyncRedis, keys: QueueKeys, task_id: str, record: dict[str, Any]
) -> list[str]:
    """A held task's parents, ``queue/id``, in ``depends_on`` order."""
    count = int(record.get("n", 0))
    if not count:
        return []
    fields = [f"{index}:{task_id}" for index in range(count)]
    found: Any = redis.hmget(keys.dep_parents, fields)
    if all(name is None for name in found):  # written before the names had a hash of their own
        return [str(name) for name in record.get("parents", [])]
    return [_text(name) if name is not None else "?" for name in found]


def _waiting(
    keys: QueueKeys, task_id: str, held: bytes, rec: dict[str, Any], parents: list[str]
) -> WaitingTask:
    try:
        message = decode(held + _RELEASED_TAIL, task_id=task_id)
        task_type, payload = message.type, message.payload
    except CorruptTaskError:
        task_type, payload = "?", held
    return WaitingTask(
        id=task_id,
        queue=keys.queue,
        type=task_type,
        payload=payload,
        parents=parents,
        reported=int(rec.get("got", 0)),
        policy=str(rec.get("policy", "?")),
        failed=rec.get("failed"),
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
