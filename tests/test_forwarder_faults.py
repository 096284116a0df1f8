"""The forwarder keeps what it knows through a failed call (issue #10, case 18): a due time it
learnt must not be forgotten because the forward call that was to act on it failed."""

from __future__ import annotations

import asyncio
import socket

import pytest
import redis
import redis.asyncio

from rq_sched import Client, ManualClock
from rq_sched.keys import QueueKeys
from rq_sched.worker.forwarder import Forwarder


def _dead_redis_url() -> str:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_a_due_time_survives_a_failed_forward_call(
    redis_url: str, r: redis.Redis, namespace: str, clock: ManualClock, client: Client
) -> None:
    keys = QueueKeys(namespace, "default")
    task = client.enqueue("t", 1, process_in=5)

    async def scenario() -> None:
        good = redis.asyncio.Redis.from_url(redis_url)
        dead = redis.asyncio.Redis.from_url(_dead_redis_url())
        forwarder = Forwarder(
            good, {"default": keys}, clock=clock, sweep_interval=3600, on_forwarded=lambda: None
        )
        try:
            assert await forwarder.tick() == pytest.approx(5)  # start-up sweep: due in 5 s
            clock.advance(5)
            forwarder.redis = dead  # Redis is unreachable at the moment the task is due
            with pytest.raises(redis.exceptions.ConnectionError):
                await forwarder.tick()
            forwarder.redis = good  # back: the next tick still knows the task is due now
            assert await forwarder.tick() == pytest.approx(3600 - 5)
        finally:
            await good.aclose()
            await dead.aclose()

    asyncio.run(scenario())
    assert r.lrange(keys.pending, 0, -1) == [task.id.encode()]
