"""Worker server end to end: tasks enqueued now / in / at across weighted or strict-priority
queues run exactly once; async, thread and process handlers see the same Task; results kept.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from rq_sched import (
    Client,
    Inspector,
    NewTask,
    Router,
    Task,
    TaskInfo,
    TaskNotFoundError,
    TaskState,
)
from rq_sched.router import Next
from tests import handlers
from tests.worker_support import Recorder, queue_state, running_server, wait_until

QUEUES = {"critical": 6, "default": 3, "low": 1}
NO_SWEEPS: dict[str, Any] = {"forward_sweep_interval": 3600.0, "idle_timeout": 3600.0}
EMPTY = {k: 0 for k in ("msg", "pending", "lease", "scheduled", "retry", "archived", "completed")}


def test_tasks_enqueued_now_in_and_at_each_run_once_and_never_early(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    seen = Recorder()
    router = Router()

    @router.task("e2e:note")
    async def note(task: Task) -> None:
        seen.add((task.queue, task.payload, time.time()))

    client = Client(r, namespace=namespace)
    names = list(QUEUES)
    due: dict[int, float] = {}
    with running_server(redis_url, router, namespace=namespace, queues=QUEUES):
        for i in range(30):
            client.enqueue("e2e:note", i, queue=names[i % 3])
        for i in range(30, 36):
            delay = 0.2 + 0.05 * (i - 30)
            due[i] = time.time() + delay
            client.enqueue("e2e:note", i, queue=names[i % 3], process_in=delay)
        for i in range(36, 42):
            at = datetime.now(UTC) + timedelta(seconds=0.3)
            due[i] = at.timestamp()
            client.enqueue("e2e:note", i, queue=names[i % 3], process_at=at)
        seen.wait_for(42)
    items = seen.items
    assert len(items) == 42
    assert sorted((q, p) for q, p, _ in items) == sorted((names[i % 3], i) for i in range(42))
    for _, payload, ran_at in items:
        if payload in due:
            assert ran_at >= due[payload] - 0.002, f"task {payload} ran before it was due"
    for queue in QUEUES:
        assert queue_state(r, namespace, queue) == EMPTY


def _prefill(client: Client, counts: dict[str, int]) -> None:
    client.enqueue_many(
        NewTask(type="e2e:order", payload=i, queue=q) for q, n in counts.items() for i in range(n)
    )


def _order_router(seen: Recorder) -> Router:
    router = Router()

    @router.task("e2e:order")
    async def order(task: Task) -> None:
        seen.add((task.queue, task.payload))

    return router


def test_weighted_queues_are_served_roughly_in_proportion(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    _prefill(Client(r, namespace=namespace), {"critical": 150, "low": 150})
    seen = Recorder()
    options = {"queues": {"critical": 6, "low": 1}, "concurrency": 1, "batch_size": 1}
    with running_server(redis_url, _order_router(seen), namespace=namespace, **options):
        first = [q for q, _ in seen.wait_for(100)[:100]]
    counts = Counter(first)
    # Expected 6/7 = 86% from critical; 4 standard deviations either side still holds.
    assert 72 <= counts["critical"] <= 98, counts
    assert counts["low"] >= 2, "the light queue must not starve"


def test_strict_priority_empties_heavier_queues_first_in_fifo_order(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    counts = {"low": 10, "default": 10, "critical": 10}
    _prefill(Client(r, namespace=namespace), counts)
    seen = Recorder()
    options = {"queues": QUEUES, "strict_priority": True, "concurrency": 1, "batch_size": 4}
    with running_server(redis_url, _order_router(seen), namespace=namespace, **options):
        order = seen.wait_for(30)
    assert order == [(q, i) for q in ("critical", "default", "low") for i in range(10)]


def test_async_thread_and_process_handlers_see_the_same_task_fields(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    seen = Recorder()
    router = Router()

    @router.task("kind:async")
    async def on_loop(task: Task) -> None:
        seen.add(("async", threading.current_thread().name, _fields(task)))

    @router.task("kind:thread")
    def in_thread(task: Task) -> None:
        seen.add(("thread", threading.current_thread().name, _fields(task)))

    router.add("kind:process", handlers.proc_fields, process=True)
    client = Client(r, namespace=namespace)
    options = {
        "queue": "critical",
        "max_retry": 7,
        "headers": {"trace": "abc"},
        "retention": 60,
    }
    payload = b"\x00\xff raw"
    for kind in ("async", "thread", "process"):
        client.enqueue(f"kind:{kind}", payload, task_id=f"id-{kind}", **options)  # type: ignore[arg-type]
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace, queues=QUEUES):
        seen.wait_for(2)
        done = _wait_completed(inspector, "critical", "id-process")
    by_kind = {kind: (thread, fields) for kind, thread, fields in seen.items}
    child = json.loads(done.result or b"{}")
    assert child.pop("pid") != os.getpid()
    assert child.pop("payload_hex") == payload.hex()
    assert child.pop("payload_is_bytes") is True
    for kind, fields in (*((k, f) for k, (_, f) in by_kind.items()), ("process", child)):
        expected_payload = {"payload": payload} if kind != "process" else {}
        assert fields == {
            "type": f"kind:{kind}",
            "id": f"id-{kind}",
            "queue": "critical",
            "retry_count": 0,
            "max_retry": 7,
            "headers": {"trace": "abc"},
            **expected_payload,
        }, kind
    assert by_kind["thread"][0].startswith("rq-sched")  # the server's thread pool
    assert by_kind["async"][0].startswith("rq-sched-test-server")  # the event loop


def _fields(task: Task) -> dict[str, object]:
    return {
        "type": task.type,
        "payload": task.payload,
        "id": task.id,
        "queue": task.queue,
        "retry_count": task.retry_count,
        "max_retry": task.max_retry,
        "headers": task.headers,
    }


def _wait_completed(inspector: Inspector, queue: str, task_id: str) -> TaskInfo:
    def completed() -> TaskInfo | None:
        info = inspector.get_task(queue, task_id)
        return info if info.state is TaskState.COMPLETED else None

    return wait_until(completed, what=f"{task_id} completed")


def test_results_are_kept_with_retention_and_dropped_without(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    seen = Recorder()
    router = Router()

    @router.task("res:write")
    def write(task: Task) -> None:
        task.write_result(f"report {task.payload}")
        seen.add(task.id)

    @router.task("res:return")
    async def returned(task: Task) -> bytes:
        seen.add(task.id)
        return b"\x01returned"

    client = Client(r, namespace=namespace)
    client.enqueue("res:write", 1, task_id="kept", retention=timedelta(minutes=5))
    client.enqueue("res:return", 2, task_id="returned", retention=60)
    client.enqueue("res:write", 3, task_id="dropped")
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace):
        seen.wait_for(3)
        kept = _wait_completed(inspector, "default", "kept")
        returned_info = _wait_completed(inspector, "default", "returned")
    assert kept.result == b"report 1"
    assert kept.expires_at is not None
    remaining = kept.expires_at.timestamp() - time.time()
    assert 200 < remaining <= 300
    assert returned_info.result == b"\x01returned"
    with pytest.raises(TaskNotFoundError):
        inspector.get_task("default", "dropped")
    assert inspector.queue_info("default").processed == 3


def test_middleware_runs_around_handlers_in_order_and_can_fail_them(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    calls = Recorder()
    router = Router()

    @router.use
    async def outer(task: Task, call_next: Next) -> None:
        calls.add(f"router:before:{task.payload}")
        await call_next(task)
        calls.add(f"router:after:{task.payload}")

    async def from_config(task: Task, call_next: Next) -> None:
        if task.payload == "refuse":
            raise PermissionError("refused by middleware")
        calls.add(f"config:before:{task.payload}")
        await call_next(task)

    @router.task("mw:t")
    async def handler(task: Task) -> None:
        calls.add(f"handler:{task.payload}")

    client = Client(r, namespace=namespace)
    client.enqueue("mw:t", "ok")
    refused = client.enqueue("mw:t", "refuse", max_retry=0)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace, middleware=(from_config,)):
        calls.wait_for(4)
        wait_until(lambda: r.zcard(inspector.keys("default").archived), what="archived")
    assert calls.items[:4] == [
        "router:before:ok",
        "config:before:ok",
        "handler:ok",
        "router:after:ok",
    ]
    assert "router:before:refuse" in calls.items
    assert "handler:refuse" not in calls.items
    info = inspector.get_task("default", refused.id)
    assert info.state is TaskState.ARCHIVED
    assert info.last_error is not None
    assert info.last_error.startswith("PermissionError: refused by middleware")


@pytest.mark.parametrize("processes", [0, 2])
def test_processes_option_moves_sync_handlers_into_child_processes(
    processes: int, redis_url: str, r: redis.Redis, namespace: str
) -> None:
    router = Router()
    router.add("p:pid", handlers.pid_of)
    task = Client(r, namespace=namespace).enqueue("p:pid", None, retention=60)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace, processes=processes):
        info = _wait_completed(inspector, "default", task.id)
    ran_in = int(info.result or b"0")
    assert (ran_in == os.getpid()) is (processes == 0)


def test_a_paused_queue_is_skipped_until_unpaused(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    seen = Recorder()
    router = _order_router(seen)
    client = Client(r, namespace=namespace)
    inspector = Inspector(r, namespace=namespace)
    inspector.pause("held")
    held = client.enqueue("e2e:order", "held", queue="held")
    queues = {"held": 5, "open": 1}
    with running_server(redis_url, router, namespace=namespace, queues=queues, **NO_SWEEPS):
        client.enqueue("e2e:order", "open", queue="open")
        assert seen.wait_for(1) == [("open", "open")]
        assert inspector.get_task("held", held.id).state is TaskState.PENDING
        inspector.unpause("held")  # wakes the idle worker
        assert seen.wait_for(2)[1] == ("held", "held")


def test_concurrency_caps_handlers_running_at_once(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    running = 0
    peak = Recorder()
    router = Router()

    @router.task("c:t")
    async def work(task: Task) -> None:
        nonlocal running
        running += 1
        peak.add(running)
        await asyncio.sleep(0.02)
        running -= 1

    _ = Client(r, namespace=namespace).enqueue_many(NewTask(type="c:t") for _ in range(24))
    options: dict[str, Any] = {"concurrency": 3, "batch_size": 10}
    with running_server(redis_url, router, namespace=namespace, **options):
        counts = peak.wait_for(24)
    assert max(counts) == 3


def test_several_servers_share_the_queues_and_run_each_task_once(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    seen = Recorder()
    router = Router()

    @router.task("s:t")
    async def work(task: Task) -> None:
        await asyncio.sleep(0.001)
        seen.add((task.payload, threading.current_thread().name))

    client = Client(r, namespace=namespace)
    options: dict[str, Any] = {"queues": QUEUES, "concurrency": 5, "batch_size": 5}
    with (
        running_server(redis_url, router, namespace=namespace, **options),
        running_server(redis_url, router, namespace=namespace, **options),
        running_server(redis_url, router, namespace=namespace, **options),
    ):
        client.enqueue_many(
            NewTask(type="s:t", payload=i, queue=list(QUEUES)[i % 3]) for i in range(300)
        )
        seen.wait_for(300)
    payloads = sorted(p for p, _ in seen.items)
    assert payloads == list(range(300))  # each once, none twice
    assert len(seen.items) == 300
    assert len({thread for _, thread in seen.items}) >= 2, "one server did all the work"
