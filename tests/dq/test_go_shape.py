"""Go's shape for Go users: ``consume(handler)`` blocks like go-queue's ``Consume`` and hands
the handler the raw body bytes of the configured tube's jobs."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import redis

from rq_sched.dq import AsyncConsumer, DqConfigError
from tests.dq.conftest import MakeConsumer, StartServers, nodes_of, put_like_go
from tests.polling import wait_until


def test_consume_blocks_and_gives_the_handler_the_body_until_stop(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer
) -> None:
    servers = beanstalkds(2)
    bodies: list[bytes] = []
    got = threading.Event()

    def handler(body: bytes) -> None:
        bodies.append(body)
        got.set()

    consumer = consumers(nodes_of(servers, tube))
    thread = threading.Thread(target=consumer.consume, args=(handler,))
    thread.start()
    target = time.time_ns()
    for server in servers:
        put_like_go(server, tube, b"go-shaped", target)
    assert got.wait(10)
    wait_until(lambda: all(s.jobs_in(tube) == 0 for s in servers), what="both copies gone")
    assert thread.is_alive()  # consume blocks, as Go's Consume does
    assert consumer.stop(timeout=10)
    thread.join(10)
    assert not thread.is_alive()
    assert bodies == [b"go-shaped"]


def test_consume_refuses_an_async_handler(
    beanstalkds: StartServers, tube: str, consumers: MakeConsumer
) -> None:
    async def handler(body: bytes) -> None:
        return None

    consumer = consumers(nodes_of(beanstalkds(1), tube))
    with pytest.raises(DqConfigError, match="AsyncConsumer"):
        consumer.consume(handler)  # type: ignore[arg-type]


def test_async_consume_awaits_the_handler_until_stop(
    beanstalkds: StartServers, tube: str, redis_url: str, r: redis.Redis
) -> None:
    servers = beanstalkds(2)
    target = time.time_ns()
    for server in servers:
        put_like_go(server, tube, b"async-go-shaped", target)

    async def scenario() -> list[bytes]:
        bodies: list[bytes] = []
        got = asyncio.Event()

        async def handler(body: bytes) -> None:
            bodies.append(body)
            got.set()

        consumer = AsyncConsumer(nodes_of(servers, tube), redis=redis_url)
        task = asyncio.create_task(consumer.consume(handler))
        await asyncio.wait_for(got.wait(), 10)
        assert not task.done()
        await consumer.stop()
        await asyncio.wait_for(task, 10)
        return bodies

    assert asyncio.run(scenario()) == [b"async-go-shaped"]
