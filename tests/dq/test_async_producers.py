"""The asyncio producers: AsyncProducer on beanstalkd and AsyncRedisProducer on the
AsyncClient, with the sync producers' ids, checks and errors."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis

from rq_sched import AsyncClient, Inspector, TaskState
from rq_sched.dq import (
    AsyncProducer,
    AsyncRedisProducer,
    DqConfigError,
    PutError,
    wire,
)
from tests.dq.conftest import StartServers, nodes_of


def test_async_producer_puts_the_wire_format_and_revokes(
    beanstalkds: StartServers, tube: str
) -> None:
    servers = beanstalkds(2)

    async def scenario() -> tuple[str, str]:
        async with AsyncProducer(nodes_of(servers, tube)) as producer:
            ids = await producer.delay(b"hello", 1.2)
            gone = await producer.at(b"bye", datetime.now(UTC) + timedelta(minutes=1))
            await producer.revoke(gone)
            return ids, gone

    before = time.time_ns()
    ids, _ = asyncio.run(scenario())
    refs = wire.split_ids(ids)
    assert [(r.endpoint, r.tube) for r in refs] == [(s.endpoint, tube) for s in servers]
    for server, ref in zip(servers, refs, strict=True):
        with server.client(tube) as client:
            stamp, _, body = client.peek(ref.job_id).body.partition(b"/")
            stats = client.stats_job(ref.job_id)
        assert body == b"hello"
        assert int(stamp) >= before + 1_200_000_000
        assert (stats["pri"], stats["ttr"], stats["delay"]) == (2, 5, 2)
    assert [s.jobs_in(tube) for s in servers] == [1, 1]  # the revoked one is gone


def test_async_producer_raises_the_sync_producers_errors(
    beanstalkds: StartServers, tube: str
) -> None:
    servers = beanstalkds(3)
    servers[1].stop(kill=True)
    servers[2].stop(kill=True)

    async def scenario() -> None:
        async with AsyncProducer(nodes_of(servers, tube), connect_timeout=0.5) as producer:
            with pytest.raises(DqConfigError, match="naive"):
                await producer.at(b"x", datetime.now() + timedelta(hours=1))
            with pytest.raises(PutError, match="only 1 of 3"):
                await producer.delay(b"x", 5)

    asyncio.run(scenario())
    assert servers[0].jobs_in(tube) == 0  # the lone copy was revoked


def test_async_redis_producer_schedules_and_revokes_on_the_async_client(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    async def scenario() -> tuple[str, str]:
        client = AsyncClient.from_url(redis_url, namespace=namespace)
        async with AsyncRedisProducer(
            client, type="dq:job", queue="jobs", close_client=True
        ) as producer:
            keep = await producer.delay(b"\x00body", timedelta(seconds=30))
            drop = await producer.at(b"later", datetime.now(UTC) + timedelta(minutes=5))
            await producer.revoke(drop)
            await producer.revoke(drop)  # already gone: skipped, as the sync producer does
            with pytest.raises(DqConfigError, match="in the past"):
                await producer.at(b"x", datetime.now(UTC) - timedelta(seconds=1))
            with pytest.raises(DqConfigError, match="redis/<queue>/<task id>"):
                await producer.revoke("127.0.0.1:11300/t/1")
            return keep, drop

    keep, drop = asyncio.run(scenario())
    inspector = Inspector(r, namespace=namespace)
    info = inspector.get_task("jobs", keep.removeprefix("redis/jobs/"))
    assert (info.type, info.state, info.payload) == ("dq:job", TaskState.SCHEDULED, b"\x00body")
    assert inspector.queue_info("jobs").scheduled == 1  # only the kept one
    assert drop.startswith("redis/jobs/")
