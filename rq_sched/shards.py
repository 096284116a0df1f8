"""Sharded logical queues: one queue name stored as N sub-queues in different cluster slots.

A queue is one ``{queue}`` hash tag, so one Redis Cluster slot and one master's core. A queue
declared with ``shards=N`` (:func:`set_shards`, recorded in the ``ns:shards`` hash) is stored as
N ordinary queues, its *sub-queues*, named ``<queue>~<i>of<N>-<salt>``. Each is a complete queue
(every script and key of ``rq_sched.keys`` unchanged); only the producers, the workers' queue
list and the admin entry points know they form one logical queue.

Placement. The salt of sub-queue ``i`` is the smallest one whose name's slot (CRC16, as Redis
computes it) falls in the ``i``-th of N equal slot ranges. ``redis-cli --cluster create`` gives
each of M masters an equal range, so when N is a multiple of M every master gets N/M shards;
otherwise the shards still sit in N distinct slots, spread as evenly as the ranges allow.

Routing (exact, with no search on the hot path): task ``id`` of a sharded queue lives in shard
``crc32(id) % N``. A generated id is drawn until it hashes to the shard chosen for the task:
round-robin for plain tasks; the shard of the uniqueness digest for ``unique=`` tasks; the shard
of the group name for ``group=``; the shard of the debounce or throttle key for those; the shard
of ``shard_key=`` when given (tasks of one key keep their order within it). So the id conflict
check, the uniqueness lock, an aggregation group and a debounce key each live in one shard and
stay exact. An explicit ``task_id`` together with one of those keys is refused (the two
could name different shards). Anything that finds a task by id computes its shard.

The base queue. Workers of a sharded queue also serve the queue's own name and the shards of any
earlier N (they stay registered): paths that do not know the shard map (a cron entry of the
scheduler) write to the base queue, a producer whose copy of the map is up to :data:`REFRESH_S`
old writes to either, and their tasks still run. The inspector's lookups by id search the
computed shard first, then those.

Changing N is refused unless every sub-queue and the base queue are empty and no live worker
server serves the queue (it would keep serving the old layout): stop producers, drain, stop the
workers, change N, restart them. See docs/scaling.md.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from redis.crc import key_slot

from rq_sched.errors import ValidationError
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.options import MAX_QUEUE_CHARS, SHARD_SUFFIX, Prepared, check_queue, new_task_id

MAX_SHARDS = 64
"""Most sub-queues one logical queue may have."""
SLOTS = 16384
REFRESH_S = 2.0
"""Seconds a client trusts its copy of the shard map before reading it again."""
MAX_SUFFIX_CHARS = len(f"~{MAX_SHARDS - 1}of{MAX_SHARDS}-99999")
"""Room a sub-queue name takes beyond its queue's name (the salt stays far below 99999)."""


def check_shards(n: object) -> int:
    """Return ``n`` if it is a usable number of shards.

    Raises:
        ValidationError: not an int (bools, floats and NaN included) in 1..MAX_SHARDS.
    """
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_SHARDS:
        raise ValidationError(
            f"shards must be an int from 1 (not sharded) to {MAX_SHARDS}, got {n!r}"
        )
    return n


MAX_SHARD_KEY_CHARS = 1000


def check_shard_key(key: object) -> str:
    """Return ``key`` if it is a usable ``shard_key``.

    Raises:
        ValidationError: not a non-empty str of at most MAX_SHARD_KEY_CHARS, or it holds a
            lone surrogate (it could not be hashed the same way everywhere).
    """
    if not isinstance(key, str) or not key or len(key) > MAX_SHARD_KEY_CHARS:
        raise ValidationError(
            f"shard_key must be a non-empty str of at most {MAX_SHARD_KEY_CHARS} chars, "
            f"such as a customer id; got {key!r:.80}"
        )
    try:
        key.encode()
    except UnicodeEncodeError:
        raise ValidationError(
            "shard_key holds a lone surrogate; pass valid text (e.g. decode bytes as UTF-8)"
        ) from None
    return key


def sub_queue_of(name: str) -> tuple[str, int, int] | None:
    """``(queue, index, n)`` when ``name`` is a sub-queue name, else None."""
    found = SHARD_SUFFIX.search(name)
    if found is None or found.start() == 0:
        return None
    index, n = int(found.group(1)), int(found.group(2))
    if not (1 < n <= MAX_SHARDS and index < n):
        return None
    base = name[: found.start()]
    return (base, index, n) if layout(base, n)[index] == name else None


@lru_cache(maxsize=1024)
def layout(queue: str, n: int) -> tuple[str, ...]:
    """The names of the ``n`` sub-queues of ``queue``, shard 0 first (``(queue,)`` if n is 1)."""
    if n == 1:
        return (queue,)
    names = []
    for index in range(n):
        low, high = index * SLOTS // n, (index + 1) * SLOTS // n
        salt = 0
        while not low <= slot(f"{queue}~{index}of{n}-{salt}") < high:
            salt += 1
        names.append(f"{queue}~{index}of{n}-{salt}")
    return tuple(names)


def slot(queue: str) -> int:
    """The cluster slot of ``queue``'s keys (queue names hold no braces: the tag is the name)."""
    return int(key_slot(queue.encode("utf-8", "surrogatepass")))


def shard_of(text: str, n: int) -> int:
    """The shard a task id (or a routing key) belongs to."""
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % n


def id_in_shard(shard: int, n: int) -> str:
    """A new random task id that lives in ``shard`` (N draws on average; ids are cheap)."""
    while True:
        task_id = new_task_id()
        if shard_of(task_id, n) == shard:
            return task_id


def members(queue: str, n: int, registered: Iterable[str]) -> list[str]:
    """Every physical queue of logical ``queue``: its current sub-queues, the base queue, and
    sub-queues of other layouts still registered (an earlier N's, kept registered so a producer
    with an old copy of the map never writes where no worker looks)."""
    out = list(layout(queue, n))
    if queue not in out:
        out.append(queue)
    for name in sorted(registered):
        parsed = sub_queue_of(name)
        if parsed is not None and parsed[0] == queue and name not in out:
            out.append(name)
    return out


@dataclass
class ShardMap:
    """A client's copy of the ``ns:shards`` hash (queue -> N), read again after REFRESH_S."""

    counts: dict[str, int] = field(default_factory=dict)
    read_at: float = -math.inf
    _turn: dict[str, int] = field(default_factory=dict)

    def stale(self) -> bool:
        return time.monotonic() - self.read_at >= REFRESH_S

    def update(self, raw: Mapping[Any, Any]) -> None:
        self.counts = parse_counts(raw)
        self.read_at = time.monotonic()

    def n(self, queue: str) -> int:
        return self.counts.get(queue, 1)

    def place(self, task: Prepared, *, explicit_id: bool, key: str | None) -> Prepared:
        """``task`` moved to its shard (with an id that hashes there), or as it is when its
        queue is not sharded.

        Raises:
            ValidationError: an explicit ``task_id`` together with a routing key.
        """
        n = self.counts.get(task.queue, 1)
        if n == 1:
            return task
        names = layout(task.queue, n)
        if key is not None:
            if explicit_id:
                raise ValidationError(
                    f"queue {task.queue!r} is sharded ({n} shards): a task_id cannot be combined "
                    "with unique=, group=, or a debounce/throttle key there (the id and the key "
                    "could name different shards); leave task_id out"
                )
            shard = shard_of(key, n)
            return replace(task, id=id_in_shard(shard, n), queue=names[shard])
        if explicit_id:
            return replace(task, queue=names[shard_of(task.id, n)])
        turn = self._turn.get(task.queue, 0)
        self._turn[task.queue] = turn + 1
        return replace(task, id=id_in_shard(turn % n, n), queue=names[turn % n])

    def resolve(self, queue: str, task_id: str) -> str:
        """The sub-queue where ``task_id`` of ``queue`` lives when a sharded producer put it."""
        n = self.counts.get(queue, 1)
        return queue if n == 1 else layout(queue, n)[shard_of(task_id, n)]


def parse_counts(raw: Mapping[Any, Any]) -> dict[str, int]:
    """The shard map as read from Redis; unreadable entries count as not sharded."""
    counts = {}
    for name, value in raw.items():
        text = value.decode() if isinstance(value, bytes) else str(value)
        if text.isdigit() and 1 < int(text) <= MAX_SHARDS:
            counts[name.decode() if isinstance(name, bytes) else str(name)] = int(text)
    return counts


def read_counts(redis: Any, namespace: str) -> dict[str, int]:
    """The shard map of ``namespace`` (sync client)."""
    return parse_counts(redis.hgetall(GlobalKeys(namespace).shards))


def locate_candidates(queue: str, task_id: str, n: int, registered: Iterable[str]) -> list[str]:
    """Where to look for ``task_id`` of logical ``queue``: its shard first, then the others."""
    if n == 1:
        return [queue]
    first = layout(queue, n)[shard_of(task_id, n)]
    return [first, *(m for m in members(queue, n, registered) if m != first)]


def locate(redis: Any, namespace: str, queue: str, task_id: str) -> str:
    """The physical queue holding ``task_id`` of ``queue`` (its computed shard if none does).

    One round trip for a queue that is not sharded is saved: it is returned as it is.
    """
    n = read_counts(redis, namespace).get(queue, 1)
    if n == 1:
        return queue
    candidates = locate_candidates(queue, task_id, n, _registered(redis, namespace))
    pipe = redis.pipeline(transaction=False)
    for name in candidates:
        keys = QueueKeys(namespace, name)
        pipe.hexists(keys.msg, task_id)
        pipe.hexists(keys.held, task_id)
    found = pipe.execute()
    for index, name in enumerate(candidates):
        if found[2 * index] or found[2 * index + 1]:
            return name
    return candidates[0]


def _registered(redis: Any, namespace: str) -> list[str]:
    return [
        m.decode() if isinstance(m, bytes) else m
        for m in redis.smembers(GlobalKeys(namespace).queues)
    ]


def expand_weights(
    weights: Mapping[str, int], counts: Mapping[str, int], registered: Iterable[str]
) -> dict[str, int]:
    """A worker's ``queues`` with each sharded queue replaced by its physical queues, which
    share its weight equally (every weight is scaled so the shares stay whole numbers)."""
    known = list(registered)
    groups = {q: members(q, counts.get(q, 1), known) for q in weights}
    scale = math.lcm(*(len(g) for g in groups.values()))
    out: dict[str, int] = {}
    for queue, group in groups.items():
        for name in group:
            out[name] = max(out.get(name, 0), weights[queue] * scale // len(group))
    return out


@dataclass(frozen=True, slots=True)
class Change:
    """What :func:`set_shards` did."""

    queue: str
    before: int
    after: int
    sub_queues: tuple[str, ...]


def set_shards(
    redis: Any, namespace: str, queue: str, n: object, serving: Sequence[Mapping[str, int]]
) -> Change:
    """Record that ``queue`` has ``n`` shards (1: not sharded).

    ``serving`` is the queue maps of the live worker servers.

    Raises:
        ValidationError: a bad queue name or ``n``; the queue holds tasks (in any shard or the
            base queue); or a live worker server serves it. Nothing is written then.
    """
    check_queue(queue)
    count = check_shards(n)
    if len(queue) + MAX_SUFFIX_CHARS > MAX_QUEUE_CHARS:
        raise ValidationError(
            f"queue name {queue!r} is too long to shard: its sub-queue names need "
            f"{MAX_SUFFIX_CHARS} more chars within {MAX_QUEUE_CHARS}; use at most "
            f"{MAX_QUEUE_CHARS - MAX_SUFFIX_CHARS} chars"
        )
    global_keys = GlobalKeys(namespace)
    before = read_counts(redis, namespace).get(queue, 1)
    if before == count:
        return Change(queue, before, count, layout(queue, count))
    registered = _registered(redis, namespace)
    old = members(queue, before, registered)
    busy = [s for s in serving if any(q in old or q == queue for q in s)]
    if busy:
        raise ValidationError(
            f"queue {queue!r} is served by {len(busy)} live worker server(s), which would keep "
            f"serving its old layout ({before} shard(s)); stop them, change the shards, restart"
        )
    held = _holding(redis, namespace, [*old, *layout(queue, count)])
    if held:
        raise ValidationError(
            f"queue {queue!r} still holds tasks in {', '.join(held)}: changing its shards "
            f"from {before} to {count} would hide them from its workers. Let it drain (and "
            "delete its archived and completed tasks), or keep the shards as they are"
        )
    pipe = redis.pipeline(transaction=False)
    if count == 1:
        pipe.hdel(global_keys.shards, queue)
    else:
        pipe.hset(global_keys.shards, queue, count)
    # The old layout's shards stay registered although empty: a producer whose copy of the
    # map is up to REFRESH_S old may still write there, and workers serve registered shards.
    pipe.sadd(global_keys.queues, *layout(queue, count))
    pipe.execute()
    return Change(queue, before, count, layout(queue, count))


def _holding(redis: Any, namespace: str, names: Sequence[str]) -> list[str]:
    """The physical queues among ``names`` that hold any task (live, kept, held, grouped)."""
    pipe = redis.pipeline(transaction=False)
    for name in names:
        keys = QueueKeys(namespace, name)
        pipe.hlen(keys.msg)
        pipe.hlen(keys.held)
        pipe.zcard(keys.agg_groups)
    counts = pipe.execute()
    return [name for i, name in enumerate(names) if any(counts[3 * i : 3 * i + 3])]
