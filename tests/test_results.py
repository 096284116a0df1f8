"""Waiting for results: ``wait_result`` returns a completed task's result, raises a failed or
cancelled task's error, times out cleanly, and never misses a completion that happens while it
starts waiting (the settling scripts announce a final state only to registered waiters).
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
import redis

from rq_sched import (
    AsyncClient,
    Client,
    Inspector,
    Router,
    Task,
    TaskFailedError,
    TaskNotFoundError,
    ValidationError,
    WaitTimeoutError,
    ops,
)
from rq_sched.connection import connect
from rq_sched.keys import QueueKeys
from rq_sched.message import TaskMessage, encode_result
from rq_sched.models import result_text
from rq_sched.results import unpack_result
from tests.script_support import NOW_MS, TOKEN, Store, enc
from tests.worker_support import running_server

LIMITS = ops.ArchiveLimits()


@pytest.fixture
def store(r: redis.Redis, namespace: str) -> Store:
    return Store(r, QueueKeys(namespace, "q"))


def _complete(store: Store, task_id: str, result: bytes = b"", keep: bool = True) -> None:
    ack = ops.Ack(task_id, TOKEN, keep_until_ms=NOW_MS + 60_000 if keep else 0, result=result)
    assert store.run(ops.done(store.keys, [ack], NOW_MS / 1000)) == [1]


def _archive(store: Store, task_id: str, error: str) -> None:
    message = TaskMessage(type="t", payload=b"p", enqueued_at=NOW_MS).failed(error, NOW_MS)
    call = ops.archive_active(
        store.keys, task_id, TOKEN, encoded=message.encode(), unique=None, now_s=NOW_MS / 1000,
        limits=LIMITS, count_failure=True,
    )  # fmt: skip
    assert store.run(call) == 1


def _in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def main() -> None:
        try:
            out.append(("ok", fn()))
        except BaseException as exc:
            out.append(("error", exc))

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    return thread, out


def _wait_registered(store: Store, task_id: str) -> None:
    deadline = time.monotonic() + 5
    while store.r.hget(store.keys.waiters, task_id) is None:
        assert time.monotonic() < deadline, "the waiter never registered"
        time.sleep(0.002)


# -- the scripts' side -----------------------------------------------------------------------


def test_done_publishes_only_for_a_registered_waiter_and_consumes_the_registration(
    store: Store,
) -> None:
    pubsub = store.r.pubsub()
    pubsub.subscribe(store.keys.final_channel("a"), store.keys.final_channel("b"))
    for task_id in ("a", "b"):
        store.seed_active(task_id)
    store.r.hincrby(store.keys.waiters, "a", 1)
    _complete(store, "a")
    _complete(store, "b")
    got: list[tuple[Any, Any, Any]] = []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and len(got) < 3:  # 2 subscribe replies + 1 message
        message = pubsub.get_message(timeout=0.2)
        if message is not None:
            got.append((message["type"], message["channel"], message["data"]))
    pubsub.close()
    messages = [g for g in got if g[0] == "message"]
    assert messages == [("message", store.keys.final_channel("a").encode(), b"completed")]
    assert store.r.hgetall(store.keys.waiters) == {}


def test_every_final_transition_announces_its_outcome(store: Store) -> None:
    store.seed_active("done")
    store.seed_active("failed")
    store.seed_pending("archived", "deleted")
    for task_id in ("done", "failed", "archived", "deleted"):
        store.r.hincrby(store.keys.waiters, task_id, 1)
    pubsub = store.r.pubsub()
    pubsub.psubscribe(store.keys.final_prefix + "*")
    _complete(store, "done", keep=False)
    _archive(store, "failed", "ValueError: bad")
    store.run(ops.archive(store.keys, "archived", unique=None, now_s=NOW_MS / 1000, limits=LIMITS))
    assert store.run(ops.delete(store.keys, "deleted", None)) == 1
    told: dict[str, Any] = {}
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and len(told) < 4:
        message = pubsub.get_message(timeout=0.2)
        if message is not None and message["type"] == "pmessage":
            told[message["channel"].decode().rpartition(":")[2]] = message["data"]
    pubsub.close()
    assert told == {
        "done": b"completed",
        "failed": b"archived",
        "archived": b"archived",
        "deleted": b"deleted",
    }
    assert store.r.hgetall(store.keys.waiters) == {}


# -- the waiter's side -----------------------------------------------------------------------


def test_a_completed_task_returns_its_result_at_once_and_leaves_no_registration(
    store: Store, client: Client
) -> None:
    store.seed_active("a")
    _complete(store, "a", b"\x00raw bytes")
    assert client.wait_result("q", "a", 1) == b"\x00raw bytes"
    assert store.r.hgetall(store.keys.waiters) == {}


def test_a_completed_task_without_a_result_returns_none(store: Store, client: Client) -> None:
    store.seed_active("a")
    _complete(store, "a")
    assert client.wait_result("q", "a", 1) is None


def test_an_archived_task_raises_its_error_text(store: Store, client: Client) -> None:
    store.seed_active("a")
    _archive(store, "a", "ValueError: no such user\nTraceback ...")
    with pytest.raises(TaskFailedError, match="failed: ValueError: no such user") as caught:
        client.wait_result("q", "a", 1)
    assert caught.value.error == "ValueError: no such user\nTraceback ..."
    assert caught.value.cancelled is False
    assert (caught.value.queue, caught.value.task_id) == ("q", "a")


def test_a_cancelled_task_raises_as_cancelled(store: Store, client: Client) -> None:
    store.seed_active("a")
    _archive(store, "a", "TaskCancelledError: cancelled while running")
    with pytest.raises(TaskFailedError, match="was cancelled") as caught:
        client.wait_result("q", "a", 1)
    assert caught.value.cancelled is True


def test_an_unknown_task_is_not_found_with_advice(client: Client) -> None:
    with pytest.raises(TaskNotFoundError, match="retention="):
        client.wait_result("q", "nope", 1)


def test_bad_arguments_are_refused(client: Client) -> None:
    with pytest.raises(ValidationError, match="timeout"):
        client.wait_result("q", "a", -1)
    with pytest.raises(ValidationError, match="task id"):
        client.wait_result("q", "", 1)


def test_a_timeout_raises_and_withdraws_the_registration(store: Store, client: Client) -> None:
    store.seed_active("a")
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError, match=r"did not finish within 0\.2s"):
        client.wait_result("q", "a", 0.2)
    assert 0.2 <= time.monotonic() - started < 1.0
    assert store.r.hgetall(store.keys.waiters) == {}


def test_a_waiter_wakes_when_the_task_completes(store: Store, client: Client) -> None:
    store.seed_active("a")
    thread, out = _in_thread(lambda: client.wait_result("q", "a", 5))
    _wait_registered(store, "a")
    _complete(store, "a", b"late")
    thread.join(5)
    assert out == [("ok", b"late")]


def test_two_waiters_of_one_task_both_wake_and_one_leaving_keeps_the_other(
    store: Store, client: Client, r: redis.Redis, namespace: str
) -> None:
    store.seed_active("a")
    other = Client(r, namespace=namespace)
    with pytest.raises(WaitTimeoutError):
        other.wait_result("q", "a", 0.05)  # comes and goes
    first, out1 = _in_thread(lambda: client.wait_result("q", "a", 5))
    second, out2 = _in_thread(lambda: other.wait_result("q", "a", 5))
    deadline = time.monotonic() + 5
    while store.r.hget(store.keys.waiters, "a") != b"2":
        assert time.monotonic() < deadline
        time.sleep(0.002)
    _complete(store, "a", b"both")
    first.join(5)
    second.join(5)
    assert out1 == out2 == [("ok", b"both")]


def test_a_waiter_on_a_task_deleted_meanwhile_is_told_so(store: Store, client: Client) -> None:
    store.seed_pending("a")
    thread, out = _in_thread(lambda: client.wait_result("q", "a", 5))
    _wait_registered(store, "a")
    store.run(ops.delete(store.keys, "a", None))
    thread.join(5)
    assert out[0][0] == "error"
    assert isinstance(out[0][1], TaskNotFoundError)
    assert "deleted while it was waited for" in str(out[0][1])


def test_no_completion_is_missed_while_waiters_start(
    store: Store, r: redis.Redis, namespace: str
) -> None:
    """Completions racing the waiter's start: each lands before its look or is published to
    it; a missed one would show as a timeout."""
    clients = [Client(r, namespace=namespace) for _ in range(2)]
    for n in range(150):
        task_id = f"race{n}"
        store.r.hset(store.keys.msg, task_id, enc(task_id))
        store.seed_active(task_id)
        thread, out = _in_thread(lambda t=task_id, c=clients[n % 2]: c.wait_result("q", t, 3))
        time.sleep((n % 5) * 0.0004)  # completions land at different points of the start
        _complete(store, task_id, b"r")
        thread.join(5)
        assert out == [("ok", b"r")], (n, out)
    assert store.r.hgetall(store.keys.waiters) == {}


def test_async_waiter_returns_the_result_of_a_real_worker_within_milliseconds(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    router = Router()
    release = threading.Event()
    finished: list[float] = []

    @router.task("res:value")
    def value(task: Task) -> dict[str, Any]:
        assert release.wait(10)
        finished.append(time.perf_counter())
        return {"n": task.payload, "items": [1, 2]}

    @router.task("res:fail")
    async def fail(task: Task) -> None:
        raise LookupError("no row 7")

    client = Client(r, namespace=namespace)
    ok = client.enqueue("res:value", 3, retention=60)
    bad = client.enqueue("res:fail", max_retry=0, retention=60)

    async def wait_both() -> tuple[Any, BaseException | None, float]:
        async with AsyncClient.from_url(redis_url, namespace=namespace) as waiter:
            task = asyncio.ensure_future(
                waiter.wait_result("default", ok.id, 10, decode=unpack_result)
            )
            await asyncio.sleep(0)
            while r.hget(QueueKeys(namespace, "default").waiters, ok.id) is None:
                await asyncio.sleep(0.002)
            release.set()
            result = await task
            woke = time.perf_counter()
            try:
                await waiter.wait_result("default", bad.id, 10)
                failure = None
            except TaskFailedError as exc:
                failure = exc
            return result, failure, woke

    with running_server(redis_url, router, namespace=namespace):
        result, failure, woke = asyncio.run(wait_both())
    assert result == {"n": 3, "items": [1, 2]}
    assert isinstance(failure, TaskFailedError)
    assert "LookupError: no row 7" in failure.error
    latency = woke - finished[0]
    print(f"wait_result woke {latency * 1000:.1f} ms after the handler returned")
    assert latency < 0.25
    info = Inspector(r, namespace=namespace).get_task("default", ok.id)
    assert unpack_result(info.result or b"") == {"n": 3, "items": [1, 2]}


def test_wait_result_works_on_a_cluster(cluster: Any, namespace: str) -> None:
    redis_client = connect(cluster.url, cluster=True)
    try:
        client = Client(redis_client, namespace=namespace)
        keys = QueueKeys(namespace, "q")
        store = Store(redis_client, keys)  # type: ignore[arg-type]
        store.seed_active("a")
        thread, out = _in_thread(lambda: client.wait_result("q", "a", 5))
        _wait_registered(store, "a")
        _complete(store, "a", b"clustered")
        thread.join(5)
        assert out == [("ok", b"clustered")]
        assert client.wait_result("q", "a", timedelta(seconds=1)) == b"clustered"
    finally:
        redis_client.close()


def test_results_read_as_text_whatever_the_handler_returned() -> None:
    assert result_text(encode_result("plain text")) == "plain text"
    assert result_text(encode_result(b'{"a": 1}')) == '{\n  "a": 1\n}'
    assert (
        result_text(encode_result({"n": 3, "ok": True})) == 'msgpack: {\n  "n": 3,\n  "ok": true\n}'
    )
    assert result_text(encode_result([1, 2])) == "msgpack: [\n  1,\n  2\n]"
    assert result_text(b"\xff\xfe\x00").startswith("base64:")
