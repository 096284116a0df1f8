"""Replica-confirmed enqueue: ``WAIT`` after the write, on the connection that made it.

Redis replication is asynchronous: a master acknowledges a write before any replica has it, so
a write acknowledged just before the master dies can vanish in the failover that follows. A
client made with ``replicas=N`` (or a call with ``replicas=N``) sends ``WAIT N timeout`` right
after its scripts and reports success only when N replicas confirmed them; fewer confirmations
raise :class:`~rq_sched.errors.ReplicationError` (the write happened on the master, and may or
may not survive a failover). ``WAIT`` counts the writes *of its own connection*, so the scripts
and the ``WAIT`` go down one connection taken from the pool for the call, never two pooled
calls that could land on different connections (a ``WAIT`` on a connection that wrote nothing
answers at once with every replica, a false confirmation).

In a Redis Cluster a queue's keys live on one master, so the calls are grouped by the node that
owns their slot, and each group goes with its ``WAIT`` down one connection to that node. The
redirections a cluster client normally follows are followed here too, bounded: ``MOVED``
(refresh the slot map, send again: nothing ran), ``ASK`` (send to the importing node after
``ASKING``), ``TRYAGAIN`` (a multi-key call split by a migration: wait a moment, send again),
and NOSCRIPT (load, send again). WAIT does not make Redis strongly consistent: it narrows the
loss window to writes no replica confirmed, and says which ones those are.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    AskError,
    MovedError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)

from rq_sched.durations import duration_ms
from rq_sched.errors import (
    EnqueueManyError,
    RedisUnavailableError,
    ReplicationError,
    ValidationError,
)
from rq_sched.scripts import AnyAsyncRedis, Call, SyncRedis

MAX_REDIRECTS = 16
"""Rounds of MOVED / ASK / TRYAGAIN / NOSCRIPT a confirmed call follows before giving up (as
many as redis-py's cluster client: with the TRYAGAIN pause, about 0.8 s of a migration)."""
TRYAGAIN_PAUSE = 0.05
"""Seconds to wait before resending a call a slot migration answered TRYAGAIN."""
DEFAULT_REPLICA_TIMEOUT = 1.0
"""Seconds a confirmed write waits for its replicas by default."""

_DONE = object()
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ReplicaWait:
    """How many replicas must confirm a write (0: none, no WAIT), and for how long to wait."""

    replicas: int = 0
    timeout_ms: int = round(DEFAULT_REPLICA_TIMEOUT * 1000)

    @classmethod
    def build(cls, replicas: object, timeout: timedelta | float) -> ReplicaWait:
        """Validate a client's ``replicas=`` and ``replica_timeout=``.

        Raises:
            ValidationError: a count that is not an int >= 0, or a bad timeout.
        """
        timeout_ms = duration_ms(timeout, "replica_timeout", allow_zero=False)
        return cls(_count(replicas), timeout_ms)

    def per_call(self, replicas: object, *, held: bool = False) -> ReplicaWait:
        """This wait, with the replica count a call asked for (None: the client's).

        Raises:
            ValidationError: a bad count, or a count > 0 for a held task (``held``: enqueued
                with ``depends_on``, whose steps may write to several slots, each needing its
                own WAIT; not supported).
        """
        found = self if replicas is None else ReplicaWait(_count(replicas), self.timeout_ms)
        if held and found.replicas:
            raise ValidationError(
                "replicas= does not cover depends_on= (a held task's steps may write to several "
                "slots); enqueue it with replicas=0, or confirm its parents instead"
            )
        return found

    def check(self, confirmed: int, what: str, results: object) -> None:
        """Raise :class:`ReplicationError` when fewer than ``replicas`` confirmed ``what``."""
        if confirmed >= self.replicas:
            return
        raise ReplicationError(
            f"{what} written to the master, but only {confirmed} of {self.replicas} replica(s) "
            f"confirmed it within {self.timeout_ms} ms: it may or may not survive a failover. "
            "Retrying with the same task_id is safe (a surviving task answers "
            "TaskIdConflictError); if replicas are down or lagging, check them (INFO "
            "replication) or lower replicas=.",
            confirmed=confirmed,
            wanted=self.replicas,
            results=results,
        )

    def settle(self, confirmed: int, what: str, outcome: Callable[[], T]) -> T:
        """``outcome()`` when enough replicas confirmed, else :class:`ReplicationError` carrying
        it (or, when it raised :class:`EnqueueManyError`, its per-task results)."""
        if confirmed >= self.replicas:
            return outcome()
        try:
            results: object = outcome()
        except EnqueueManyError as exc:
            results = exc.results
        self.check(confirmed, what, results)
        raise AssertionError("unreachable: check() raised")


def _count(replicas: object) -> int:
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise ValidationError(
            f"replicas must be an int >= 0 (replicas that must confirm a write), got {replicas!r}"
        )
    return replicas


# -- one connection: the calls, then WAIT --------------------------------------------------


def _commands(calls: Sequence[Call], asking: Sequence[bool], wait: ReplicaWait) -> list[Any]:
    commands: list[Any] = []
    for (script, keys, args), ask in zip(calls, asking, strict=True):
        if ask:
            commands.append(("ASKING",))
        commands.append(("EVALSHA", script.sha, len(keys), *keys, *args))
    commands.append(("WAIT", wait.replicas, wait.timeout_ms))
    return commands


def _split(replies: list[Any], asking: Sequence[bool]) -> tuple[list[Any], int]:
    """The calls' replies (without the ASKING ones) and the WAIT count."""
    acked = replies.pop()
    out: list[Any] = []
    position = 0
    for ask in asking:
        position += ask  # skip the ASKING reply
        out.append(replies[position])
        position += 1
    if isinstance(acked, BaseException):
        raise acked
    return out, int(acked)


def _send(pool: Any, calls: Sequence[Call], asking: Sequence[bool], wait: ReplicaWait) -> Any:
    conn = pool.get_connection()
    try:
        commands = _commands(calls, asking, wait)
        conn.send_packed_command(conn.pack_commands(commands))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(conn.read_response())
            except ResponseError as exc:
                replies.append(exc)
    except BaseException:
        conn.disconnect()  # replies may be left unread: never hand this socket out again
        raise
    finally:
        pool.release(conn)
    return _split(replies, asking)


async def _asend(
    conn: Any, calls: Sequence[Call], asking: Sequence[bool], wait: ReplicaWait
) -> tuple[list[Any], int]:
    commands = _commands(calls, asking, wait)
    try:
        await conn.send_packed_command(conn.pack_commands(commands))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await conn.read_response())
            except ResponseError as exc:
                replies.append(exc)
    except BaseException:
        await conn.disconnect()
        raise
    return _split(replies, asking)


# -- the rounds: send, sort the replies, resend what was redirected ------------------------


@dataclass
class _Round:
    """The bookkeeping of one confirmed run: results so far, calls to resend, the WAIT low."""

    calls: Sequence[Call]
    results: list[Any]
    todo: list[int]
    ask_to: dict[int, tuple[str, int]]
    confirmed: int | None = None
    refresh: bool = False
    pause: bool = False
    load: set[int] | None = None

    @classmethod
    def start(cls, calls: Sequence[Call]) -> _Round:
        return cls(calls, [_DONE] * len(calls), list(range(len(calls))), {})

    def take(self, indexes: list[int], replies: list[Any], acked: int, host: str) -> list[int]:
        """Record one connection's replies; the indexes to send again."""
        again: list[int] = []
        wrote = False
        for index, reply in zip(indexes, replies, strict=True):
            self.ask_to.pop(index, None)
            if isinstance(reply, NoScriptError):
                self.load = (self.load or set()) | {index}
                again.append(index)
            elif isinstance(reply, MovedError):
                self.refresh = True
                again.append(index)
            elif isinstance(reply, AskError):
                self.ask_to[index] = (reply.host or host, reply.port)
                again.append(index)
            elif isinstance(reply, TryAgainError):
                self.pause = True
                again.append(index)
            else:
                self.results[index] = reply
                wrote = True
        if wrote:
            self.confirmed = acked if self.confirmed is None else min(self.confirmed, acked)
        return again

    def finish(self, wait: ReplicaWait) -> tuple[list[Any], int]:
        if self.todo:
            raise RedisUnavailableError(
                f"{len(self.todo)} write(s) still redirected after {MAX_REDIRECTS} rounds of "
                "MOVED/ASK/TRYAGAIN (a slot migration or failover is under way); the rest were "
                "written. Retry: an enqueue with an explicit task_id is safe to retry."
            )
        return self.results, wait.replicas if self.confirmed is None else self.confirmed


def run_confirmed(
    redis: SyncRedis, calls: Sequence[Call], wait: ReplicaWait
) -> tuple[list[Any], int]:
    """Run script ``calls``, each followed (per connection) by ``WAIT``.

    Returns:
        The calls' replies in order (error replies as exception values), and the fewest
        replicas that confirmed any connection's writes.
    """
    state = _Round.start(calls)
    for _ in range(MAX_REDIRECTS):
        if not state.todo:
            break
        again: list[int] = []
        for (pool, host), indexes in _route(redis, state).items():
            asking = [i in state.ask_to for i in indexes]
            replies, acked = _send(pool, [calls[i] for i in indexes], asking, wait)
            again += state.take(indexes, replies, acked, host)
        state.todo = sorted(again)
        _recover(redis, state)
    return state.finish(wait)


def _route(redis: SyncRedis, state: _Round) -> dict[tuple[Any, str], list[int]]:
    if not isinstance(redis, RedisCluster):
        return {(redis.connection_pool, ""): state.todo}
    groups: dict[tuple[Any, str], list[int]] = defaultdict(list)
    for index in state.todo:
        target = state.ask_to.get(index)
        node: ClusterNode | None = (
            redis.get_node(host=target[0], port=target[1])  # type: ignore[no-untyped-call]
            if target
            else redis.get_node_from_key(state.calls[index][1][0])  # type: ignore[no-untyped-call]
        )
        if node is None or node.redis_connection is None:
            redis.nodes_manager.initialize()
            node = redis.get_node_from_key(state.calls[index][1][0])  # type: ignore[no-untyped-call]
            state.ask_to.pop(index, None)
        assert node is not None and node.redis_connection is not None
        groups[(node.redis_connection.connection_pool, node.host)].append(index)
    return groups


def _recover(redis: SyncRedis, state: _Round) -> None:
    for index in state.load or ():
        redis.script_load(state.calls[index][0].source)  # on a cluster: every primary
    state.load = None
    if state.refresh and isinstance(redis, RedisCluster):
        redis.nodes_manager.initialize()
    if state.pause:
        time.sleep(TRYAGAIN_PAUSE)
    state.refresh = state.pause = False


async def arun_confirmed(
    redis: AnyAsyncRedis, calls: Sequence[Call], wait: ReplicaWait
) -> tuple[list[Any], int]:
    """Async :func:`run_confirmed`."""
    state = _Round.start(calls)
    for _ in range(MAX_REDIRECTS):
        if not state.todo:
            break
        again: list[int] = []
        for (target, host), indexes in _aroute(redis, state).items():
            asking = [i in state.ask_to for i in indexes]
            chosen = [calls[i] for i in indexes]
            if isinstance(target, AsyncClusterNode):
                conn = target.acquire_connection()
                try:
                    replies, acked = await _asend(conn, chosen, asking, wait)
                finally:
                    target.release(conn)
            else:
                conn = await target.get_connection()
                try:
                    replies, acked = await _asend(conn, chosen, asking, wait)
                finally:
                    await target.release(conn)
            again += state.take(indexes, replies, acked, host)
        state.todo = sorted(again)
        for index in state.load or ():
            await redis.script_load(calls[index][0].source)
        state.load = None
        if state.refresh and isinstance(redis, AsyncRedisCluster):
            await redis.nodes_manager.initialize()
        if state.pause:
            await asyncio.sleep(TRYAGAIN_PAUSE)
        state.refresh = state.pause = False
    return state.finish(wait)


def _aroute(redis: AnyAsyncRedis, state: _Round) -> dict[tuple[Any, str], list[int]]:
    if not isinstance(redis, AsyncRedisCluster):
        return {(redis.connection_pool, ""): state.todo}
    groups: dict[tuple[Any, str], list[int]] = defaultdict(list)
    for index in state.todo:
        target = state.ask_to.get(index)
        node = (
            redis.get_node(host=target[0], port=target[1])
            if target
            else redis.get_node_from_key(state.calls[index][1][0])
        )
        if node is None:  # an ASK to a node the client does not know yet: ask the slot owner
            node = redis.get_node_from_key(state.calls[index][1][0])
            state.ask_to.pop(index, None)
        if node is None:
            raise RedisUnavailableError("the cluster knows no node for a queue's slot (yet)")
        groups[(node, node.host)].append(index)
    return groups
