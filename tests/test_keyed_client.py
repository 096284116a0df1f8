"""Keyed tasks through the public API: ``enqueue(key=...)`` on every producer, validation before
anything is written, and the Inspector showing keyed tasks as pending (counts, pages, single
tasks) and acting on them (delete, archive, bulk, run again)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from rq_sched import AsyncClient, Client, Inspector, NewTask, ValidationError
from rq_sched.keys import QueueKeys
from rq_sched.models import TaskState


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "non-empty str"),
        (42, "non-empty str"),
        ("x" * 257, "the limit is 256"),
        ("tenant\n1", "control character"),
        ("bad\ud800", "lone surrogate"),
    ],
)
def test_bad_keys_are_refused_and_nothing_is_written(
    client: Client, r: redis.Redis, namespace: str, key: Any, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        client.enqueue("t", None, key=key)
    with pytest.raises(ValidationError, match=message):
        client.enqueue_many([NewTask(type="t"), NewTask(type="t", key=key)])
    assert not list(r.scan_iter(match=f"{namespace}:*"))


def test_a_key_is_refused_with_depends_on_or_group(client: Client) -> None:
    parent = client.enqueue("t", None)
    with pytest.raises(ValidationError, match="depends_on= or group="):
        client.enqueue("t", None, key="k", depends_on=[parent.id])
    with pytest.raises(ValidationError, match="depends_on= or group="):
        client.enqueue("t", None, key="k", group="g")


def test_keyed_tasks_count_and_list_as_pending(client: Client, inspector: Inspector) -> None:
    client.enqueue("t", "plain", task_id="p0")
    client.enqueue_many(
        [NewTask(type="t", task_id=f"k{i}", key=f"tenant:{i % 2}") for i in range(4)]
    )
    info = inspector.queue_info("default")
    assert info.pending == 5
    page = inspector.list_tasks("default", "pending", page=1, size=3)
    assert page.total == 5
    assert page.tasks[0].id == "p0"
    second = inspector.list_tasks("default", "pending", page=2, size=3)
    listed = {t.id for t in page.tasks} | {t.id for t in second.tasks}
    assert listed == {"p0", "k0", "k1", "k2", "k3"}
    task = inspector.get_task("default", "k3")
    assert (task.state, task.key) == (TaskState.PENDING, "tenant:1")
    by_type = inspector.list_tasks("default", "pending", page=1, size=10, task_type="t")
    assert by_type.total == 5


def test_inspector_actions_on_keyed_pending_tasks(
    client: Client, inspector: Inspector, r: redis.Redis, namespace: str
) -> None:
    for i in range(4):
        client.enqueue("t", i, task_id=f"k{i}", key="tenant")
    inspector.delete_task("default", "k0")
    inspector.archive_task("default", "k1")
    assert inspector.queue_info("default").pending == 2
    inspector.run_task("default", "k1")  # archived -> pending again, under its key
    assert inspector.queue_info("default").pending == 3
    result = inspector.bulk("default", "pending", "archive")
    assert result.done == 3
    assert inspector.queue_info("default").pending == 0
    kready, kring, _, kstate = QueueKeys(namespace, "default").keyed
    assert not r.zcard(kready) and not r.zcard(kring)
    assert not [f for f in r.hkeys(kstate) if f not in (b"seq", b"v", b"u")]


def test_async_client_enqueues_keyed_tasks(
    redis_url: str, namespace: str, inspector: Inspector
) -> None:
    async def scenario() -> None:
        conn = redis.asyncio.Redis.from_url(redis_url)
        async with AsyncClient(conn, namespace=namespace) as producer:
            await producer.enqueue("t", 1, task_id="a", key="tenant:1")
            await producer.enqueue_many([NewTask(type="t", task_id="b", key="tenant:2")])
            with pytest.raises(ValidationError, match="non-empty"):
                await producer.enqueue("t", 1, key="")

    asyncio.run(scenario())
    assert inspector.get_task("default", "a").key == "tenant:1"
    assert inspector.flow_keys("default").total == 2
