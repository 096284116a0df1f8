"""Worker failure handling: retries with backoff, max_retry, SkipRetry, Retry(delay), timeouts,
deadlines, unknown types, corrupt messages, unique locks and handlers raising in every kind.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from rq_sched import (
    Client,
    Inspector,
    ManualClock,
    NewTask,
    Retry,
    Router,
    SkipRetry,
    Task,
    TaskState,
)
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.local_redis import process_alive
from rq_sched.models import encode_cancel
from rq_sched.worker.processor import CORRUPT_TYPE
from tests import handlers
from tests.worker_support import (
    Recorder,
    fast_backoff,
    queue_state,
    running_server,
    texts,
    wait_subscribed,
    wait_until,
)


def _archived(inspector: Inspector, task_id: str, queue: str = "default") -> None:
    wait_until(
        lambda: inspector.get_task(queue, task_id).state is TaskState.ARCHIVED,
        what=f"{task_id} archived",
    )


def test_failed_tasks_are_retried_with_the_route_backoff_until_they_succeed(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    attempts = Recorder()
    router = Router()

    @router.task("f:flaky", backoff=fast_backoff)
    async def flaky(task: Task) -> None:
        attempts.add(task.retry_count)
        if task.retry_count < 2:
            raise ConnectionError(f"attempt {task.retry_count} failed")

    client = Client(r, namespace=namespace)
    client.enqueue("f:flaky", None)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace):
        attempts.wait_for(3)
        wait_until(lambda: inspector.queue_info("default").processed == 1, what="processed")
    assert attempts.items == [0, 1, 2]
    info = inspector.queue_info("default")
    assert (info.processed, info.failed) == (1, 2)
    assert queue_state(r, namespace)["msg"] == 0


def test_max_retry_is_honoured_then_the_task_is_archived_with_error_and_traceback(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    attempts = Recorder()
    router = Router()

    @router.task("f:broken")
    def always_fails(task: Task) -> None:
        attempts.add(task.retry_count)
        raise ValueError("the input is broken")

    task = Client(r, namespace=namespace).enqueue("f:broken", None, max_retry=2)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace, backoff=fast_backoff):
        attempts.wait_for(3)
        _archived(inspector, task.id)
    assert attempts.items == [0, 1, 2]
    info = inspector.get_task("default", task.id)
    assert info.retry_count == 3
    assert info.last_error is not None
    assert info.last_error.startswith("ValueError: the input is broken\n")
    assert "in always_fails" in info.last_error  # the traceback is kept
    assert info.last_failed_at is not None
    assert inspector.queue_info("default").failed == 3


def test_skip_retry_archives_at_once(redis_url: str, r: redis.Redis, namespace: str) -> None:
    attempts = Recorder()
    router = Router()

    @router.task("f:skip")
    async def refuse(task: Task) -> None:
        attempts.add(task.id)
        raise SkipRetry("payload can never be handled")

    task = Client(r, namespace=namespace).enqueue("f:skip", None, max_retry=10)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace, backoff=fast_backoff):
        _archived(inspector, task.id)
    assert attempts.items == [task.id]
    info = inspector.get_task("default", task.id)
    assert info.last_error == "SkipRetry: payload can never be handled"
    assert info.retry_count == 1


def test_retry_with_a_delay_waits_in_the_retry_set_until_then(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    attempts = Recorder()
    router = Router()

    @router.task("f:later")
    async def later(task: Task) -> None:
        attempts.add(time.time())
        if task.retry_count == 0:
            raise Retry(timedelta(minutes=10), "not yet")

    task = Client(r, namespace=namespace).enqueue("f:later", None)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace, backoff=fast_backoff):
        (failed_at,) = attempts.wait_for(1)
        wait_until(
            lambda: inspector.get_task("default", task.id).state is TaskState.RETRY,
            what="the task in the retry set",
        )
        info = inspector.get_task("default", task.id)
        assert info.next_process_at is not None
        assert info.next_process_at.timestamp() == pytest.approx(failed_at + 600, abs=2)
        assert info.last_error == "Retry: not yet"
        inspector.run_task("default", task.id)  # an operator runs it now instead
        attempts.wait_for(2)


def test_retry_with_a_short_delay_runs_again_no_earlier_than_asked(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    attempts = Recorder()
    router = Router()

    @router.task("f:soon")
    async def soon(task: Task) -> None:
        attempts.add(time.time())
        if task.retry_count == 0:
            raise Retry(0.4)

    Client(r, namespace=namespace).enqueue("f:soon", None)
    with running_server(redis_url, router, namespace=namespace):
        first, second = attempts.wait_for(2)
    assert second - first >= 0.39


def test_async_handler_timeout_cancels_the_handler(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    outcome = Recorder()
    router = Router()

    @router.task("f:slow-async", timeout=0.3)
    async def slow(task: Task) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            outcome.add("cancelled")
            raise

    task = Client(r, namespace=namespace).enqueue("f:slow-async", None, max_retry=0)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace):
        _archived(inspector, task.id)
        assert outcome.wait_for(1) == ["cancelled"]
    error = inspector.get_task("default", task.id).last_error
    assert error is not None
    assert error.startswith("HandlerTimeoutError: timed out after 0.3s")


def test_process_handler_timeout_kills_the_child(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    router = Router()
    router.add("f:slow-process", handlers.proc_pid_then_sleep, process=True)
    log = f"{namespace}:pids"
    payload = {"url": redis_url, "log": log}
    # 3 s, not 1: the timeout also covers starting the child, which takes over a second on a
    # loaded 2-core machine, and the test needs the child to record its pid first.
    task = Client(r, namespace=namespace).enqueue(
        "f:slow-process", payload, timeout=3.0, max_retry=0
    )
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace):
        _archived(inspector, task.id)
    pid = int(r.lindex(log, 0) or 0)
    assert pid > 0
    assert not process_alive(pid), f"the handler's child process {pid} is still running"
    error = inspector.get_task("default", task.id).last_error
    assert error is not None
    assert error.startswith("HandlerTimeoutError: timed out after 3s; child killed")


def test_thread_handler_timeout_fails_the_task_and_tells_the_handler(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    observed = Recorder()
    router = Router()

    @router.task("f:slow-thread", timeout=0.3)
    def slow(task: Task) -> None:
        deadline = time.monotonic() + 10
        while not task.is_cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        observed.add(task.is_cancelled())

    task = Client(r, namespace=namespace).enqueue("f:slow-thread", None, max_retry=0)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace):
        _archived(inspector, task.id)
        assert observed.wait_for(1) == [True]
    error = inspector.get_task("default", task.id).last_error
    assert error is not None
    assert error.startswith("HandlerTimeoutError: timed out after 0.3s (the handler's thread")


def test_a_handler_running_past_the_deadline_is_archived_not_retried(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    attempts = Recorder()
    router = Router()

    @router.task("f:deadline")
    async def slow(task: Task) -> None:
        attempts.add(task.retry_count)
        await asyncio.sleep(60)

    deadline = datetime.now(UTC) + timedelta(seconds=0.5)
    task = Client(r, namespace=namespace).enqueue("f:deadline", None, deadline=deadline)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace, backoff=fast_backoff):
        _archived(inspector, task.id)
    assert attempts.items == [0]
    info = inspector.get_task("default", task.id)
    assert info.max_retry == 25
    assert info.last_error is not None
    assert info.last_error.startswith("HandlerTimeoutError")


def test_a_task_whose_deadline_passed_while_pending_is_archived_without_running(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    attempts = Recorder()
    router = Router()

    @router.task("f:late")
    async def late(task: Task) -> None:
        attempts.add(task.id)

    # Enqueued by a producer whose clock says it is a minute ago: the deadline has passed.
    past = ManualClock(time.time() - 60)
    deadline = datetime.fromtimestamp(past.now() + 1, UTC)
    task = Client(r, namespace=namespace, clock=past).enqueue("f:late", None, deadline=deadline)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace):
        _archived(inspector, task.id)
    assert attempts.items == []
    assert inspector.get_task("default", task.id).last_error == (
        "SkipRetry: deadline exceeded before the task could run"
    )


def test_unknown_task_type_is_archived_with_a_clear_error(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    router = Router()

    @router.task("known:one")
    async def known(task: Task) -> None: ...

    task = Client(r, namespace=namespace).enqueue("unknown:type", "x")
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace):
        _archived(inspector, task.id)
    info = inspector.get_task("default", task.id)
    assert info.payload == "x"
    assert info.last_error == (
        "SkipRetry: no handler registered for task type 'unknown:type' on this worker "
        "(registered: known:one)"
    )


def test_a_corrupt_message_is_archived_keeping_its_raw_bytes(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    keys = QueueKeys(namespace, "default")
    raw = b"\xc1 not msgpack"
    r.hset(keys.msg, "broken", raw)
    r.lpush(keys.pending, "broken")
    router = Router()
    router.add("any", handlers.push)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace):
        wait_until(lambda: r.zscore(keys.archived, "broken") is not None, what="archived")
    info = inspector.get_task("default", "broken")
    assert info.type == CORRUPT_TYPE
    assert info.payload == raw
    assert info.last_error is not None
    assert "not msgpack" in info.last_error


def test_unique_lock_is_released_when_the_task_is_done_or_archived(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    ran = Recorder()
    router = Router()

    @router.task("u:ok")
    async def ok(task: Task) -> None:
        ran.add(task.id)

    @router.task("u:refuse")
    async def refuse(task: Task) -> None:
        ran.add(task.id)
        raise SkipRetry("no")

    client = Client(r, namespace=namespace)
    first = client.enqueue("u:ok", "same", unique=3600)
    refused = client.enqueue("u:refuse", "same", unique=3600)
    assert len(list(r.scan_iter(f"{namespace}:*:unique:*"))) == 2
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace):
        ran.wait_for(2)
        _archived(inspector, refused.id)
        wait_until(lambda: inspector.queue_info("default").processed == 1, what="done")
        assert list(r.scan_iter(f"{namespace}:*:unique:*")) == []
        again = client.enqueue("u:ok", "same", unique=3600)  # not refused as a duplicate
        client.enqueue("u:refuse", "same", unique=3600)
        ran.wait_for(4)
    assert again.id != first.id


@pytest.mark.parametrize("kind", ["async", "thread", "process"])
def test_an_exception_raised_by_a_handler_is_recorded(
    kind: str, redis_url: str, r: redis.Redis, namespace: str
) -> None:
    router = Router()
    if kind == "async":

        async def on_loop(task: Task) -> None:
            raise ValueError(f"bad input in a coroutine: {task.payload!r}")

        router.add("f:raise", on_loop)
    elif kind == "thread":

        def in_thread(task: Task) -> None:
            raise ValueError(f"bad input in a thread: {task.payload!r}")

        router.add("f:raise", in_thread)
    else:
        router.add("f:raise", handlers.proc_raise, process=True)
    task = Client(r, namespace=namespace).enqueue("f:raise", "p", max_retry=0)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace):
        _archived(inspector, task.id)
    error = inspector.get_task("default", task.id).last_error
    assert error is not None
    where = {"async": "a coroutine", "thread": "a thread", "process": "a child process"}[kind]
    if kind == "process":
        assert error.startswith(f"ProcessHandlerError: ValueError: bad input in {where}: 'p'")
        assert "in proc_raise" in error  # the child's traceback travels back
    else:
        assert error.startswith(f"ValueError: bad input in {where}: 'p'")


def test_skip_retry_from_a_process_handler_archives_at_once(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    router = Router()
    router.add("f:skip", handlers.proc_skip, process=True)
    task = Client(r, namespace=namespace).enqueue("f:skip", None, max_retry=5)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace):
        _archived(inspector, task.id)
    info = inspector.get_task("default", task.id)
    assert (info.retry_count, info.last_error) == (1, "SkipRetry: refused by a child process")


def test_stored_messages_are_updated_not_duplicated_across_retries(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    router = Router()

    @router.task("f:twice")
    async def twice(task: Task) -> None:
        if task.retry_count == 0:
            raise RuntimeError("first attempt")

    keys = QueueKeys(namespace, "default")
    Client(r, namespace=namespace).enqueue("f:twice", None, task_id="t1", retention=60)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace, backoff=fast_backoff):
        wait_until(
            lambda: inspector.get_task("default", "t1").state is TaskState.COMPLETED,
            what="completed",
        )
    assert r.hkeys(keys.msg) == [b"t1"]
    info = inspector.get_task("default", "t1")
    assert info.retry_count == 1
    assert info.last_error is not None
    assert info.last_error.startswith("RuntimeError: first attempt")


@pytest.mark.parametrize("kind", ["async", "thread", "process"])
def test_cancelling_an_active_task_archives_it_as_cancelled_without_retry(
    kind: str, redis_url: str, r: redis.Redis, namespace: str
) -> None:
    events = Recorder()
    router = Router()

    async def on_loop(task: Task) -> None:
        events.add("started")
        try:
            await asyncio.sleep(600)
        except asyncio.CancelledError:
            events.add("cancelled")
            raise

    def in_thread(task: Task) -> None:
        events.add("started")
        deadline = time.monotonic() + 10
        while not task.is_cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        events.add("cancelled" if task.is_cancelled() else "not told")

    if kind == "process":
        router.add("c:t", handlers.proc_pid_then_sleep, process=True)
    else:
        router.add("c:t", on_loop if kind == "async" else in_thread)
    log = f"{namespace}:pids"
    payload = {"url": redis_url, "log": log}
    task = Client(r, namespace=namespace).enqueue("c:t", payload, max_retry=5)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace, backoff=fast_backoff):
        wait_subscribed(r, namespace)
        if kind == "process":
            wait_until(lambda: r.llen(log), what="the child's pid")
        else:
            events.wait_for(1)
        heard = r.publish(GlobalKeys(namespace).cancel_channel, encode_cancel("default", task.id))
        assert heard == 1
        _archived(inspector, task.id)
        if kind != "process":
            assert events.wait_for(2) == ["started", "cancelled"]
    info = inspector.get_task("default", task.id)
    assert info.last_error == "TaskCancelledError: cancelled while running"
    assert info.retry_count == 1
    assert inspector.queue_info("default").failed == 0  # cancelled, not failed
    if kind == "process":
        pid = int(r.lindex(log, 0) or 0)
        assert r.llen(log) == 1  # ran once, not retried
        assert not process_alive(pid), f"the cancelled task's child {pid} is still running"


def test_cancelling_through_the_inspector_reaches_the_server(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    started = Recorder()
    router = Router()

    @router.task("c:wait")
    async def wait(task: Task) -> None:
        started.add(task.id)
        await asyncio.sleep(600)

    task = Client(r, namespace=namespace).enqueue("c:wait", None)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace):
        wait_subscribed(r, namespace)
        started.wait_for(1)
        assert inspector.cancel_task("default", task.id) == 1
        _archived(inspector, task.id)
    assert started.items == [task.id]


def test_a_quick_process_handler_is_not_held_up_by_long_running_ones(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    # As many long-running children as asyncio's default executor has threads.
    long_running = min(32, (os.cpu_count() or 1) + 4)
    router = Router()
    router.add("p:long", handlers.proc_pid_then_sleep, process=True)
    router.add("p:quick", handlers.proc_fields, process=True)
    log = f"{namespace}:pids"
    client = Client(r, namespace=namespace)
    client.enqueue_many(
        NewTask(type="p:long", payload={"url": redis_url, "log": log}) for _ in range(long_running)
    )
    inspector = Inspector(r, namespace=namespace)
    slots = long_running + 1
    options: dict[str, Any] = {"processes": slots, "concurrency": slots, "shutdown_timeout": 0}
    with running_server(redis_url, router, namespace=namespace, **options):
        wait_until(lambda: r.llen(log) >= long_running, timeout=30, what="long children started")
        quick = client.enqueue("p:quick", b"q", timeout=3, max_retry=0, retention=60)
        wait_until(
            lambda: (
                inspector.get_task("default", quick.id).state
                in (TaskState.COMPLETED, TaskState.ARCHIVED)
            ),
            what="the quick task finished",
        )
        info = inspector.get_task("default", quick.id)
        assert info.state is TaskState.COMPLETED, info.last_error
    pids = [int(p) for p in texts(r.lrange(log, 0, -1))]
    alive = [p for p in pids if process_alive(p)]
    assert alive == [], "shutdown left handler child processes running"
    assert queue_state(r, namespace)["pending"] == long_running  # handed back
