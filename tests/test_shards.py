"""Sharded logical queues on one real Redis: placement, exact id and uniqueness checks across
shards, workers serving every shard, the inspector's one-queue view, and changing N."""

from __future__ import annotations

import asyncio
import math
from collections import Counter

import pytest
import redis

from rq_sched import AsyncClient, Client, FlowLimits, Inspector, NewTask, Router, Server, Task
from rq_sched.errors import DuplicateTaskError, TaskIdConflictError, ValidationError
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.local_redis import free_port
from rq_sched.shards import SLOTS, layout, shard_of, slot
from tests.worker_support import Recorder, running_server, wait_until


def sharded(inspector: Inspector, client: Client, queue: str, n: int) -> tuple[str, ...]:
    inspector.set_shards(queue, n)
    client._p.shard_map.read_at = -math.inf  # this test's client reads the new map at once
    return layout(queue, n)


def pending(r: redis.Redis, namespace: str, name: str) -> int:
    return int(r.llen(QueueKeys(namespace, name).pending))


@pytest.mark.parametrize("n", [2, 3, 6, 64])
def test_each_shard_sits_in_its_own_range_of_slots(n: int) -> None:
    names = layout("orders", n)
    assert len(set(names)) == n
    for index, name in enumerate(names):
        assert index * SLOTS // n <= slot(name) < (index + 1) * SLOTS // n


@pytest.mark.parametrize("bad", [0, 65, -1, True, 2.0, math.nan, "3", None])
def test_a_bad_number_of_shards_is_refused_and_nothing_is_written(
    inspector: Inspector, r: redis.Redis, namespace: str, bad: object
) -> None:
    with pytest.raises(ValidationError, match="shards must be an int from 1"):
        inspector.set_shards("orders", bad)  # type: ignore[arg-type]
    assert not r.exists(GlobalKeys(namespace).shards)


def test_a_new_queue_name_cannot_take_the_form_of_a_shard(
    client: Client, inspector: Inspector
) -> None:
    with pytest.raises(ValidationError, match="ends like a shard"):
        client.enqueue("t", None, queue="orders~0of3-1")
    with pytest.raises(ValidationError, match="ends like a shard"):
        inspector.set_shards("orders~0of3-1", 3)


def test_plain_tasks_go_round_robin_and_each_id_lives_in_its_hash_shard(
    client: Client, inspector: Inspector, r: redis.Redis, namespace: str
) -> None:
    names = sharded(inspector, client, "orders", 3)
    infos = [client.enqueue("t", i, queue="orders") for i in range(30)]
    assert [pending(r, namespace, name) for name in names] == [10, 10, 10]
    for info in infos:
        assert info.queue == names[shard_of(info.id, 3)]
    many = client.enqueue_many([NewTask(type="t", payload=i, queue="orders") for i in range(30)])
    assert Counter(t.queue for t in many) == dict.fromkeys(names, 10)


def test_an_explicit_task_id_conflicts_exactly_across_shards(
    client: Client, inspector: Inspector
) -> None:
    sharded(inspector, client, "orders", 6)
    client.enqueue("t", 1, queue="orders", task_id="invoice-7")
    for _ in range(5):
        with pytest.raises(TaskIdConflictError):
            client.enqueue("t", 2, queue="orders", task_id="invoice-7")


def test_uniqueness_is_exact_across_shards(client: Client, inspector: Inspector) -> None:
    names = sharded(inspector, client, "orders", 6)
    first = client.enqueue("t", {"user": 1}, queue="orders", unique=60)
    for _ in range(10):
        with pytest.raises(DuplicateTaskError):
            client.enqueue("t", {"user": 1}, queue="orders", unique=60)
    assert first.queue in names
    assert inspector.queue_info("orders").size == 1


def test_an_explicit_id_with_unique_is_refused_on_a_sharded_queue(
    client: Client, inspector: Inspector
) -> None:
    sharded(inspector, client, "orders", 3)
    with pytest.raises(ValidationError, match="cannot be combined"):
        client.enqueue("t", 1, queue="orders", unique=60, task_id="a")
    assert inspector.queue_info("orders").size == 0


def test_a_debounce_key_stays_in_one_shard(client: Client, inspector: Inspector) -> None:
    sharded(inspector, client, "orders", 6)
    first = client.debounce("t", 1, key="user:1", window=60, queue="orders")
    for i in range(5):
        again = client.debounce("t", i, key="user:1", window=60, queue="orders")
        assert (again.id, again.replaced) == (first.id, True)
    assert inspector.queue_info("orders").scheduled == 1


def test_the_inspector_shows_one_queue_with_its_shards(
    client: Client, inspector: Inspector, r: redis.Redis, namespace: str
) -> None:
    names = sharded(inspector, client, "orders", 3)
    client.enqueue("t", None, queue="plain")
    infos = [client.enqueue("t", i, queue="orders") for i in range(9)]
    assert inspector.queues() == ["orders", "plain"]
    stats = inspector.queue_stats("orders")
    assert stats.info.pending == 9
    assert [s.info.queue for s in stats.shards] == [*names, "orders"]
    assert [s.info.pending for s in stats.shards] == [3, 3, 3, 0]
    by_name = {s.info.queue: s.info.pending for s in inspector.all_queue_stats()}
    assert by_name == {"orders": 9, "plain": 1}
    page = inspector.list_tasks("orders", "pending", size=4)
    assert (page.total, len(page.tasks)) == (9, 4)
    assert inspector.get_task("orders", infos[4].id).payload == 4
    inspector.archive_task("orders", infos[4].id)
    inspector.run_task("orders", infos[4].id)
    inspector.delete_task("orders", infos[5].id)
    assert inspector.queue_info("orders").pending == 8


def test_pause_and_bulk_actions_reach_every_shard(
    client: Client, inspector: Inspector, r: redis.Redis, namespace: str
) -> None:
    names = sharded(inspector, client, "orders", 3)
    for i in range(9):
        client.enqueue("t", i, queue="orders")
    assert inspector.pause("orders") is True
    assert all(r.exists(QueueKeys(namespace, name).paused) for name in [*names, "orders"])
    assert inspector.queue_info("orders").paused
    assert inspector.unpause("orders") is True
    assert not any(r.exists(QueueKeys(namespace, name).paused) for name in names)
    step = inspector.bulk("orders", "pending", "archive", limit=4)
    assert (step.done, step.remaining) == (4, 5)
    rest = inspector.bulk("orders", "pending", "archive")
    assert rest.done == 5
    assert inspector.queue_info("orders").archived == 9
    assert inspector.bulk("orders", "archived", "delete").done == 9
    assert inspector.queue_info("orders").size == 0


def test_changing_n_is_refused_while_any_shard_holds_a_task(
    client: Client, inspector: Inspector, r: redis.Redis, namespace: str
) -> None:
    sharded(inspector, client, "orders", 3)
    client.enqueue("t", None, queue="orders")
    for n in (1, 6):
        with pytest.raises(ValidationError, match="still holds tasks"):
            inspector.set_shards("orders", n)
    assert inspector.shard_count("orders") == 3
    inspector.delete_queue("orders")
    assert inspector.set_shards("orders", 6).before == 3
    assert inspector.shard_count("orders") == 6


def test_changing_n_on_an_unsharded_queue_with_tasks_is_refused(
    client: Client, inspector: Inspector
) -> None:
    client.enqueue("t", None, queue="orders")
    with pytest.raises(ValidationError, match="still holds tasks"):
        inspector.set_shards("orders", 3)
    assert inspector.shard_count("orders") == 1


def test_a_worker_serves_every_shard_and_a_stale_producers_tasks(
    redis_url: str, client: Client, inspector: Inspector, namespace: str
) -> None:
    stale = Client.from_url(redis_url, namespace=namespace)
    stale.enqueue("s:t", "before", queue="orders", process_in=3600)  # reads the map: unsharded
    inspector.delete_queue("orders")
    sharded(inspector, client, "orders", 3)
    seen = Recorder()
    router = Router()

    @router.task("s:t")
    def note(task: Task) -> None:
        seen.add((task.id, task.queue))

    old = stale.enqueue("s:t", "stale", queue="orders")  # its map is < 2 s old: base queue
    assert old.queue == "orders"
    infos = [client.enqueue("s:t", i, queue="orders") for i in range(30)]
    parent = client.enqueue("s:t", "parent", queue="orders", retention=60)
    child = client.enqueue("s:t", "child", queue="orders", depends_on=[parent.id])
    with running_server(redis_url, router, namespace=namespace, queues={"orders": 2}):
        assert client.wait_result("orders", parent.id, timeout=10) is None
        items = seen.wait_for(33)
    ran = Counter(task_id for task_id, _ in seen.items)
    expected = {old.id, parent.id, child.id, *(i.id for i in infos)}
    assert set(ran) == expected and set(ran.values()) == {1}
    assert {q for _, q in items} == {*layout("orders", 3), "orders"}
    stale.close()


def test_a_live_server_of_the_queue_blocks_a_change(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    inspector = Inspector(r, namespace=namespace)  # the servers' heartbeats are in real time
    with running_server(redis_url, Router(), namespace=namespace, queues={"orders": 1}) as srv:
        wait_until(lambda: inspector.servers() != [], what="the server's heartbeat")
        with pytest.raises(ValidationError, match="live worker server"):
            inspector.set_shards("orders", 3)
        assert srv.config.queues == {"orders": 1}
    assert inspector.shard_count("orders") == 1


def test_a_strict_priority_worker_serves_all_shards_of_a_backlog(
    redis_url: str, client: Client, inspector: Inspector, namespace: str
) -> None:
    names = sharded(inspector, client, "orders", 3)
    seen = Recorder()
    router = Router()

    @router.task("s:t")
    def note(task: Task) -> None:
        seen.add(task.queue)

    for i in range(60):
        client.enqueue("s:t", i, queue="orders")
    options = {"queues": {"orders": 1}, "strict_priority": True, "concurrency": 1}
    with running_server(redis_url, router, namespace=namespace, **options):
        items = seen.wait_for(15)
    # Tied shards are shuffled: the first 15 tasks came from more than one shard.
    assert len(set(items[:15]) & set(names)) > 1


def test_tasks_with_one_shard_key_share_a_shard_in_order(
    client: Client, inspector: Inspector
) -> None:
    names = sharded(inspector, client, "orders", 6)
    infos = [client.enqueue("t", i, queue="orders", shard_key="customer-9") for i in range(12)]
    assert {i.queue for i in infos} == {names[shard_of("customer-9", 6)]}
    page = inspector.list_tasks(infos[0].queue, "pending", size=20)
    assert [t.id for t in page.tasks] == [i.id for i in infos]  # FIFO within the shard
    spread = {client.enqueue("t", None, queue="orders", shard_key=f"c{i}").queue for i in range(60)}
    assert spread == set(names)


@pytest.mark.parametrize(
    "options",
    [
        {"task_id": "a"},
        {"unique": 60},
        {"group": "g"},
    ],
)
def test_a_shard_key_with_another_routing_choice_is_refused(
    client: Client, inspector: Inspector, options: dict[str, object]
) -> None:
    sharded(inspector, client, "orders", 3)
    with pytest.raises(ValidationError, match="shard_key cannot be combined"):
        client.enqueue("t", None, queue="orders", shard_key="k", **options)  # type: ignore[arg-type]
    assert inspector.queue_info("orders").size == 0


@pytest.mark.parametrize("bad", ["", 7, b"k", "x" * 1001, "\ud800"])
def test_a_bad_shard_key_is_refused(client: Client, bad: object) -> None:
    with pytest.raises(ValidationError, match="shard_key"):
        client.enqueue("t", None, queue="orders", shard_key=bad)  # type: ignore[arg-type]


def test_flow_limits_are_refused_on_a_sharded_queue(client: Client, inspector: Inspector) -> None:
    sharded(inspector, client, "orders", 3)
    with pytest.raises(ValidationError, match="flow limits cannot span"):
        client.set_flow("orders", FlowLimits(concurrency=5))
    with pytest.raises(ValidationError, match="flow limits cannot span"):
        inspector.set_flow("orders", FlowLimits(concurrency=5))


def test_a_server_refuses_flow_limits_on_a_sharded_queue(
    redis_url: str, client: Client, inspector: Inspector, namespace: str
) -> None:
    sharded(inspector, client, "orders", 3)
    limits = {"orders": FlowLimits(concurrency=2)}
    server = Server.from_url(redis_url, namespace=namespace, queues={"orders": 1}, flow=limits)

    async def serve() -> None:
        try:
            await server.serve(Router())
        finally:
            await server.redis.aclose()

    with pytest.raises(ValidationError, match="flow limits cannot span shards"):
        asyncio.run(serve())
    assert server.components == []  # refused before anything started


def test_the_async_client_routes_like_the_sync_one(
    redis_url: str, client: Client, inspector: Inspector, r: redis.Redis, namespace: str
) -> None:
    names = sharded(inspector, client, "orders", 3)

    async def scenario() -> list[str]:
        async with AsyncClient.from_url(redis_url, namespace=namespace) as producer:
            infos = [await producer.enqueue("t", i, queue="orders") for i in range(6)]
            infos += await producer.enqueue_many(
                [NewTask(type="t", payload=i, queue="orders") for i in range(3)]
            )
            explicit = await producer.enqueue("t", None, queue="orders", task_id="ship-9")
            with pytest.raises(TaskIdConflictError):
                await producer.enqueue("t", 1, queue="orders", task_id="ship-9")
            return [i.queue for i in infos] + [explicit.queue]

    queues = asyncio.run(scenario())
    assert Counter(queues[:9]) == dict.fromkeys(names, 3)
    assert queues[9] == names[shard_of("ship-9", 3)]
    assert [pending(r, namespace, name) for name in names] == [
        3 + (name == queues[9]) for name in names
    ]


def test_a_producer_with_the_old_n_still_reaches_the_workers_after_a_change(
    redis_url: str, client: Client, inspector: Inspector, namespace: str
) -> None:
    old_names = sharded(inspector, client, "orders", 3)
    stale = Client.from_url(redis_url, namespace=namespace)
    warm = stale.enqueue("s:t", "warm", queue="orders")  # stale's map now says 3 shards
    inspector.delete_task("orders", warm.id)
    inspector.set_shards("orders", 6)
    late = [stale.enqueue("s:t", i, queue="orders") for i in range(6)]  # within REFRESH_S
    assert {i.queue for i in late} <= set(old_names)
    seen = Recorder()
    router = Router()

    @router.task("s:t")
    def note(task: Task) -> None:
        seen.add(task.id)

    with running_server(redis_url, router, namespace=namespace, queues={"orders": 1}) as srv:
        assert set(layout("orders", 3)) <= set(srv.config.queues)
        assert set(layout("orders", 6)) <= set(srv.config.queues)
        items = seen.wait_for(6)
    assert sorted(items) == sorted(i.id for i in late)
    stale.close()


def test_a_burst_of_async_enqueues_reads_the_shard_map_once(
    redis_url: str, client: Client, inspector: Inspector, r: redis.Redis, namespace: str
) -> None:
    names = sharded(inspector, client, "orders", 3)

    def map_reads() -> int:
        return int(r.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0))

    async def burst() -> list[str]:
        async with AsyncClient.from_url(redis_url, namespace=namespace) as producer:
            infos = await asyncio.gather(
                *(producer.enqueue("t", i, queue="orders") for i in range(90))
            )
            return [i.queue for i in infos]

    before = map_reads()
    queues = asyncio.run(burst())
    assert map_reads() - before == 1
    assert Counter(queues) == dict.fromkeys(names, 30)


@pytest.mark.parametrize("call", ["enqueue", "enqueue_many", "chain", "debounce"])
def test_bad_input_is_refused_before_the_shard_map_is_read(call: str) -> None:
    # Nothing listens on the port: a round trip before the checks would be a Redis error.
    client = Client(redis.Redis(port=free_port(), socket_connect_timeout=1), namespace="n")
    bad = NewTask(type="t", queue="orders", max_retry=-1)
    with pytest.raises(ValidationError, match="max_retry"):
        if call == "enqueue":
            client.enqueue("t", None, queue="orders", max_retry=-1)
        elif call == "enqueue_many":
            client.enqueue_many([bad])
        elif call == "chain":
            client.chain([bad, bad])
        else:
            client.debounce("t", None, key="k", window=5, queue="orders", max_retry=-1)
