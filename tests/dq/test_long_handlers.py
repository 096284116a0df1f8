"""Long handlers: the job stays reserved past its TTR while the handler runs, and an optional
per-tube timeout ends the wait (cancelling an async handler) and retries the job."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from rq_sched.dq import AsyncConsumer, DqConfigError, Job, Outcome
from tests.dq.conftest import MakeConsumer, StartServers, nodes_of, put_like_go
from tests.polling import wait_until


def test_a_handler_past_the_ttr_is_not_handed_to_a_second_consumer(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer
) -> None:
    servers = beanstalkds(1)
    put_like_go(servers[0], tube, b"long", time.time_ns(), ttr=1)
    finish = threading.Event()
    runs: list[bytes] = []

    def slow(job: Job) -> None:
        runs.append(job.body)
        finish.wait(10)

    first = consumers(nodes_of(servers, tube), handler=slow, touch_interval=0.2)
    second = consumers(nodes_of(servers, tube), handler=slow, touch_interval=0.2)
    first.start()
    wait_until(lambda: len(runs) == 1, what="the first run")
    second.start()

    def touches() -> int:
        with servers[0].client(tube) as client:
            return int(client.stats()["cmd-touch"])

    wait_until(lambda: touches() >= 8, what="1.6 s of touches, past the 1 s TTR")
    finish.set()
    wait_until(lambda: servers[0].jobs_in(tube) == 0, what="the job done")
    with servers[0].client(tube) as client:
        assert client.stats()["job-timeouts"] == 0
    assert runs == [b"long"]


def test_a_sync_handler_past_its_timeout_has_its_job_retried(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer
) -> None:
    servers = beanstalkds(1)
    job_id = put_like_go(servers[0], tube, b"stuck", time.time_ns())
    release = threading.Event()
    consumer = consumers(nodes_of(servers, tube), backoff=lambda n: 30)

    def stuck(job: Job) -> None:
        release.wait(10)

    consumer.register(tube, stuck, timeout=0.3)
    consumer.start()
    wait_until(lambda: consumer.counts().get(Outcome.RETRY) == 1, what="the timeout")
    with servers[0].client(tube) as client:
        stats = client.stats_job(job_id)
    assert (stats["state"], stats["pri"]) == ("delayed", 3)  # one failure counted
    release.set()  # the thread could not be stopped; let it end


def test_an_async_handler_past_its_timeout_is_cancelled_and_retried(
    beanstalkds: StartServers, tube: str, redis_url: str
) -> None:
    servers = beanstalkds(1)
    job_id = put_like_go(servers[0], tube, b"stuck", time.time_ns())
    cancelled: list[bool] = []

    async def slow(job: Job) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def scenario() -> list[Outcome]:
        async with AsyncConsumer(
            nodes_of(servers, tube), redis=redis_url, backoff=lambda n: 30
        ) as consumer:
            consumer.register(tube, slow, timeout=0.3)
            return await consumer.run_once()

    assert asyncio.run(scenario()) == [Outcome.RETRY]
    assert cancelled == [True]
    with servers[0].client(tube) as client:
        assert client.stats_job(job_id)["pri"] == 3


def test_a_timeout_must_be_positive(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer
) -> None:
    consumer = consumers(nodes_of(beanstalkds(1), tube))
    with pytest.raises(DqConfigError, match="timeout"):
        consumer.register(tube, lambda job: None, timeout=0)
