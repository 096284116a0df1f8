"""Sharded logical queues on a real 3-master Redis Cluster: the shards land on every master,
a sharded queue's load (commands per master) splits evenly, every task runs exactly once, and
pause, the id conflict check, uniqueness and the refusal to change N hold across masters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster as SyncRedisCluster

from rq_sched import Client, Inspector, NewTask, Router, Task
from rq_sched.connection import connect
from rq_sched.errors import DuplicateTaskError, TaskIdConflictError, ValidationError
from rq_sched.keys import QueueKeys
from rq_sched.local_redis import RedisCluster
from rq_sched.shards import layout
from tests.worker_support import Recorder, running_server

pytestmark = pytest.mark.cluster
TASKS = 600


@pytest.fixture
def conn(cluster: RedisCluster) -> Iterator[SyncRedisCluster]:
    connection = connect(cluster.url, cluster=True)
    assert isinstance(connection, SyncRedisCluster)
    try:
        yield connection
    finally:
        connection.close()


def master_of(conn: SyncRedisCluster, queue: str, namespace: str) -> str:
    node = conn.get_node_from_key(QueueKeys(namespace, queue).msg)  # type: ignore[no-untyped-call]
    return str(node.name)


def commands_per_master(cluster: RedisCluster) -> dict[int, int]:
    out = {}
    for node in cluster.nodes[: cluster.masters]:
        with redis.Redis(port=node.port) as r:
            stats = r.info("commandstats")
        out[node.port] = sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat"))
    return out


@pytest.mark.parametrize("n", [3, 6])
def test_the_shards_land_evenly_on_the_masters(
    conn: SyncRedisCluster, namespace: str, n: int
) -> None:
    masters = Counter(master_of(conn, name, namespace) for name in layout("orders", n))
    assert sorted(masters.values()) == [n // 3] * 3


@pytest.mark.parametrize("n", [3, 6])
def test_a_sharded_queue_spreads_its_commands_evenly_and_runs_each_task_once(
    cluster: RedisCluster, conn: SyncRedisCluster, namespace: str, n: int
) -> None:
    Inspector(conn, namespace=namespace).set_shards("orders", n)
    client = Client(conn, namespace=namespace)
    seen = Recorder()
    router = Router()

    @router.task("s:t")
    async def note(task: Task) -> None:
        seen.add(task.id)

    before = commands_per_master(cluster)
    infos = client.enqueue_many(
        [NewTask(type="s:t", payload=i, queue="orders") for i in range(TASKS // 2)]
    )
    infos += [client.enqueue("s:t", i, queue="orders") for i in range(TASKS // 2)]
    options = {"queues": {"orders": 1}, "cluster": True, "idle_timeout": 3600.0}
    with running_server(cluster.url, router, namespace=namespace, **options):
        seen.wait_for(TASKS, timeout=60)
    after = commands_per_master(cluster)
    assert Counter(seen.items) == Counter(i.id for i in infos)  # each ran exactly once
    spent = [after[port] - before[port] for port in before]
    even = sum(spent) / len(spent)
    assert all(abs(s - even) <= 0.15 * even for s in spent), spent


def test_pause_reaches_every_master(conn: SyncRedisCluster, namespace: str) -> None:
    inspector = Inspector(conn, namespace=namespace)
    inspector.set_shards("orders", 3)
    assert inspector.pause("orders")
    for name in [*layout("orders", 3), "orders"]:
        assert conn.exists(QueueKeys(namespace, name).paused)
    assert inspector.queue_info("orders").paused
    assert inspector.unpause("orders")
    assert not inspector.queue_info("orders").paused


def test_id_conflict_and_uniqueness_are_exact_across_masters(
    conn: SyncRedisCluster, namespace: str
) -> None:
    Inspector(conn, namespace=namespace).set_shards("orders", 6)
    client = Client(conn, namespace=namespace)
    client.enqueue("t", None, queue="orders", task_id="invoice-7")
    client.enqueue("t", {"user": 1}, queue="orders", unique=60)
    for _ in range(6):
        with pytest.raises(TaskIdConflictError):
            client.enqueue("t", None, queue="orders", task_id="invoice-7")
        with pytest.raises(DuplicateTaskError):
            client.enqueue("t", {"user": 1}, queue="orders", unique=60)
    assert Inspector(conn, namespace=namespace).queue_info("orders").pending == 2


def test_changing_n_of_a_queue_with_tasks_is_refused(
    conn: SyncRedisCluster, namespace: str
) -> None:
    inspector = Inspector(conn, namespace=namespace)
    inspector.set_shards("orders", 3)
    Client(conn, namespace=namespace).enqueue("t", None, queue="orders")
    with pytest.raises(ValidationError, match="still holds tasks"):
        inspector.set_shards("orders", 6)
    assert inspector.shard_count("orders") == 3
