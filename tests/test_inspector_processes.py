"""Inspector reads of servers, scheduler and Redis INFO, from records written the way the
heartbeat and the scheduler write them; and the queue reads and actions on a real cluster."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis

from rq_sched import Inspector, ManualClock, ValidationError
from rq_sched.clock import from_ms, to_ms
from rq_sched.connection import connect
from rq_sched.keys import GlobalKeys
from rq_sched.local_redis import RedisCluster
from rq_sched.models import ScheduleEntryInfo, ScheduleRecord, ServerInfo, WorkerInfo
from tests.seeding import seed_queue


def write_server(
    r: redis.Redis, keys: GlobalKeys, clock: ManualClock, server_id: str, *, ttl_s: float
) -> ServerInfo:
    now = from_ms(to_ms(clock.now()))
    info = ServerInfo(
        id=server_id,
        host="host-" + server_id,
        pid=100,
        queues={"default": 3, "low": 1},
        strict_priority=False,
        concurrency=8,
        started_at=now - timedelta(minutes=5),
        status="running",
        active=2,
        processed=10,
        failed=1,
    )
    r.zadd(keys.servers, {server_id: to_ms(clock.now() + ttl_s)})
    r.set(keys.server(server_id), info.to_json())
    for n in range(2):
        worker = WorkerInfo(f"task-{n}", "email:send", "default", now - timedelta(seconds=10 - n))
        r.hset(keys.workers(server_id), f"task-{n}", worker.to_json())
    return info


def test_servers_lists_live_servers_with_their_workers(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    keys = GlobalKeys(namespace)
    info = write_server(r, keys, clock, "b", ttl_s=30)
    write_server(r, keys, clock, "a", ttl_s=-1)  # heartbeat expired: gone
    servers = inspector.servers()
    assert [s.info for s in servers] == [info]
    assert [w.task_id for w in servers[0].workers] == ["task-0", "task-1"]
    assert servers[0].heartbeat_expires_at == from_ms(to_ms(clock.now() + 30))


def test_an_unreadable_server_record_is_skipped(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    keys = GlobalKeys(namespace)
    write_server(r, keys, clock, "good", ttl_s=30)
    r.zadd(keys.servers, {"bad": to_ms(clock.now() + 30)})
    r.set(keys.server("bad"), "{not json")
    assert [s.info.id for s in inspector.servers()] == ["good"]


def entry(entry_id: str, next_in_s: float, clock: ManualClock) -> ScheduleEntryInfo:
    now = from_ms(to_ms(clock.now()))
    return ScheduleEntryInfo(
        id=entry_id,
        name="nightly-" + entry_id,
        spec="0 3 * * *",
        type="report",
        queue="default",
        timezone="UTC",
        misfire="skip",
        payload_preview='{"kind": "daily"}',
        next_fire=now + timedelta(seconds=next_in_s),
        prev_fire=now - timedelta(hours=1),
        updated_at=now,
    )


def test_scheduler_lists_entries_by_next_fire_with_history(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    keys = GlobalKeys(namespace)
    later, sooner = entry("e1", 600, clock), entry("e2", 60, clock)
    r.hset(keys.scheduler_entries, mapping={"e1": later.to_json(), "e2": sooner.to_json()})
    fired = from_ms(to_ms(clock.now()))
    for n in range(15):
        at = fired - timedelta(minutes=n)
        record = ScheduleRecord(at, at, f"tick-{n}", "default")
        r.rpush(keys.scheduler_history("e2"), record.to_json())  # newest first
    r.zadd(keys.schedulers, {"sched-1": to_ms(clock.now() + 20), "old": 1})
    status = inspector.scheduler(history=10)
    assert status.instances == ["sched-1"]
    assert [e.info for e in status.entries] == [sooner, later]
    assert [h.task_id for h in status.entries[0].history] == [f"tick-{n}" for n in range(10)]
    assert status.entries[1].history == []


def test_scheduler_history_length_is_bounded(inspector: Inspector) -> None:
    with pytest.raises(ValidationError, match="history must be between 0 and 100"):
        inspector.scheduler(history=101)


def test_redis_info_summarises_the_server(client: object, inspector: Inspector) -> None:
    nodes = inspector.redis_info()
    assert len(nodes) == 1
    info = nodes[0].info
    assert info["redis_version"].split(".")[0].isdigit()
    assert int(info["connected_clients"]) >= 1
    assert "127.0.0.1" in nodes[0].address


@pytest.mark.cluster
def test_queue_reads_and_actions_work_on_a_cluster(
    cluster: RedisCluster, namespace: str, clock: ManualClock
) -> None:
    conn = connect(cluster.url, cluster=True)
    try:
        inspector = Inspector(conn, namespace=namespace, clock=clock)
        for queue in ("alpha", "beta", "gamma"):
            seed_queue(conn, namespace, clock, queue)  # type: ignore[arg-type]
        stats = inspector.all_queue_stats()
        assert [(s.info.queue, s.info.pending, s.info.archived) for s in stats] == [
            ("alpha", 3, 2),
            ("beta", 3, 2),
            ("gamma", 3, 2),
        ]
        assert inspector.queue_stats("beta", memory=True).memory_bytes
        assert sum(d.processed for d in inspector.history(days=2)) == 6
        assert len(inspector.list_tasks("gamma", "retry").tasks) == 2
        assert inspector.bulk("gamma", "archived", "run").done == 2
        assert inspector.queue_stats("gamma").info.pending == 5
        assert inspector.delete_queue("alpha", force=True) > 0
        assert inspector.queues() == ["beta", "gamma"]
        assert len(inspector.redis_info()) == 3
    finally:
        conn.close()
