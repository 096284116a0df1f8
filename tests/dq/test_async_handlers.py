"""Async handlers are awaited, never silently "done": the sync Consumer refuses them at
register time, a handler that returns an awaitable anyway is a failure, and the
AsyncConsumer runs them on the event loop."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable

import pytest
import redis

from rq_sched.dq import AsyncConsumer, DqConfigError, Job, Outcome
from tests.dq.conftest import MakeConsumer, StartServers, nodes_of, put_like_go


async def _async_handler(job: Job) -> None:
    await asyncio.sleep(0)


def test_the_sync_consumer_refuses_an_async_def_handler_at_register(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer
) -> None:
    consumer = consumers(nodes_of(beanstalkds(1), tube))
    with pytest.raises(DqConfigError, match="AsyncConsumer"):
        consumer.register(tube, _async_handler)  # type: ignore[arg-type]
    with pytest.raises(DqConfigError, match="AsyncConsumer"):
        consumers(nodes_of(beanstalkds(1), tube), handler=_async_handler)


def test_a_handler_that_returns_an_awaitable_is_a_failure_not_done(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer, r: redis.Redis
) -> None:
    servers = beanstalkds(1)
    target = time.time_ns()
    job_id = put_like_go(servers[0], tube, b"sneaky", target)

    def sneaky(job: Job) -> Awaitable[None]:  # a plain function that returns a coroutine
        return _async_handler(job)

    consumer = consumers(nodes_of(servers, tube), handler=sneaky, backoff=lambda n: 30)
    assert consumer.run_once() == [Outcome.RETRY]
    with servers[0].client(tube) as client:
        stats = client.stats_job(job_id)
    assert (stats["state"], stats["pri"]) == ("delayed", 3)  # kept, one failure counted
    key = hashlib.md5(b"%d/sneaky" % target).hexdigest()
    assert r.get(key) != b"rqsdq:done"


def test_the_async_consumer_awaits_its_handler_on_the_running_loop(
    beanstalkds: StartServers, tube: str, redis_url: str, r: redis.Redis
) -> None:
    servers = beanstalkds(2)
    target = time.time_ns()
    for server in servers:
        put_like_go(server, tube, b"awaited", target)
    seen: list[tuple[bytes, asyncio.AbstractEventLoop]] = []

    async def handler(job: Job) -> None:
        await asyncio.sleep(0.01)
        seen.append((job.body, asyncio.get_running_loop()))

    async def scenario() -> tuple[list[Outcome], asyncio.AbstractEventLoop]:
        async with AsyncConsumer(nodes_of(servers, tube), redis=redis_url) as consumer:
            consumer.register(tube, handler)
            return await consumer.run_once(), asyncio.get_running_loop()

    outcomes, loop = asyncio.run(scenario())
    assert sorted(o.value for o in outcomes) == ["done", "duplicate"]
    assert seen == [(b"awaited", loop)]
    assert r.get(hashlib.md5(b"%d/awaited" % target).hexdigest()) == b"rqsdq:done"
    assert all(s.jobs_in(tube) == 0 for s in servers)


def test_the_async_consumer_refuses_a_sync_handler(
    beanstalkds: StartServers, tube: str, redis_url: str
) -> None:
    def plain(job: Job) -> None:
        return None

    async def scenario() -> None:
        async with AsyncConsumer(nodes_of(beanstalkds(1), tube), redis=redis_url) as consumer:
            with pytest.raises(DqConfigError, match="async def"):
                consumer.register(tube, plain)  # type: ignore[arg-type]

    asyncio.run(scenario())
