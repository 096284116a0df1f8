"""The whole script set on a real 3-master Redis Cluster, through redis-py's cluster clients.

Queues are picked so that they hash to slots on three different masters; every script, the
client's pipelines (enqueue_many) and NOSCRIPT recovery must work on each of them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio.cluster
from redis.cluster import RedisCluster as ClusterClient

from rq_sched import (
    AsyncClient,
    Client,
    EnqueueManyError,
    FlowLimits,
    Inspector,
    ManualClock,
    NewTask,
    TaskState,
    TaskStateError,
    TypeLimits,
    errors,
    ops,
    scripts,
)
from rq_sched.clock import to_ms
from rq_sched.flow import Hold, dequeue_hold
from rq_sched.keys import QueueKeys
from rq_sched.local_redis import RedisCluster
from rq_sched.message import decode
from rq_sched.scripts import Call

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def rc(cluster: RedisCluster) -> Iterator[ClusterClient]:
    conn = ClusterClient.from_url(cluster.url)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def queues(rc: ClusterClient, namespace: str) -> dict[str, int]:
    """Three queue names whose keys live on three different masters: name -> node port."""
    found: dict[str, int] = {}
    for i in range(1000):
        name = f"queue{i}"
        node = rc.get_node_from_key(QueueKeys(namespace, name).msg)  # type: ignore[no-untyped-call]
        port = node.port
        if port not in found.values():
            found[name] = port
        if len(found) == 3:
            return found
    raise AssertionError("no three queues on three masters")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def cclient(rc: ClusterClient, namespace: str, clock: ManualClock) -> Client:
    return Client(rc, namespace=namespace, clock=clock)


@pytest.fixture
def cinspector(rc: ClusterClient, namespace: str, clock: ManualClock) -> Inspector:
    return Inspector(rc, namespace=namespace, clock=clock)


def run(rc: ClusterClient, call: Call) -> Any:
    script, keys, args = call
    return scripts.run(rc, script, keys, args)


def node_keys(cluster: RedisCluster, namespace: str) -> dict[int, set[str]]:
    """The keys of ``namespace`` on each master, by port, read from each node directly."""
    out: dict[int, set[str]] = {}
    for node in cluster.nodes:
        with redis.Redis(port=node.port) as direct:
            out[node.port] = {k.decode() for k in direct.scan_iter(match=f"{namespace}:*")}
    return out


def test_queues_land_on_different_masters(
    cluster: RedisCluster, cclient: Client, queues: dict[str, int], namespace: str
) -> None:
    for queue in queues:
        cclient.enqueue("t", queue=queue)
    placed = node_keys(cluster, namespace)
    assert len(set(queues.values())) == 3
    for queue, port in queues.items():
        prefix = QueueKeys(namespace, queue).prefix
        assert {k for k in placed[port] if k.startswith(prefix)} == {
            f"{prefix}:msg",
            f"{prefix}:pending",
            f"{prefix}:marker",
        }
        for other, keys in placed.items():
            if other != port:
                assert not [k for k in keys if k.startswith(prefix)]


def test_task_lifecycle_scripts_run_on_every_master(
    rc: ClusterClient,
    cclient: Client,
    cinspector: Inspector,
    clock: ManualClock,
    queues: dict[str, int],
    namespace: str,
) -> None:
    now = to_ms(clock.now())
    for queue in queues:
        keys = QueueKeys(namespace, queue)
        done_id = cclient.enqueue("t", b"1", queue=queue, unique=60).id
        retry_id = cclient.enqueue("t", b"2", queue=queue).id
        lost_id = cclient.enqueue("t", b"3", queue=queue).id
        later_id = cclient.enqueue("t", b"4", queue=queue, process_in=10).id
        leased = ops.parse_dequeue(run(rc, ops.dequeue(keys, 1000, 3)))
        assert [t.id for t in leased] == [done_id, retry_id, lost_id]
        token = {t.id: t.token for t in leased}
        renew = [(done_id, token[done_id]), ("gone", 1)]
        assert run(rc, ops.extend(keys, 2000, renew)) == [[b"gone"], []]
        digest = decode(leased[0].data).unique
        ack = ops.Ack(done_id, token[done_id], now + 5000, b"ok", digest)
        assert run(rc, ops.done(keys, [ack], clock.now())) == [1]
        assert rc.exists(keys.unique(digest)) == 0
        failed = ops.retry(
            keys,
            retry_id,
            token[retry_id],
            encoded=b"\x93\x01\xa1t\xc0",
            due_ms=now + 50,
            now_s=clock.now(),
        )
        assert run(rc, failed) == 2
        # The lease of lost_id ran out (by Redis TIME): its worker died.
        rc.zadd(keys.lease, {lost_id: 1}, xx=True)
        assert run(rc, ops.recover(keys)) == [[lost_id.encode()], []]
        assert run(rc, ops.forward(keys, now + 20_000)) == [2, -1]
        leased = ops.parse_dequeue(run(rc, ops.dequeue(keys, 30_000, 5)))
        assert {t.id for t in leased} == {lost_id, later_id, retry_id}
        token = {t.id: t.token for t in leased}
        assert run(rc, ops.requeue(keys, [(lost_id, token[lost_id])])) == 1
        info = cinspector.queue_info(queue)
        assert (info.pending, info.active, info.completed, info.processed, info.failed) == (
            1,
            2,
            1,
            1,
            1,
        )
        limits = ops.ArchiveLimits()
        assert run(rc, ops.trim(keys, now + 6000, limits)) == [1, 0]


def test_operator_actions_on_every_master(
    cclient: Client, cinspector: Inspector, queues: dict[str, int]
) -> None:
    for queue in queues:
        task_id = cclient.enqueue("t", queue=queue, process_in=60).id
        cinspector.run_task(queue, task_id)
        assert cinspector.get_task(queue, task_id).state is TaskState.PENDING
        cinspector.archive_task(queue, task_id)
        assert cinspector.get_task(queue, task_id).state is TaskState.ARCHIVED
        cinspector.delete_task(queue, task_id)
        assert cinspector.pause(queue) is True
        assert cinspector.queue_info(queue).paused is True
        with pytest.raises(TaskStateError):
            cinspector.run_task(queue, cclient.enqueue("t", queue=queue).id)
        assert cinspector.unpause(queue) is True
        info = cinspector.queue_info(queue)
        assert (info.pending, info.archived, info.paused) == (1, 0, False)
    assert cinspector.queues() == sorted(queues)


def test_enqueue_many_pipelines_across_masters(
    cclient: Client, cinspector: Inspector, queues: dict[str, int]
) -> None:
    names = list(queues)
    tasks = [NewTask(type="t", payload=i, queue=names[i % 3]) for i in range(1200)]
    tasks += [NewTask(type="u", payload=q, queue=q, unique=60) for q in names]
    infos = cclient.enqueue_many(tasks)
    assert len({i.id for i in infos}) == len(tasks)
    for queue in names:
        assert cinspector.queue_info(queue).pending == 401
    with pytest.raises(EnqueueManyError) as caught:
        cclient.enqueue_many([NewTask(type="u", payload=names[0], queue=names[0], unique=60)])
    assert caught.value.results[0].__class__.__name__ == "DuplicateTaskError"


def script_flush(cluster: RedisCluster) -> None:
    for node in cluster.nodes:
        with redis.Redis(port=node.port) as direct:
            direct.script_flush()


def loaded_on(cluster: RedisCluster, name: str) -> list[bool]:
    sha = scripts.load(name).sha
    found = []
    for node in cluster.nodes:
        with redis.Redis(port=node.port) as direct:
            found += direct.script_exists(sha)
    return found


def test_scripts_reload_after_script_flush_on_every_master(
    cluster: RedisCluster, cclient: Client, cinspector: Inspector, queues: dict[str, int]
) -> None:
    names = list(queues)
    cclient.enqueue("t", queue=names[0])
    script_flush(cluster)
    assert loaded_on(cluster, "enqueue") == [False, False, False]
    cclient.enqueue("t", queue=names[1])
    assert loaded_on(cluster, "enqueue") == [True, True, True]
    script_flush(cluster)
    cclient.enqueue_many([NewTask(type="t", queue=q) for q in names])
    assert loaded_on(cluster, "enqueue_batch") == [True, True, True]
    assert [cinspector.queue_info(q).pending for q in names] == [2, 2, 1]


def test_unknown_code_paths_report_failures_on_cluster(
    rc: ClusterClient, queues: dict[str, int], namespace: str
) -> None:
    keys = QueueKeys(namespace, next(iter(queues)))
    assert run(rc, ops.set_paused(keys, True)) == 1
    assert run(rc, ops.dequeue(keys, 0, 1)) == errors.PAUSED
    assert run(rc, ops.delete(keys, "nope", None)) == errors.NOT_FOUND


def test_async_client_on_cluster(
    cluster: RedisCluster, queues: dict[str, int], cinspector: Inspector
) -> None:
    names = list(queues)
    namespace = cinspector.namespace

    async def scenario() -> None:
        conn = redis.asyncio.cluster.RedisCluster.from_url(cluster.url)
        async with AsyncClient(conn, namespace=namespace) as producer:
            script_flush(cluster)
            await producer.enqueue("t", queue=names[0])
            script_flush(cluster)
            await producer.enqueue_many([NewTask(type="t", queue=q) for q in names])

    asyncio.run(scenario())
    assert [cinspector.queue_info(q).pending for q in names] == [2, 1, 1]


def test_cluster_from_url(cluster: RedisCluster) -> None:
    namespace = f"t{uuid.uuid4().hex[:8]}"
    with Client.from_url(cluster.url, cluster=True, namespace=namespace) as producer:
        producer.enqueue("t", queue="x")
    inspector = Inspector.from_url(cluster.url, cluster=True, namespace=namespace)
    try:
        assert inspector.queue_info("x").pending == 1
    finally:
        inspector.close()


def test_flow_limits_debounce_and_throttle_run_on_every_master(
    rc: ClusterClient, cclient: Client, cinspector: Inspector, queues: dict[str, int]
) -> None:
    for queue in queues:
        keys = QueueKeys(cclient.namespace, queue)
        ids = [cclient.enqueue("t", n, queue=queue).id for n in range(3)]
        cclient.set_flow(queue, FlowLimits(rate="1/h", concurrency=2))
        reply = run(rc, ops.dequeue(keys, 30_000, 3))
        assert [t.id for t in ops.parse_dequeue(reply)] == ids[:1]  # one token
        assert cinspector.flow(queue).active == 1
        cinspector.set_flow(queue, FlowLimits(concurrency=1))
        reply = run(rc, ops.dequeue(keys, 30_000, 3))
        assert ops.parse_dequeue(reply) == [] and dequeue_hold(reply) == Hold("cap", None)
        first = cclient.debounce("d", 1, key="k", queue=queue, window=60)
        assert cclient.debounce("d", 2, key="k", queue=queue, window=60).id == first.id
        kept = cclient.throttle("th", 1, key="k", queue=queue, window=60)
        assert cclient.throttle("th", 2, key="k", queue=queue, window=60).id == kept.id


def test_type_limits_run_on_every_master(
    rc: ClusterClient, cclient: Client, cinspector: Inspector, queues: dict[str, int]
) -> None:
    for queue in queues:
        keys = QueueKeys(cclient.namespace, queue)
        cclient.set_flow(queue, FlowLimits(types={"api": TypeLimits(rate="1/h", concurrency=1)}))
        ids = [cclient.enqueue("api", n, queue=queue).id for n in range(3)]
        other = cclient.enqueue("other", 0, queue=queue).id
        reply = run(rc, ops.dequeue(keys, 30_000, 5))
        leased = ops.parse_dequeue(reply)
        assert sorted(t.id for t in leased) == sorted([ids[0], other])
        (api,) = cinspector.flow(queue).types
        assert (api.pending, api.running, api.state) == (2, 1, "capped")
        cinspector.set_flow(queue, FlowLimits(types={"api": TypeLimits(concurrency=2)}))
        assert run(rc, ops.done(keys, [ops.Ack(t.id, t.token) for t in leased], 0)) == [2]
        reply = run(rc, ops.dequeue(keys, 30_000, 5))
        assert [t.id for t in ops.parse_dequeue(reply)] == ids[1:]
