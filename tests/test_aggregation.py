"""Task aggregation: tasks enqueued with ``group=`` are turned into one task by the router's
aggregator when the group's grace period passes with no new task, its maximum delay since the
first task passes, or it reaches its maximum size; each at the right time by an injected clock,
exactly once with several servers' aggregators racing, and woken through the marker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from rq_sched import Client, ManualClock, NewTask, Router, Task, ValidationError
from rq_sched.aggregation import Aggregation, GroupLimits
from rq_sched.keys import QueueKeys
from rq_sched.message import decode
from rq_sched.worker.aggregator import FAILED_PAUSE, Aggregator
from tests.worker_support import Recorder, running_server, wait_until


def _digest(group: str, tasks: list[Task]) -> NewTask:
    return NewTask(type="digest", payload={"group": group, "items": [t.payload for t in tasks]})


class Servers:
    """Aggregator components of two servers on one Redis, ticked by hand on one loop. A tick
    first relays the due time the marker announces to both (as a server's marker watcher does;
    both hearing it is the worst case: they race for the group)."""

    def __init__(self, redis_url: str, namespace: str, clock: ManualClock, limits: GroupLimits):
        self.loop = asyncio.new_event_loop()
        self.conns = [redis.asyncio.Redis.from_url(redis_url) for _ in range(2)]
        self.keys = QueueKeys(namespace, "q")
        aggregation = Aggregation(_digest, limits)
        self.aggregators = [
            Aggregator(
                conn, {"q": self.keys}, clock=clock, aggregation=aggregation, sweep_interval=3600
            )
            for conn in self.conns
        ]

    def tick(self) -> None:
        async def both() -> None:
            due = await self.conns[0].zscore(self.keys.marker, "d")
            if due is not None:
                await self.conns[0].zrem(self.keys.marker, "d")
                for aggregator in self.aggregators:
                    aggregator.due_at("q", int(due))
            await asyncio.gather(*(a.tick() for a in self.aggregators))

        self.loop.run_until_complete(both())

    def close(self) -> None:
        for conn in self.conns:
            self.loop.run_until_complete(conn.aclose())
        self.loop.close()


@pytest.fixture
def servers_for(redis_url: str, namespace: str, clock: ManualClock) -> Iterator[Any]:
    made: list[Servers] = []

    def make(**limits: Any) -> Servers:
        servers = Servers(redis_url, namespace, clock, GroupLimits(**limits))
        servers.tick()  # stores the limits in the queue, as a starting worker does
        made.append(servers)
        return servers

    yield make
    for servers in made:
        servers.close()


def _digests(r: redis.Redis, namespace: str) -> list[Any]:
    keys = QueueKeys(namespace, "q")
    out = []
    for task_id in reversed(r.lrange(keys.pending, 0, -1)):
        data: bytes = r.hget(keys.msg, task_id)  # type: ignore[assignment]
        out.append(decode(data).payload)
    return out


def test_grace_period_with_no_new_task_triggers(
    servers_for: Any, client: Client, clock: ManualClock, r: redis.Redis, namespace: str
) -> None:
    servers = servers_for(grace=5)
    for n in range(3):
        client.enqueue("mail", n, queue="q", group="user:1")
        clock.advance(1)
    clock.advance(4.999 - 1)  # 4.999 s after the last task
    servers.tick()
    assert _digests(r, namespace) == []
    clock.advance(0.001)
    servers.tick()
    assert _digests(r, namespace) == [{"group": "user:1", "items": [0, 1, 2]}]
    assert sum(a.committed for a in servers.aggregators) == 1


def test_max_delay_since_the_first_task_triggers(
    servers_for: Any, client: Client, clock: ManualClock, r: redis.Redis, namespace: str
) -> None:
    servers = servers_for(grace=5, max_delay=8)
    for n in range(3):  # at 0, 3, 6: the grace never runs out, the max delay does (at 8)
        client.enqueue("mail", n, queue="q", group="g")
        clock.advance(3 if n < 2 else 1.999)
    servers.tick()  # at 7.999
    assert _digests(r, namespace) == []
    clock.advance(0.001)
    servers.tick()
    assert _digests(r, namespace) == [{"group": "g", "items": [0, 1, 2]}]


def test_max_size_triggers_at_once_and_takes_at_most_that_many(
    servers_for: Any, client: Client, clock: ManualClock, r: redis.Redis, namespace: str
) -> None:
    servers = servers_for(grace=60, max_size=3)
    for n in range(4):
        client.enqueue("mail", n, queue="q", group="g")
    servers.tick()
    assert _digests(r, namespace) == [{"group": "g", "items": [0, 1, 2]}]
    clock.advance(59.9)
    servers.tick()
    assert len(_digests(r, namespace)) == 1  # the 4th waits its own grace
    clock.advance(0.1)
    servers.tick()
    assert _digests(r, namespace)[1] == {"group": "g", "items": [3]}


def test_tasks_left_by_a_full_batch_keep_the_max_delay(
    servers_for: Any, client: Client, clock: ManualClock, r: redis.Redis, namespace: str
) -> None:
    # The 4th task was enqueued at 0 with the others: at most max_delay (10 s) later it is
    # aggregated, although the commit of the full batch restarted its group's grace (60 s).
    servers = servers_for(grace=60, max_delay=10, max_size=3)
    for n in range(4):
        client.enqueue("mail", n, queue="q", group="g")
    servers.tick()
    assert _digests(r, namespace) == [{"group": "g", "items": [0, 1, 2]}]
    clock.advance(10)
    servers.tick()
    assert _digests(r, namespace)[1:] == [{"group": "g", "items": [3]}]


def test_racing_aggregators_enqueue_each_batch_once(
    servers_for: Any, client: Client, clock: ManualClock, r: redis.Redis, namespace: str
) -> None:
    servers = servers_for(grace=1)
    for round_ in range(20):
        for group in ("a", "b", "c"):
            for n in range(3):
                client.enqueue("mail", [round_, n], queue="q", group=group)
        clock.advance(1)
        servers.tick()
    digests = _digests(r, namespace)
    assert len(digests) == 60
    items = sorted((d["group"], tuple(map(tuple, d["items"]))) for d in digests)
    assert len(set(items)) == 60
    committed = sum(a.committed for a in servers.aggregators)
    lost = sum(a.lost_races for a in servers.aggregators)
    print(f"\n60 batches: {committed} commits, {lost} lost races (discarded)")
    assert committed == 60
    keys = QueueKeys(namespace, "q")
    assert r.zcard(keys.agg_groups) == 0 and r.hlen(keys.agg_first) == 0


def test_a_failing_aggregator_keeps_the_batch_for_a_retry(
    redis_url: str, namespace: str, client: Client, clock: ManualClock, r: redis.Redis
) -> None:
    calls: list[int] = []

    def flaky(group: str, tasks: list[Task]) -> NewTask:
        calls.append(len(tasks))
        if len(calls) == 1:
            raise RuntimeError("template service down")
        return _digest(group, tasks)

    async def run() -> None:
        conn = redis.asyncio.Redis.from_url(redis_url)
        try:
            keys = {"q": QueueKeys(namespace, "q")}
            aggregation = Aggregation(flaky, GroupLimits(grace=1))
            aggregator = Aggregator(
                conn, keys, clock=clock, aggregation=aggregation, sweep_interval=3600
            )
            await aggregator.tick()
            client.enqueue("mail", 1, queue="q", group="g")
            aggregator.due_at("q", int(await conn.zscore(keys["q"].marker, "d") or 0))
            clock.advance(1)
            await aggregator.tick()
            assert _digests(r, namespace) == []
            clock.advance(FAILED_PAUSE)
            await aggregator.tick()
        finally:
            await conn.aclose()

    asyncio.run(run())
    assert calls == [1, 1]
    assert _digests(r, namespace) == [{"group": "g", "items": [1]}]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"group": ""}, "non-empty"),
        ({"group": "a\nb"}, "printable"),
        ({"group": "g", "process_in": 5}, "process_in"),
        ({"group": "g", "unique": 5}, "unique"),
        ({"group": "g", "depends_on": ["x"]}, "depends_on"),
    ],
)
def test_bad_grouped_enqueues_are_refused(
    client: Client, r: redis.Redis, namespace: str, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValidationError, match=match):
        client.enqueue("mail", 1, queue="q", **kwargs)
    assert r.keys(f"{namespace}:{{q}}:*") == []


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValidationError, match="max_size"):
        GroupLimits(max_size=0)
    with pytest.raises(ValidationError, match="grace"):
        GroupLimits(grace=-1)
    router = Router()
    router.aggregator(_digest)
    with pytest.raises(ValidationError, match="already"):
        router.aggregator(_digest)
    decorated = Router()

    @decorated.aggregator(grace=5, max_size=10)
    def fn(group: str, tasks: list[Task]) -> None:
        return None

    assert decorated.aggregation is not None
    assert decorated.aggregation.aggregate is fn
    assert decorated.aggregation.limits.as_ms() == (5000, 0, 10)


def test_a_server_aggregates_a_group_woken_through_the_marker(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    seen = Recorder()
    router = Router()
    router.aggregator(_digest, grace=0.3)

    @router.task("digest")
    async def digest(task: Task) -> None:
        seen.add((task.payload, time.monotonic()))

    client = Client(r, namespace=namespace)
    # No periodic sweep in this test's lifetime: only the marker can wake the aggregator.
    options = {"forward_sweep_interval": 3600.0, "idle_timeout": 3600.0}
    with running_server(redis_url, router, namespace=namespace, **options):
        # Its first tick (a sweep) stores the limits: after it, only the marker can wake it.
        wait_until(lambda: r.exists(QueueKeys(namespace, "default").agg_conf), what="a sweep")
        for n in range(3):
            client.enqueue("mail", n, group="user:7")
        sent = time.monotonic()
        ((payload, at),) = seen.wait_for(1, timeout=10)
    assert payload == {"group": "user:7", "items": [0, 1, 2]}
    print(f"\naggregated {at - sent:.3f}s after the last enqueue (grace 0.3 s)")
    assert 0.3 <= at - sent < 2.0


def _fixed_id(group: str, tasks: list[Task]) -> NewTask:
    return NewTask(type="digest", payload=len(tasks), queue="q", task_id=f"digest:{group}")


def test_a_batch_whose_task_id_is_taken_stays_in_its_group(
    redis_url: str, namespace: str, client: Client, clock: ManualClock, r: redis.Redis
) -> None:
    # The aggregator names its task with an id a live task holds: the commit must not drop the
    # batch's entries without enqueueing anything (the tasks would be lost, silently).
    keys = QueueKeys(namespace, "q")
    client.enqueue("digest", "earlier", queue="q", task_id="digest:g")
    loop = asyncio.new_event_loop()
    conn = redis.asyncio.Redis.from_url(redis_url)
    aggregator = Aggregator(
        conn,
        {"q": keys},
        clock=clock,
        aggregation=Aggregation(_fixed_id, GroupLimits(grace=1)),
        sweep_interval=3600,
    )
    try:
        loop.run_until_complete(aggregator.tick())  # stores the limits
        for n in range(2):
            client.enqueue("mail", n, queue="q", group="g")
        clock.advance(1)
        aggregator.due_at("q", int(r.zscore(keys.agg_groups, "g") or 0))
        loop.run_until_complete(aggregator.tick())
    finally:
        loop.run_until_complete(conn.aclose())
        loop.close()
    assert aggregator.committed == 0
    assert r.llen(keys.agg_group("g")) == 2
    assert r.zscore(keys.agg_groups, "g") is not None
    assert decode(r.hget(keys.msg, "digest:g")).payload == "earlier"  # type: ignore[arg-type]
