"""Concurrent enqueues from one asyncio process are coalesced into pipelines (issue #15), and
each call still gets its own answer."""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio

from rq_sched import AsyncClient, Client
from rq_sched.errors import RedisUnavailableError, TaskIdConflictError
from rq_sched.keys import QueueKeys
from rq_sched.local_redis import RedisServer


def test_concurrent_enqueues_go_out_together_in_call_order(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    async def main() -> AsyncClient:
        async with AsyncClient.from_url(redis_url, namespace=namespace) as client:
            await client.enqueue("c:warm", None, task_id="warm")  # registers the queue
            infos = await asyncio.gather(
                *(client.enqueue("c:x", n, task_id=f"t{n:03}") for n in range(300))
            )
            assert [info.id for info in infos] == [f"t{n:03}" for n in range(300)]
            return client

    client = asyncio.run(main())
    assert client._calls.coalesced == 300
    assert client._calls.pipelines == 1
    keys = QueueKeys(namespace, "default")
    # LPUSH in, RPOP out: the list read from the right is the order of the calls.
    order = list(reversed(r.lrange(keys.pending, 0, -1)))
    assert order == [b"warm", *(f"t{n:03}".encode() for n in range(300))]
    assert r.hlen(keys.msg) == 301


def test_each_call_in_a_pipeline_gets_its_own_error(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    async def main() -> list[object]:
        async with AsyncClient.from_url(redis_url, namespace=namespace) as client:
            await client.enqueue("c:x", "first", task_id="taken")
            calls = [client.enqueue("c:x", n, task_id=f"ok{n}") for n in range(5)]
            calls.insert(2, client.enqueue("c:x", "second", task_id="taken"))
            return await asyncio.gather(*calls, return_exceptions=True)

    outcomes = asyncio.run(main())
    assert isinstance(outcomes[2], TaskIdConflictError)
    others = [outcome for n, outcome in enumerate(outcomes) if n != 2]
    assert [getattr(info, "id", info) for info in others] == [f"ok{n}" for n in range(5)]
    keys = QueueKeys(namespace, "default")
    assert r.hlen(keys.msg) == 6


def test_a_dead_server_fails_every_call_in_the_pipeline_and_loses_nothing_after(
    fresh_redis: RedisServer, namespace: str
) -> None:
    async def main() -> None:
        async with AsyncClient.from_url(fresh_redis.url, namespace=namespace) as client:
            await client.enqueue("c:x", None, task_id="before")
            fresh_redis.stop(kill=True)
            outcomes = await asyncio.gather(
                *(client.enqueue("c:x", n, task_id=f"down{n}") for n in range(10)),
                return_exceptions=True,
            )
            assert all(isinstance(o, RedisUnavailableError) for o in outcomes), outcomes
            fresh_redis.start()
            infos = await asyncio.gather(
                *(client.enqueue("c:x", n, task_id=f"up{n}") for n in range(10))
            )
            assert [info.id for info in infos] == [f"up{n}" for n in range(10)]

    asyncio.run(main())
    after = redis.Redis.from_url(fresh_redis.url)
    keys = QueueKeys(namespace, "default")
    assert sorted(after.hkeys(keys.msg)) == sorted(
        [b"before", *(f"up{n}".encode() for n in range(10))]
    )


def test_a_client_works_on_a_new_event_loop(redis_url: str, r: redis.Redis, namespace: str) -> None:
    client = AsyncClient.from_url(redis_url, namespace=namespace)

    async def once(n: int) -> None:
        await asyncio.gather(*(client.enqueue("c:x", None, task_id=f"r{n}-{m}") for m in range(3)))
        # The pool's connections belong to this loop; the next asyncio.run is a new one.
        assert isinstance(client.redis, redis.asyncio.Redis)
        await client.redis.connection_pool.disconnect()

    asyncio.run(once(0))
    asyncio.run(once(1))
    assert r.hlen(QueueKeys(namespace, "default").msg) == 6


def test_enqueues_survive_script_flush_and_killed_connections(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    # The short write-then-read path reloads scripts on NOSCRIPT and sends once more on a fresh
    # connection when a pooled one was closed by the server (both clients).
    keys = QueueKeys(namespace, "default")
    sync_client = Client.from_url(redis_url, namespace=namespace)
    sync_client.enqueue("c:x", None, task_id="s0")

    async def main() -> None:
        async with AsyncClient.from_url(redis_url, namespace=namespace) as client:
            await asyncio.gather(*(client.enqueue("c:x", n, task_id=f"a0-{n}") for n in range(3)))
            for round_ in (1, 2):
                r.script_flush()
                killed = r.client_kill_filter(_type="normal", skipme=True)
                assert killed >= 1
                sync_client.enqueue("c:x", None, task_id=f"s{round_}")
                r.client_kill_filter(_type="normal", skipme=True)
                await asyncio.gather(
                    *(client.enqueue("c:x", n, task_id=f"a{round_}-{n}") for n in range(3))
                )
                await client.enqueue("c:x", None, task_id=f"alone{round_}")

    asyncio.run(main())
    sync_client.close()
    stored = sorted(k.decode() for k in r.hkeys(keys.msg) if isinstance(k, bytes))
    expected = [f"s{n}" for n in range(3)] + [f"a{n}-{m}" for n in range(3) for m in range(3)]
    assert stored == sorted([*expected, "alone1", "alone2"])
    assert r.llen(keys.pending) == len(stored)
