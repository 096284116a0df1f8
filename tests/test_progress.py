"""Progress: ``task.report_progress`` from async, thread and process handlers is shown by the
inspector (and so the CLI and dashboard) while the task runs, fenced by the lease token, and
cleared when the task settles.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
import redis
import redis.asyncio

from rq_sched import Client, Inspector, Router, Task, TaskState, ValidationError, ops
from rq_sched.cli.admin import _describe
from rq_sched.inspector.models import task_json
from rq_sched.keys import QueueKeys
from rq_sched.message import encode_progress
from tests import handlers
from tests.script_support import NOW_MS, TOKEN, Store, expire_lease
from tests.worker_support import running_server, wait_until

LIMITS = ops.ArchiveLimits()


@pytest.fixture
def store(r: redis.Redis, namespace: str) -> Store:
    return Store(r, QueueKeys(namespace, "q"))


def _report(store: Store, task_id: str, token: int, value: Any) -> Any:
    return store.run(
        ops.progress(store.keys, task_id, token, encode_progress(token, value, None, NOW_MS))
    )


def test_only_the_current_lease_holder_writes_progress(store: Store) -> None:
    store.seed_active("a")
    assert _report(store, "a", TOKEN + 1, 0.9) == -4  # NOT_ACTIVE: stale token
    assert store.r.hgetall(store.keys.progress) == {}
    assert _report(store, "a", TOKEN, 0.5) == 1
    assert store.r.hget(store.keys.progress, "a") == encode_progress(TOKEN, 0.5, None, NOW_MS)


def test_settling_clears_progress(store: Store) -> None:
    for task_id in ("done", "retried", "archived"):
        store.seed_active(task_id)
        _report(store, task_id, TOKEN, 1)
    store.run(ops.done(store.keys, [ops.Ack("done", TOKEN)], NOW_MS / 1000))
    store.run(ops.retry(store.keys, "retried", TOKEN, encoded=b"m", due_ms=0, now_s=NOW_MS / 1000))
    store.run(
        ops.archive_active(
            store.keys, "archived", TOKEN, encoded=b"m", unique=None, now_s=NOW_MS / 1000,
            limits=LIMITS, count_failure=True,
        )
    )  # fmt: skip
    assert store.r.hgetall(store.keys.progress) == {}


def test_an_earlier_runs_progress_is_not_shown(store: Store, inspector: Inspector) -> None:
    store.seed_active("a")
    stale = encode_progress(TOKEN - 1, 0.99, "from a run whose lease expired", NOW_MS)
    store.r.hset(store.keys.progress, "a", stale)
    assert inspector.get_task("q", "a").progress is None
    _report(store, "a", TOKEN, 0.1)
    shown = inspector.get_task("q", "a").progress
    assert shown is not None and shown.value == 0.1


def test_a_value_that_cannot_be_stored_is_refused() -> None:
    task = Task(type="t", payload=None, id="a", queue="q")
    with pytest.raises(ValidationError, match="progress value"):
        task.report_progress(object())
    with pytest.raises(ValidationError, match="progress message"):
        task.report_progress(1, message=5)  # type: ignore[arg-type]
    task.report_progress(0.5, "no worker attached: nothing to write, no error")


@pytest.mark.parametrize("kind", ["async", "thread", "process"])
def test_progress_is_visible_while_the_task_runs_and_cleared_after(
    kind: str, redis_url: str, r: redis.Redis, namespace: str
) -> None:
    router = Router()
    go = f"go:{uuid.uuid4().hex}"
    if kind == "process":
        router.add("p:report", handlers.report_then_wait, process=True)
    elif kind == "thread":
        router.add("p:report", handlers.report_then_wait)
    else:

        @router.task("p:report")
        async def report(task: Task) -> str:
            task.report_progress(0.25, "a quarter")
            task.report_progress({"done": 3, "of": 4}, "three of four")
            conn = redis.asyncio.Redis.from_url(redis_url)
            try:
                assert await conn.blpop([go], timeout=20) is not None
            finally:
                await conn.aclose()
            return "finished"

    client = Client(r, namespace=namespace)
    info = client.enqueue("p:report", {"url": redis_url, "go": go}, retention=60)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace):

        def latest() -> bool:
            progress = inspector.get_task("default", info.id).progress
            return progress is not None and progress.value == {"done": 3, "of": 4}

        wait_until(latest, timeout=15, what="the last progress report to show")
        running = inspector.get_task("default", info.id)
        assert running.state is TaskState.ACTIVE
        assert running.progress is not None
        assert running.progress.message == "three of four"
        assert 'progress: {"done": 3, "of": 4} - three of four' in _describe(running, time.time())
        assert task_json(running)["progress"]["value"] == {"done": 3, "of": 4}
        r.rpush(go, 1)
        assert client.wait_result("default", info.id, 15) == b"finished"
    done = inspector.get_task("default", info.id)
    assert done.progress is None
    assert r.hgetall(QueueKeys(namespace, "default").progress) == {}


def test_reports_from_a_thread_in_a_tight_loop_are_coalesced(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    router = Router()
    release = threading.Event()

    @router.task("p:many")
    def many(task: Task) -> None:
        for n in range(5000):
            task.report_progress(n)
        assert release.wait(20)

    client = Client(r, namespace=namespace)
    info = client.enqueue("p:many", retention=60)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace) as server:

        def last_shown() -> bool:
            progress = inspector.get_task("default", info.id).progress
            return progress is not None and progress.value == 4999

        wait_until(last_shown, timeout=15, what="the last of 5000 reports to show")
        assert server.processor is not None
        written = server.processor.progress.written
        release.set()
        client.wait_result("default", info.id, 15)
    print(f"5000 reports from a thread: {written} writes")
    assert written < 5000


def test_an_operator_archiving_a_recovered_task_clears_its_lost_runs_progress(
    store: Store,
) -> None:
    # The run reported progress, then its worker died: recover hands the task back to pending
    # with the record still there (not shown: its token is stale). Archived by an operator, the
    # task never runs again, so nothing else would ever remove that record.
    store.seed_active("a")
    _report(store, "a", TOKEN, 0.5)
    expire_lease(store, "a")
    store.run(ops.recover(store.keys))
    assert store.r.lrange(store.keys.pending, 0, -1) == [b"a"]
    store.run(ops.archive(store.keys, "a", unique=None, now_s=NOW_MS / 1000, limits=LIMITS))
    assert store.r.zscore(store.keys.archived, "a") is not None
    assert store.r.hgetall(store.keys.progress) == {}


def test_a_process_handler_reports_from_several_threads(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    # The child relays its reports over the pipe it shares with the worker: sends from several
    # threads at once must not interleave (a report larger than the pipe's atomic write would).
    router = Router()
    router.add("p:threads", handlers.report_from_threads, process=True)
    client = Client(r, namespace=namespace)
    info = client.enqueue("p:threads", None, retention=60, max_retry=0)
    with running_server(redis_url, router, namespace=namespace):
        assert client.wait_result("default", info.id, 60) == b"reported"
