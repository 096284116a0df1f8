"""The Consumer with real beanstalkd and Redis: Go compatibility, dedup, repeats, stop."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import timedelta

import pytest
import redis

from rq_sched.dq import DqConfigError, Outcome, Producer, Repeat, Stop, wire
from tests.dq.conftest import (
    Calls,
    MakeConsumer,
    StartServers,
    nodes_of,
    put_like_go,
)
from tests.dq.go_emulation import GoConsumer
from tests.polling import wait_until


def test_a_job_written_by_a_go_producer_is_consumed_at_its_time(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer, r: redis.Redis
) -> None:
    servers = beanstalkds(2)
    target = time.time_ns() + 1_500_000_000  # dq truncates the delay to 1 s: ready 0.5 s early
    for server in servers:
        put_like_go(server, tube, b"payload", target)
    calls = Calls()
    consumers(nodes_of(servers, tube), handler=calls).start()
    calls.wait(1)
    wait_until(lambda: all(s.jobs_in(tube) == 0 for s in servers), what="both copies gone")
    assert len(calls) == 1
    job = calls.jobs[0]
    assert (job.body, job.at_ns, job.tube) == (b"payload", target, tube)
    assert calls.times[0] >= target  # never early
    key = hashlib.md5(b"%d/payload" % target).hexdigest()
    assert r.get(key) == b"rqsdq:done"
    assert 3_590_000 < r.pttl(key) <= wire.DEDUP_TTL_MS


def test_a_python_produced_job_runs_once_across_two_consumers(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer
) -> None:
    servers = beanstalkds(3)
    calls = Calls()
    first = consumers(nodes_of(servers, tube), handler=calls)
    second = consumers(nodes_of(servers, tube), handler=calls)
    first.start()
    second.start()
    with Producer(nodes_of(servers, tube)) as producer:
        producer.delay(b"once", 1)
    calls.wait(1)
    wait_until(lambda: all(s.jobs_in(tube) == 0 for s in servers), what="all copies gone")
    assert [j.body for j in calls.jobs] == [b"once"]
    outcomes = first.counts().get(Outcome.DONE, 0) + second.counts().get(Outcome.DONE, 0)
    duplicates = first.counts().get(Outcome.DUPLICATE, 0) + second.counts().get(
        Outcome.DUPLICATE, 0
    )
    assert (outcomes, duplicates) == (1, 2)


def test_a_key_held_by_a_go_consumer_makes_the_copy_a_duplicate(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer, r: redis.Redis
) -> None:
    servers = beanstalkds(1)
    target = time.time_ns()
    put_like_go(servers[0], tube, b"go-has-it", target)
    r.set(hashlib.md5(b"%d/go-has-it" % target).hexdigest(), "AbCdEfGhIjKlMnOp", px=3_600_500)
    calls = Calls()
    consumer = consumers(nodes_of(servers, tube), handler=calls)
    assert consumer.run_once() == [Outcome.DUPLICATE]
    assert len(calls) == 0
    assert servers[0].jobs_in(tube) == 0


def test_the_dedup_key_is_the_md5_of_the_whole_stored_body_as_in_every_go_queue(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer, r: redis.Redis
) -> None:
    servers = beanstalkds(2)
    body = f"same-{tube}".encode()
    target = time.time_ns()
    for server in servers:
        put_like_go(server, tube, body, target)
    go = GoConsumer(servers[0].port, tube, r, lambda task: None)
    assert go.step() == "ran"
    consumer = consumers(nodes_of(servers[1:], tube), handler=Calls())
    assert consumer.run_once() == [Outcome.DUPLICATE]  # Go's key is rq_sched's key
    assert r.exists(hashlib.md5(b"%d/%s" % (target, body)).hexdigest())
    assert not r.exists(hashlib.md5(body).hexdigest())
    go.close()


def test_there_is_no_option_to_key_dedup_on_the_raw_body(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer
) -> None:
    # No go-queue version keyed on the raw body; such keys ran every job twice next to Go.
    with pytest.raises(TypeError, match="dedup_on"):
        consumers(nodes_of(beanstalkds(1), tube), handler=Calls(), dedup_on="body")


def test_a_job_arriving_before_its_time_is_released_until_then(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer
) -> None:
    servers = beanstalkds(1)
    job_id = put_like_go(servers[0], tube, b"x", time.time_ns() + 5_000_000_000)
    with servers[0].client(tube) as client:
        client.kick_job(job_id)  # make it ready now, as clock skew or truncation would
    calls = Calls()
    consumer = consumers(nodes_of(servers, tube), handler=calls)
    assert consumer.run_once() == [Outcome.EARLY]
    with servers[0].client(tube) as client:
        stats = client.stats_job(job_id)
    assert (stats["state"], stats["delay"], stats["pri"]) == ("delayed", 5, 2)
    assert len(calls) == 0


def test_repeat_every_runs_one_copy_again_and_again_until_stop(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer
) -> None:
    servers = beanstalkds(2)
    calls = Calls(result=lambda n: Stop() if n == 3 else None)
    consumer = consumers(nodes_of(servers, tube))
    consumer.register(tube, calls, repeat_every=timedelta(seconds=1))
    consumer.start()
    with Producer(nodes_of(servers, tube)) as producer:
        producer.delay(b"tick", 0)
    calls.wait(3)
    wait_until(lambda: all(s.jobs_in(tube) == 0 for s in servers), what="job finished")
    assert len(calls) == 3
    gaps = [b - a for a, b in zip(calls.times, calls.times[1:], strict=False)]
    assert all(gap >= 900_000_000 for gap in gaps), gaps
    counts = consumer.counts()
    assert (counts[Outcome.REPEAT], counts[Outcome.DONE]) == (2, 1)


def test_a_handler_returning_repeat_gets_its_job_again_after_the_delay(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer
) -> None:
    servers = beanstalkds(2)
    calls = Calls(result=lambda n: Repeat(timedelta(seconds=1)) if n < 2 else None)
    consumers(nodes_of(servers, tube), handler=calls).start()
    with Producer(nodes_of(servers, tube)) as producer:
        producer.delay(b"again", 0)
    calls.wait(2)
    wait_until(lambda: all(s.jobs_in(tube) == 0 for s in servers), what="job finished")
    assert [j.body for j in calls.jobs] == [b"again", b"again"]


def test_each_tube_goes_to_its_registered_handler(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer
) -> None:
    servers = beanstalkds(2)
    emails, reports = Calls(), Calls()
    consumer = consumers(nodes_of(servers, tube))
    consumer.register(f"{tube}-emails", emails)
    consumer.register(f"{tube}-reports", reports, concurrency=2)
    consumer.start()
    with (
        Producer(nodes_of(servers, f"{tube}-emails")) as mail,
        Producer(nodes_of(servers, f"{tube}-reports")) as report,
    ):
        mail.delay(b"welcome", 0)
        report.delay(b"daily", 0)
    emails.wait(1)
    reports.wait(1)
    assert ([j.body for j in emails.jobs], [j.body for j in reports.jobs]) == (
        [b"welcome"],
        [b"daily"],
    )


def test_a_slow_handler_keeps_its_job_past_the_ttr(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer
) -> None:
    servers = beanstalkds(1)
    put_like_go(servers[0], tube, b"slow", time.time_ns(), ttr=1)
    calls = Calls(result=lambda n: time.sleep(2.5))
    consumer = consumers(nodes_of(servers, tube), handler=calls, touch_interval=0.3)
    assert consumer.run_once() == [Outcome.DONE]
    with servers[0].client(tube) as client:
        stats = client.stats()
    assert (stats["job-timeouts"], stats["cmd-touch"] > 3, len(calls)) == (0, True, 1)


def test_stop_waits_for_the_running_handler(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer
) -> None:
    servers = beanstalkds(1)
    release = threading.Event()
    calls = Calls(result=lambda n: release.wait(10))
    consumer = consumers(nodes_of(servers, tube), handler=calls)
    consumer.start()
    put_like_go(servers[0], tube, b"busy", time.time_ns())
    calls.wait(1)
    stopped: list[bool] = []
    stopper = threading.Thread(target=lambda: stopped.append(consumer.stop(timeout=10)))
    stopper.start()
    stopper.join(0.3)
    assert stopper.is_alive()  # still waiting for the handler
    release.set()
    stopper.join(10)
    assert stopped == [True]
    assert servers[0].jobs_in(tube) == 0


def test_registration_mistakes_are_clear_errors(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer
) -> None:
    consumer = consumers(nodes_of(beanstalkds(1), tube))
    with pytest.raises(DqConfigError, match="register a handler"):
        consumer.start()
    consumer.register(tube, Calls())
    with pytest.raises(DqConfigError, match="already has a handler"):
        consumer.register(tube, Calls())
    with pytest.raises(DqConfigError, match="tube"):
        consumer.register("bad tube", Calls())
    consumer.start()
    with pytest.raises(DqConfigError, match="before start"):
        consumer.register(f"{tube}-2", Calls())


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 0, True, "5s"])
def test_a_duration_option_that_is_not_a_positive_finite_number_is_refused(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer, bad: object
) -> None:
    nodes = nodes_of(beanstalkds(1), tube)
    with pytest.raises(DqConfigError, match="lease"):
        consumers(nodes, lease=bad)
