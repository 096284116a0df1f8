"""Debounce and throttle on enqueue: the newest task wins a debounce window, the first one wins
a throttle window and the rest are reported dropped; bad input writes nothing."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from typing import Any

import pytest
import redis

from rq_sched import (
    AsyncClient,
    Client,
    Debounced,
    FlowLimits,
    Inspector,
    ManualClock,
    Router,
    Task,
    TaskIdConflictError,
    Throttled,
    ValidationError,
    scripts,
)
from rq_sched.clock import to_ms
from rq_sched.keys import QueueKeys
from rq_sched.message import TaskMessage, decode
from rq_sched.ops import Ack, dequeue, done, forward, parse_dequeue
from tests.worker_support import Recorder, running_server, texts, wait_until


def keys_of(namespace: str) -> QueueKeys:
    return QueueKeys(namespace, "default")


def stored(r: redis.Redis, keys: QueueKeys, task_id: str) -> TaskMessage:
    data = r.hget(keys.msg, task_id)
    assert isinstance(data, bytes)
    return decode(data, task_id=task_id)


def test_debounce_keeps_one_waiting_task_with_the_newest_message(
    client: Client, r: redis.Redis, namespace: str, clock: ManualClock
) -> None:
    keys = keys_of(namespace)
    first = client.debounce("reindex", {"n": 1}, key="user:42", window=timedelta(seconds=5))
    clock.advance(1)
    second = client.debounce("reindex", {"n": 2}, key="user:42", window=5, headers={"h": "v"})
    third = client.debounce("reindex", {"n": 3}, key="user:42", window=5)
    assert (first.replaced, second.replaced, third.replaced) == (False, True, True)
    assert first.id == second.id == third.id
    assert texts(r.zrange(keys.scheduled, 0, -1)) == [first.id]
    # Still due at the end of the first call's window, carrying the newest message.
    assert r.zscore(keys.scheduled, first.id) == to_ms(clock.now() - 1 + 5)
    assert stored(r, keys, first.id).payload == {"n": 3}
    assert r.hlen(keys.msg) == 1
    other = client.debounce("reindex", {"n": 9}, key="user:7", window=5)
    assert other.id != first.id and not other.replaced


def test_a_due_debounced_task_is_not_replaced_a_new_window_starts(
    client: Client, r: redis.Redis, namespace: str, clock: ManualClock
) -> None:
    keys = keys_of(namespace)
    first = client.debounce("reindex", 1, key="k", window=2)
    clock.advance(3)
    scripts.run(r, *forward(keys, to_ms(clock.now())))
    assert texts(r.lrange(keys.pending, 0, -1)) == [first.id]
    second = client.debounce("reindex", 2, key="k", window=2)
    assert second.id != first.id and not second.replaced
    assert stored(r, keys, first.id).payload == 1


def test_throttle_keeps_the_first_and_reports_the_dropped(
    client: Client, r: redis.Redis, namespace: str
) -> None:
    keys = keys_of(namespace)
    kept = client.throttle("digest", {"n": 1}, key="user:42", window=timedelta(minutes=10))
    dropped = [client.throttle("digest", {"n": n}, key="user:42", window=600) for n in (2, 3)]
    assert not kept.dropped and kept.id is not None
    assert [(d.dropped, d.id) for d in dropped] == [(True, kept.id), (True, kept.id)]
    assert texts(r.lrange(keys.pending, 0, -1)) == [kept.id]
    assert r.hlen(keys.msg) == 1
    assert not client.throttle("digest", {"n": 4}, key="user:7", window=600).dropped


def test_the_throttle_window_outlives_the_task_and_then_opens(
    client: Client, r: redis.Redis, namespace: str
) -> None:
    keys = keys_of(namespace)
    kept = client.throttle("digest", 1, key="k", window=0.3)
    [leased] = parse_dequeue(scripts.run(r, *dequeue(keys, 10_000, 1)))
    scripts.run(r, *done(keys, [Ack(leased.id, leased.token)], 0))
    assert client.throttle("digest", 2, key="k", window=0.3).dropped  # done, window still on
    wait_until(lambda: not r.exists(keys.throttle("k")), timeout=5, what="the window to end")
    again = client.throttle("digest", 3, key="k", window=0.3)
    assert not again.dropped and again.id != kept.id


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"key": ""}, "key must be"),
        ({"key": 42}, "key must be"),
        ({"key": "x" * 1001}, "key must be"),
        ({"window": 0}, "window"),
        ({"window": -1}, "window"),
        ({"window": math.nan}, "window"),
        ({"window": math.inf}, "window"),
        ({"window": 10**12}, "window"),
        ({"window": "5s"}, "window"),
        ({"unique": 60}, "does not take unique"),
    ],
)
@pytest.mark.parametrize("kind", ["debounce", "throttle"])
def test_bad_arguments_are_refused_and_nothing_is_written(
    client: Client, r: redis.Redis, namespace: str, kind: str, call: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {"key": "k", "window": 5, **call}
    with pytest.raises(ValidationError, match=message):
        getattr(client, kind)("t", 1, **arguments)
    assert not r.keys(f"{namespace}:*")


def test_debounce_refuses_its_own_delay(client: Client, r: redis.Redis, namespace: str) -> None:
    with pytest.raises(ValidationError, match="the window is the delay"):
        client.debounce("t", 1, key="k", window=5, process_in=10)
    assert not r.keys(f"{namespace}:*")


def test_a_worker_runs_the_debounced_task_once_with_the_newest_payload(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    seen = Recorder()
    router = Router()

    @router.task("reindex")
    async def reindex(task: Task) -> None:
        seen.add(task.payload)

    producer = Client(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace):
        ids = {producer.debounce("reindex", n, key="k", window=0.5).id for n in range(5)}
        assert seen.wait_for(1) == [4]
        wait_until(lambda: r.hlen(keys_of(namespace).msg) == 0, what="the task settled")
    assert len(ids) == 1 and len(seen) == 1


def test_the_async_client_debounces_throttles_and_sets_flow(redis_url: str, namespace: str) -> None:
    async def scenario() -> None:
        producer = AsyncClient.from_url(redis_url, namespace=namespace)
        try:
            first = await producer.debounce("t", 1, key="k", window=5)
            second = await producer.debounce("t", 2, key="k", window=5)
            assert second == Debounced(first.id, replaced=True)
            kept = await producer.throttle("t", 1, key="k", window=5)
            assert await producer.throttle("t", 2, key="k", window=5) == Throttled(kept.id, True)
            await producer.set_flow("default", FlowLimits(concurrency=3))
        finally:
            await producer.close()

    asyncio.run(scenario())
    assert Inspector.from_url(redis_url, namespace=namespace).flow("default").concurrency == 3


def test_debounce_and_throttle_refuse_the_id_of_a_held_task(
    client: Client, r: redis.Redis, namespace: str
) -> None:
    # A held task (waiting for its parents) owns its id: a debounce or throttle taking it would
    # leave the held task unable to be released (the same defect the #17 review found in enqueue).
    keys = keys_of(namespace)
    parent = client.enqueue("p", None)
    client.enqueue("c", None, task_id="held-one", depends_on=[parent.id])
    with pytest.raises(TaskIdConflictError):
        client.debounce("d", None, key="k", window=5, task_id="held-one")
    with pytest.raises(TaskIdConflictError):
        client.throttle("t", None, key="k", window=5, task_id="held-one")
    assert r.hexists(keys.msg, "held-one") == 0
    assert r.hexists(keys.held, "held-one") == 1
