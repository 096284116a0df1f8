"""The Consumer loses nothing: failing handlers, bad or stale jobs, Redis down, nodes killed,
consumers that die holding a job."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta

import redis

from rq_sched.dq import Outcome, Producer, wire
from rq_sched.local_redis import RedisServer
from tests.dq.conftest import (
    Calls,
    MakeConsumer,
    StartServers,
    nodes_of,
    put_like_go,
)
from tests.polling import wait_until


def _fail(count: int) -> None:
    raise RuntimeError(f"attempt {count} failed")


def test_a_failing_job_is_retried_then_buried_after_max_failures(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer, r: redis.Redis
) -> None:
    servers = beanstalkds(2)
    calls = Calls(result=_fail)
    consumer = consumers(
        nodes_of(servers, tube), handler=calls, max_failures=3, backoff=lambda n: 0
    )
    consumer.start()
    with Producer(nodes_of(servers, tube)) as producer:
        refs = wire.split_ids(producer.delay(b"doomed", 0))
    wait_until(lambda: sum(s.tube_counts(tube)["buried"] for s in servers) == 1, what="buried")
    wait_until(lambda: sum(s.jobs_in(tube) for s in servers) == 1, what="the other copy gone")
    assert len(calls) == 3  # three attempts in all, not three per copy
    buried = next(
        ref for ref, s in zip(refs, servers, strict=True) if s.tube_counts(tube)["buried"]
    )
    server = servers[refs.index(buried)]
    with server.client(tube) as client:
        assert client.stats_job(buried.job_id)["pri"] == 2 + 3  # the failure count
    key = hashlib.md5(calls.jobs[0].wrapped).hexdigest()
    assert r.get(key) == f"rqsdq:own:{buried}".encode()


def test_kicking_a_buried_job_gives_it_another_try(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer
) -> None:
    servers = beanstalkds(2)
    calls = Calls(result=lambda n: _fail(n) if n == 1 else None)
    consumer = consumers(nodes_of(servers, tube), handler=calls, max_failures=1)
    with Producer(nodes_of(servers, tube)) as producer:
        producer.delay(b"fixed-later", 0)
    assert sorted(o.value for o in consumer.run_once()) == ["buried", "duplicate"]
    buried = next(s for s in servers if s.tube_counts(tube)["buried"])
    with buried.client(tube) as client:
        assert client.kick(1) == 1
    assert consumer.run_once(timeout=1) == [Outcome.DONE]
    assert len(calls) == 2
    assert all(s.jobs_in(tube) == 0 for s in servers)


def test_an_unparseable_job_is_buried_not_dropped(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer
) -> None:
    servers = beanstalkds(1)
    with servers[0].client(tube) as client:
        client.put(b"not a dq body", priority=2, ttr=5)
    calls = Calls()
    assert consumers(nodes_of(servers, tube), handler=calls).run_once() == [Outcome.BURIED]
    assert servers[0].tube_counts(tube)["buried"] == 1
    assert len(calls) == 0


def test_a_stale_job_is_buried_once_and_kicking_it_runs_it(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer
) -> None:
    servers = beanstalkds(2)
    target = time.time_ns() - 31 * 60 * 1_000_000_000
    for server in servers:
        put_like_go(server, tube, b"late", target)
    calls = Calls()
    consumer = consumers(nodes_of(servers, tube), handler=calls)
    assert sorted(o.value for o in consumer.run_once()) == ["buried", "duplicate"]
    assert len(calls) == 0
    buried = next(s for s in servers if s.tube_counts(tube)["buried"])
    with buried.client(tube) as client:
        client.kick(1)
    assert consumer.run_once(timeout=1) == [Outcome.DONE]
    assert [j.body for j in calls.jobs] == [b"late"]


def test_redis_down_during_consume_loses_nothing(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer, fresh_redis: RedisServer
) -> None:
    servers = beanstalkds(2)
    calls = Calls()
    consumer = consumers(nodes_of(servers, tube), handler=calls, redis=fresh_redis.url)
    consumer.start()
    with Producer(nodes_of(servers, tube)) as producer:
        producer.delay(b"before", 0)
        calls.wait(1)  # the consumer is connected to Redis and working
        wait_until(lambda: all(s.jobs_in(tube) == 0 for s in servers), what="first job settled")
        fresh_redis.stop(kill=True)
        refs = wire.split_ids(producer.delay(b"keep-me", 0))

    def releases() -> list[int]:
        counts = []
        for server, ref in zip(servers, refs, strict=True):
            with server.client(tube) as client:
                counts.append(client.stats_job(ref.job_id)["releases"])
        return counts

    wait_until(lambda: min(releases()) >= 2, what="both copies released twice")
    assert len(calls) == 1
    # The consumer counts an outcome after beanstalkd has taken the release: wait for the count.
    wait_until(
        lambda: consumer.counts()[Outcome.REDIS_DOWN] >= 4,
        what="four releases counted as Redis down",
    )
    fresh_redis.start()
    calls.wait(2)
    wait_until(lambda: all(s.jobs_in(tube) == 0 for s in servers), what="all copies gone")
    assert [j.body for j in calls.jobs] == [b"before", b"keep-me"]


def test_a_node_killed_and_restarted_with_its_binlog_still_fires_its_job(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer
) -> None:
    servers = beanstalkds(2)
    calls = Calls()
    consumer = consumers(nodes_of(servers, tube), handler=calls)
    consumer.start()
    with Producer(nodes_of(servers, tube)) as producer:
        producer.delay(b"survivor", 2)
    servers[0].stop(kill=True)
    servers[0].start()
    assert servers[0].tube_counts(tube)["delayed"] == 1  # the binlog brought it back
    calls.wait(1)
    target = calls.jobs[0].at_ns
    wait_until(lambda: all(s.jobs_in(tube) == 0 for s in servers), what="both copies consumed")
    assert len(calls) == 1
    assert calls.times[0] >= target
    counts = consumer.counts()
    assert (counts[Outcome.DONE], counts[Outcome.DUPLICATE]) == (1, 1)


def test_a_dead_consumers_hold_is_taken_over_after_its_lease(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer, r: redis.Redis
) -> None:
    servers = beanstalkds(1)
    target = time.time_ns()
    put_like_go(servers[0], tube, b"orphan", target)
    key = hashlib.md5(b"%d/orphan" % target).hexdigest()
    now_ms = int(r.time()[0]) * 1000
    r.set(key, f"rqsdq:run:{now_ms - 1}:deadbeef", px=3_600_500)  # its lease has lapsed
    calls = Calls()
    assert consumers(nodes_of(servers, tube), handler=calls).run_once() == [Outcome.DONE]
    assert len(calls) == 1


def test_a_copy_held_by_a_live_consumer_is_looked_at_again_later(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer, r: redis.Redis
) -> None:
    servers = beanstalkds(1)
    target = time.time_ns()
    job_id = put_like_go(servers[0], tube, b"held", target)
    key = hashlib.md5(b"%d/held" % target).hexdigest()
    now_ms = int(r.time()[0]) * 1000
    r.set(key, f"rqsdq:run:{now_ms + 60_000}:cafebabe", px=3_600_500)
    calls = Calls()
    consumer = consumers(nodes_of(servers, tube), handler=calls, busy_recheck=timedelta(seconds=2))
    assert consumer.run_once() == [Outcome.BUSY]
    with servers[0].client(tube) as client:
        stats = client.stats_job(job_id)
    assert (stats["state"], stats["delay"], len(calls)) == ("delayed", 2, 0)
