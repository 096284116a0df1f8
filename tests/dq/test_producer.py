"""The beanstalkd Producer against real beanstalkd servers, checked with a plain client."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import greenstalk
import pytest

from rq_sched import ManualClock
from rq_sched.dq import Beanstalk, DqConfigError, DqError, Producer, PutError, wire
from tests.dq.conftest import StartServers, nodes_of


def test_delay_puts_the_dq_wire_format_on_every_node(beanstalkds: StartServers, tube: str) -> None:
    servers = beanstalkds(2)
    with Producer(nodes_of(servers, tube)) as producer:
        before = time.time_ns()
        ids = producer.delay(b"hello", 1.2)
        after = time.time_ns()
    refs = wire.split_ids(ids)
    assert [(r.endpoint, r.tube) for r in refs] == [(s.endpoint, tube) for s in servers]
    assert ids == ",".join(
        f"{s.endpoint}/{tube}/{r.job_id}" for s, r in zip(servers, refs, strict=True)
    )
    for server, ref in zip(servers, refs, strict=True):
        with server.client(tube) as client:
            body = client.peek(ref.job_id).body
            stats = client.stats_job(ref.job_id)
        stamp, _, raw = body.partition(b"/")
        assert raw == b"hello"
        assert before + 1_200_000_000 <= int(stamp) <= after + 1_200_000_000
        assert (stats["pri"], stats["ttr"], stats["state"]) == (2, 5, "delayed")
        assert stats["delay"] == 2  # 1.2 s rounded up: never ready before the body's time


@pytest.mark.parametrize(
    ("delay", "seconds", "state"),
    [(2, 2, "delayed"), (timedelta(milliseconds=1), 1, "delayed"), (0, 0, "ready")],
)
def test_delay_is_whole_seconds_rounded_up(
    beanstalkds: StartServers, tube: str, delay: float | timedelta, seconds: int, state: str
) -> None:
    servers = beanstalkds(2)
    with Producer(nodes_of(servers, tube)) as producer:
        ref = wire.split_ids(producer.delay(b"x", delay))[0]
    with servers[0].client(tube) as client:
        stats = client.stats_job(ref.job_id)
    assert (stats["delay"], stats["state"]) == (seconds, state)


def test_at_writes_the_exact_target_time_and_rounds_the_delay_up(
    beanstalkds: StartServers, tube: str
) -> None:
    servers = beanstalkds(2)
    when = datetime.now(UTC) + timedelta(seconds=1, milliseconds=500)
    with Producer(nodes_of(servers, tube)) as producer:
        ref = wire.split_ids(producer.at(b"x", when))[0]
    with servers[0].client(tube) as client:
        body = client.peek(ref.job_id).body
        stats = client.stats_job(ref.job_id)
    assert body == b"%d/x" % wire.to_ns(when)
    assert stats["delay"] == 2


def test_the_body_time_comes_from_the_injected_clock(beanstalkds: StartServers, tube: str) -> None:
    servers = beanstalkds(2)
    clock = ManualClock(1_800_000_000.0)
    with Producer(nodes_of(servers, tube), clock=clock) as producer:
        ref = wire.split_ids(producer.delay(b"tick", 1.5))[0]
    with servers[0].client(tube) as client:
        assert client.peek(ref.job_id).body == b"1800000001500000000/tick"


def test_at_refuses_past_and_naive_times(beanstalkds: StartServers, tube: str) -> None:
    servers = beanstalkds(2)
    with Producer(nodes_of(servers, tube)) as producer:
        with pytest.raises(DqConfigError, match="in the past"):
            producer.at(b"x", datetime.now(UTC) - timedelta(seconds=1))
        with pytest.raises(DqConfigError, match="naive"):
            producer.at(b"x", datetime.now() + timedelta(hours=1))
        with pytest.raises(DqConfigError, match="bytes"):
            producer.delay("text", 1)  # type: ignore[arg-type]
    assert all(s.jobs_in(tube) == 0 for s in servers)


def test_fewer_than_two_nodes_or_repeated_endpoints_are_config_errors() -> None:
    with pytest.raises(DqConfigError, match="at least 2"):
        Producer([Beanstalk("127.0.0.1:11300", "t")])
    with pytest.raises(DqConfigError, match=r"repeated: 127\.0\.0\.1:11300"):
        Producer([Beanstalk("127.0.0.1:11300", "a"), Beanstalk("127.0.0.1:11300", "b")])
    with pytest.raises(DqConfigError, match="Beanstalk"):
        Producer(["127.0.0.1:11300", "127.0.0.1:11301"])  # type: ignore[list-item]


def test_revoke_removes_every_replica_and_is_idempotent(
    beanstalkds: StartServers, tube: str
) -> None:
    servers = beanstalkds(3)
    with Producer(nodes_of(servers, tube)) as producer:
        keep = producer.delay(b"keep", 5)
        ids = producer.delay(b"drop", 5)
        assert [s.jobs_in(tube) for s in servers] == [2, 2, 2]
        producer.revoke(ids)
        producer.revoke(ids)  # already gone: nothing to do, no error
    assert [s.jobs_in(tube) for s in servers] == [1, 1, 1]
    for server, ref in zip(servers, wire.split_ids(keep), strict=True):
        with server.client(tube) as client:
            assert client.peek(ref.job_id).body.endswith(b"/keep")


def test_revoke_refuses_malformed_ids(beanstalkds: StartServers, tube: str) -> None:
    servers = beanstalkds(2)
    with Producer(nodes_of(servers, tube)) as producer, pytest.raises(DqConfigError):
        producer.revoke("redis/default/abc")


def test_with_more_than_three_nodes_each_job_goes_to_three_random_ones(
    beanstalkds: StartServers, tube: str
) -> None:
    servers = beanstalkds(4)
    with Producer(nodes_of(servers, tube), rng=random.Random(7)) as producer:
        placements = [
            frozenset(r.endpoint for r in wire.split_ids(producer.delay(b"x", 5))) for _ in range(8)
        ]
    assert all(len(p) == 3 for p in placements)
    assert len(set(placements)) > 1
    assert sum(s.jobs_in(tube) for s in servers) == 8 * 3


def test_put_succeeds_with_two_of_three_nodes(beanstalkds: StartServers, tube: str) -> None:
    servers = beanstalkds(3)
    servers[2].stop(kill=True)
    with Producer(nodes_of(servers, tube), connect_timeout=0.5) as producer:
        ids = producer.delay(b"x", 5)
    assert [r.endpoint for r in wire.split_ids(ids)] == [s.endpoint for s in servers[:2]]
    assert [s.jobs_in(tube) for s in servers[:2]] == [1, 1]


def test_put_on_one_of_three_nodes_fails_and_revokes_that_copy(
    beanstalkds: StartServers, tube: str
) -> None:
    servers = beanstalkds(3)
    servers[1].stop(kill=True)
    servers[2].stop(kill=True)
    with (
        Producer(nodes_of(servers, tube), connect_timeout=0.5) as producer,
        pytest.raises(PutError, match="only 1 of 3") as caught,
    ):
        producer.delay(b"x", 5)
    assert set(caught.value.errors) == {servers[1].endpoint, servers[2].endpoint}
    assert servers[0].jobs_in(tube) == 0
    with greenstalk.Client(("127.0.0.1", servers[0].port)) as client:
        stats = client.stats()
    assert (stats["cmd-put"], stats["cmd-delete"]) == (1, 1)  # it was written, then revoked


def test_producer_reconnects_after_a_node_restarts(beanstalkds: StartServers, tube: str) -> None:
    servers = beanstalkds(2)
    with Producer(nodes_of(servers, tube)) as producer:
        producer.delay(b"first", 5)
        servers[1].stop(kill=True)
        servers[1].start()
        ids = producer.delay(b"second", 5)
    assert len(wire.split_ids(ids)) == 2
    assert [s.jobs_in(tube) for s in servers] == [2, 2]  # the binlog kept the first one


def test_closed_producer_refuses_work(beanstalkds: StartServers, tube: str) -> None:
    producer = Producer(nodes_of(beanstalkds(2), tube))
    producer.close()
    with pytest.raises(DqError, match="closed"):
        producer.delay(b"x", 1)


def test_revoke_takes_the_ids_in_completion_order_as_go_lists_them(
    beanstalkds: StartServers, tube: str
) -> None:
    # Go joins ids in the order its parallel puts complete, not in node order.
    servers = beanstalkds(3)
    with Producer(nodes_of(servers, tube)) as producer:
        refs = wire.split_ids(producer.delay(b"x", 5))
        completion_order = ",".join(str(ref) for ref in [refs[2], refs[0], refs[1]])
        producer.revoke(completion_order)
    assert [s.jobs_in(tube) for s in servers] == [0, 0, 0]
