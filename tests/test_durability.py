"""Replica-confirmed enqueue (``replicas=``): WAIT after the write, on the write's connection,
against a real master with a real replica, and on a real 3-master cluster with a replica each.

Outcome checks read the *replica*: a confirmed task must already be there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster as ClusterClient

from rq_sched import (
    AsyncClient,
    Client,
    Debounced,
    EnqueueManyError,
    NewTask,
    RedisUnavailableError,
    ReplicationError,
    TaskIdConflictError,
    TaskInfo,
    Throttled,
    ValidationError,
)
from rq_sched.keys import QueueKeys
from rq_sched.local_redis import FAST_SYNC, RedisCluster, RedisServer
from tests.polling import wait_until


def start_pair(base: Path) -> tuple[RedisServer, RedisServer]:
    """A master and a replica of it, started and in sync."""
    master = RedisServer(base / "master", extra_args=FAST_SYNC)
    replica = RedisServer(
        base / "replica", extra_args=["--replicaof", "127.0.0.1", str(master.port)]
    )
    try:
        master.start()
        replica.extra_args[-1] = str(master.port)
        replica.start()
        with redis.Redis(port=master.port) as conn:
            wait_until(
                lambda: conn.info("replication").get("slave0", {}).get("state") == "online",
                what="the replica's first sync",
            )
    except BaseException:
        replica.stop(kill=True)
        master.stop(kill=True)
        raise
    return master, replica


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, RedisServer]]:
    """A master and one replica of it."""
    base = tmp_path_factory.mktemp("pair")
    master, replica = start_pair(base)
    try:
        yield master, replica
    finally:
        replica.stop(kill=True)
        master.stop(kill=True)


@pytest.fixture
def master(pair: tuple[RedisServer, RedisServer]) -> Iterator[redis.Redis]:
    conn = redis.Redis(port=pair[0].port)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def replica(pair: tuple[RedisServer, RedisServer]) -> Iterator[redis.Redis]:
    conn = redis.Redis(port=pair[1].port)
    try:
        yield conn
    finally:
        conn.close()


def on(
    conn: redis.Redis | ClusterClient, namespace: str, task_id: str, queue: str = "default"
) -> bool:
    return bool(conn.hexists(QueueKeys(namespace, queue).msg, task_id))


# -- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, "1", True, 1.5])
def test_a_bad_replica_count_is_refused(master: redis.Redis, namespace: str, bad: object) -> None:
    with pytest.raises(ValidationError, match="replicas must be an int >= 0"):
        Client(master, namespace=namespace, replicas=bad)  # type: ignore[arg-type]
    client = Client(master, namespace=namespace)
    with pytest.raises(ValidationError, match="replicas must be an int >= 0"):
        client.enqueue("t", replicas=bad)  # type: ignore[arg-type]
    assert master.hlen(QueueKeys(namespace, "default").msg) == 0


@pytest.mark.parametrize("bad", [0, -1, float("inf")])
def test_a_bad_replica_timeout_is_refused(master: redis.Redis, namespace: str, bad: float) -> None:
    with pytest.raises(ValidationError, match="replica_timeout"):
        Client(master, namespace=namespace, replicas=1, replica_timeout=bad)


# -- one master, one replica -----------------------------------------------------------------


def test_a_confirmed_enqueue_is_on_the_replica_when_it_returns(
    master: redis.Redis, replica: redis.Redis, namespace: str
) -> None:
    client = Client(master, namespace=namespace, replicas=1)
    for i in range(20):
        info = client.enqueue("t", i)
        assert on(replica, namespace, info.id)


def test_more_replicas_than_exist_is_a_replication_error_and_the_task_is_written(
    master: redis.Redis, namespace: str
) -> None:
    client = Client(master, namespace=namespace, replicas=2, replica_timeout=0.1)
    with pytest.raises(ReplicationError, match="may or may not survive a failover") as caught:
        client.enqueue("t", 1, task_id="kept")
    error = caught.value
    assert (error.confirmed, error.wanted) == (1, 2)
    assert isinstance(error.results, TaskInfo) and error.results.id == "kept"
    assert on(master, namespace, "kept")
    with pytest.raises(TaskIdConflictError):  # the documented safe retry
        client.enqueue("t", 1, task_id="kept", replicas=1)


def test_the_per_call_count_overrides_the_clients(
    master: redis.Redis, replica: redis.Redis, namespace: str
) -> None:
    lax = Client(master, namespace=namespace)
    assert on(replica, namespace, lax.enqueue("t", 1, replicas=1).id)
    strict = Client(master, namespace=namespace, replicas=5, replica_timeout=0.05)
    strict.enqueue("t", 2, replicas=0)  # no WAIT: returns without a replication check
    with pytest.raises(ReplicationError):
        strict.enqueue("t", 3)


def test_a_refused_enqueue_is_refused_as_before(master: redis.Redis, namespace: str) -> None:
    client = Client(master, namespace=namespace, replicas=1)
    client.enqueue("t", 1, task_id="same")
    # Another payload: the same bytes within the same millisecond would be a resend (accepted).
    with pytest.raises(TaskIdConflictError):
        client.enqueue("t", 2, task_id="same")


def test_a_confirmed_enqueue_loads_its_script_after_a_flush(
    master: redis.Redis, replica: redis.Redis, namespace: str
) -> None:
    client = Client(master, namespace=namespace, replicas=1)
    client.enqueue("t", 0)
    master.script_flush()
    info = client.enqueue("t", 1)
    assert on(replica, namespace, info.id)


def test_enqueue_many_confirmed_and_short(
    master: redis.Redis, replica: redis.Redis, namespace: str
) -> None:
    client = Client(master, namespace=namespace, replicas=1)
    tasks = [NewTask(type="t", payload=i, queue=f"q{i % 3}") for i in range(30)]
    infos = client.enqueue_many(tasks)
    assert all(on(replica, namespace, i.id, i.queue) for i in infos)
    with pytest.raises(ReplicationError) as caught:
        client.enqueue_many(
            [
                NewTask(type="t", payload=1, task_id=infos[0].id, queue="q0"),
                NewTask(type="t", payload=2),
            ],
            replicas=3,
        )
    results = caught.value.results
    assert isinstance(results, list)
    assert isinstance(results[0], TaskIdConflictError) and isinstance(results[1], TaskInfo)


def test_enqueue_many_confirmed_reports_debounce_and_throttle_outcomes(
    master: redis.Redis, replica: redis.Redis, namespace: str
) -> None:
    client = Client(master, namespace=namespace, replicas=1)
    infos = client.enqueue_many(
        [
            NewTask(type="d", payload=1, debounce="k", window=60),
            NewTask(type="d", payload=2, debounce="k", window=60),
            NewTask(type="t", payload=1, throttle="k", window=60),
            NewTask(type="t", payload=2, throttle="k", window=60),
        ]
    )
    assert infos.outcomes == [
        Debounced(infos[0].id, False),
        Debounced(infos[0].id, True),
        Throttled(infos[2].id, False),
        Throttled(infos[2].id, True),
    ]
    assert on(replica, namespace, infos[0].id) and on(replica, namespace, infos[2].id)


def test_enqueue_many_confirmed_reports_conflicts_as_before(
    master: redis.Redis, namespace: str
) -> None:
    client = Client(master, namespace=namespace, replicas=1)
    client.enqueue("t", task_id="a")
    # Another payload: the same bytes within the same millisecond would be a resend (accepted).
    with pytest.raises(EnqueueManyError):
        client.enqueue_many(
            [NewTask(type="t", payload=2, task_id="a"), NewTask(type="t", task_id="b")]
        )


def test_async_confirmed_enqueue_and_enqueue_many(
    pair: tuple[RedisServer, RedisServer], replica: redis.Redis, namespace: str
) -> None:
    async def scenario() -> list[TaskInfo]:
        async with AsyncClient.from_url(pair[0].url, namespace=namespace, replicas=1) as client:
            one = await client.enqueue("t", 1)
            many = await client.enqueue_many([NewTask(type="t", payload=i) for i in range(10)])
            with pytest.raises(ReplicationError):
                await client.enqueue("t", 2, replicas=2)
            return [one, *many]

    infos = asyncio.run(scenario())
    assert all(on(replica, namespace, i.id) for i in infos)


def test_a_dead_replica_is_never_confirmed(tmp_path: Path, namespace: str) -> None:
    master, replica = start_pair(tmp_path)
    try:
        conn = redis.Redis(port=master.port)
        client = Client(conn, namespace=namespace, replicas=1, replica_timeout=2.0)
        client.enqueue("t", 1)
        replica.stop(kill=True)
        # Other connections of the pool wrote nothing: a WAIT on one of them would confirm at
        # once. The error shows the WAIT went down the connection of the write.
        with pytest.raises(ReplicationError) as caught:
            client.enqueue("t", 2)
        assert caught.value.confirmed == 0
        conn.close()
    finally:
        replica.stop(kill=True)
        master.stop(kill=True)


# -- Redis Cluster: WAIT on the node that took the write -------------------------------------


@pytest.fixture(scope="module")
def cluster_with_replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    nodes = RedisCluster(tmp_path_factory.mktemp("cluster33"), replicas=1).start()
    try:
        yield nodes
    finally:
        nodes.stop()


def _spread_queues(rc: ClusterClient, namespace: str) -> list[str]:
    found: dict[int, str] = {}
    for i in range(1000):
        node = rc.get_node_from_key(QueueKeys(namespace, f"q{i}").msg)  # type: ignore[no-untyped-call]
        found.setdefault(node.port, f"q{i}")
        if len(found) == 3:
            return list(found.values())
    raise AssertionError("no three queues on three masters")


def _replica_of(rc: ClusterClient, queue_key: str) -> redis.Redis:
    """A read-only connection to the replica serving ``queue_key``'s slot."""
    node = rc.get_node_from_key(queue_key)  # type: ignore[no-untyped-call]
    with redis.Redis(host=node.host, port=node.port) as primary:
        replica = primary.info("replication")["slave0"]
    conn = redis.Redis(host=replica["ip"], port=int(replica["port"]))
    conn.readonly()
    return conn


@pytest.mark.cluster
def test_confirmed_enqueues_on_a_cluster_reach_each_masters_replica(
    cluster_with_replicas: RedisCluster, namespace: str
) -> None:
    with Client.from_url(
        cluster_with_replicas.url, cluster=True, namespace=namespace, replicas=1
    ) as client:
        assert isinstance(client.redis, ClusterClient)
        queues = _spread_queues(client.redis, namespace)
        infos = client.enqueue_many(
            [NewTask(type="t", payload=i, queue=q) for i, q in enumerate(queues * 5)]
        )
        infos.append(client.enqueue("t", "one", queue=queues[1]))
        for info in infos:
            replica = _replica_of(client.redis, QueueKeys(namespace, info.queue).msg)
            try:
                assert replica.hexists(QueueKeys(namespace, info.queue).msg, info.id)
            finally:
                replica.close()
        with pytest.raises(ReplicationError) as caught:
            client.enqueue("t", 2, queue=queues[2], replicas=2)
        assert caught.value.confirmed == 1


@pytest.mark.cluster
def test_async_confirmed_enqueue_on_a_cluster(
    cluster_with_replicas: RedisCluster, namespace: str
) -> None:
    rc = ClusterClient.from_url(cluster_with_replicas.url)
    queues = _spread_queues(rc, namespace)

    async def scenario() -> list[TaskInfo]:
        async with AsyncClient.from_url(
            cluster_with_replicas.url, cluster=True, namespace=namespace, replicas=1
        ) as client:
            many = await client.enqueue_many(
                [NewTask(type="t", payload=i, queue=q) for i, q in enumerate(queues)]
            )
            return [*many, await client.enqueue("t", "x", queue=queues[0])]

    try:
        for info in asyncio.run(scenario()):
            replica = _replica_of(rc, QueueKeys(namespace, info.queue).msg)
            try:
                assert replica.hexists(QueueKeys(namespace, info.queue).msg, info.id)
            finally:
                replica.close()
    finally:
        rc.close()


@pytest.mark.cluster
def test_a_redirect_loop_on_a_cluster_is_redis_unavailable(
    cluster_with_replicas: RedisCluster, namespace: str
) -> None:
    # A slot left MIGRATING to a node that is not IMPORTING it: the source answers ASK for a
    # missing key, the target MOVED back, until redis-py gives up with ClusterError("TTL
    # exhausted"), which must reach the caller as an rq_sched error, not a redis-py one.
    with Client.from_url(cluster_with_replicas.url, cluster=True, namespace=namespace) as client:
        assert isinstance(client.redis, ClusterClient)
        rc = client.redis
        key = QueueKeys(namespace, "loop").msg
        slot = rc.keyslot(key)  # type: ignore[no-untyped-call]
        source = rc.get_node_from_key(key)  # type: ignore[no-untyped-call]
        target = next(n for n in rc.get_primaries() if n.name != source.name)  # type: ignore[no-untyped-call]
        with redis.Redis(host=source.host, port=source.port) as conn:
            target_id = redis.Redis(host=target.host, port=target.port).cluster("myid")
            conn.cluster("setslot", slot, "migrating", target_id)
            try:
                with pytest.raises(RedisUnavailableError, match="TTL exhausted"):
                    client.enqueue("t", 1, queue="loop")
            finally:
                conn.cluster("setslot", slot, "stable")


@pytest.mark.cluster
def test_a_confirmed_enqueue_mid_migration_fails_cleanly_then_follows_moved(
    cluster_with_replicas: RedisCluster, namespace: str
) -> None:
    with Client.from_url(
        cluster_with_replicas.url, cluster=True, namespace=namespace, replicas=1
    ) as client:
        assert isinstance(client.redis, ClusterClient)
        rc = client.redis
        keys = QueueKeys(namespace, "moving")
        slot = rc.keyslot(keys.msg)  # type: ignore[no-untyped-call]
        source = rc.get_node_from_key(keys.msg)  # type: ignore[no-untyped-call]
        primaries = rc.get_primaries()  # type: ignore[no-untyped-call]
        target = next(n for n in primaries if n.name != source.name)
        src = redis.Redis(host=source.host, port=source.port)
        dst = redis.Redis(host=target.host, port=target.port)
        try:
            src_id, dst_id = src.cluster("myid"), dst.cluster("myid")
            dst.cluster("setslot", slot, "importing", src_id)
            src.cluster("setslot", slot, "migrating", dst_id)
            # Mid-migration the new queue's keys are on neither node: the source answers ASK,
            # the importing target (after ASKING) TRYAGAIN, as Redis does for a multi-key call
            # whose keys are not all there. The call gives up cleanly; the script never ran.
            with pytest.raises(RedisUnavailableError, match="slot migration"):
                client.enqueue("t", 1, queue="moving", task_id="mid")
            pipe = dst.pipeline(transaction=False)
            pipe.execute_command("ASKING")  # type: ignore[no-untyped-call]
            pipe.hexists(keys.msg, "mid")
            assert pipe.execute()[1] == 0
            assert src.cluster("countkeysinslot", slot) == 0
            for conn in (dst, src, *(redis.Redis(host=n.host, port=n.port) for n in primaries)):
                conn.cluster("setslot", slot, "node", dst_id)
            # The client's slot map still names the source: MOVED, refresh, send again.
            moved = client.enqueue_many([NewTask(type="t", payload=2, queue="moving")])[0]
            assert dst.hexists(keys.msg, moved.id)
            assert client.enqueue("t", 3, queue="moving", task_id="mid").id == "mid"
            assert rc.get_node_from_key(keys.msg).name == target.name  # type: ignore[no-untyped-call]
        finally:
            src.close()
            dst.close()


def test_a_grouped_enqueue_is_confirmed_too(master: redis.Redis, namespace: str) -> None:
    client = Client(master, namespace=namespace, replicas=1)
    client.enqueue("t", 1, group="g")
    with pytest.raises(ReplicationError) as caught:
        client.enqueue("t", 2, group="g", replicas=2)
    assert caught.value.confirmed == 1


def test_a_held_task_cannot_ask_for_replicas(master: redis.Redis, namespace: str) -> None:
    client = Client(master, namespace=namespace)
    parent = client.enqueue("t", 1)
    keys_before = sorted(master.keys(f"{namespace}*"))
    with pytest.raises(ValidationError, match="replicas= does not cover depends_on="):
        client.enqueue("t", 2, depends_on=[parent.id], replicas=1)
    assert sorted(master.keys(f"{namespace}*")) == keys_before
    strict = Client(master, namespace=namespace, replicas=1)
    with pytest.raises(ValidationError, match="replicas=0"):
        strict.enqueue("t", 3, depends_on=[parent.id])
    strict.enqueue("t", 3, depends_on=[parent.id], replicas=0)
