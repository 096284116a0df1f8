"""Client and AsyncClient: every enqueue option, every refused input, batches, connections."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis

from rq_sched import (
    AsyncClient,
    Client,
    CorruptTaskError,
    DuplicateTaskError,
    EnqueueManyError,
    Inspector,
    ManualClock,
    NewTask,
    PayloadTooLargeError,
    RedisUnavailableError,
    TaskIdConflictError,
    TaskNotFoundError,
    TaskState,
    ValidationError,
    WriteRefusedError,
)
from rq_sched.clock import from_ms, to_ms
from rq_sched.keys import QueueKeys
from rq_sched.local_redis import RedisServer, free_port
from rq_sched.ops import ENQUEUE_BATCH_LIMIT
from rq_sched.options import new_task_id
from tests.polling import wait_until


def namespace_keys(r: redis.Redis, namespace: str) -> list[Any]:
    return list(r.scan_iter(match=f"{namespace}:*", count=1000))


def now(clock: ManualClock) -> datetime:
    return from_ms(to_ms(clock.now()))


# --- options ----------------------------------------------------------------------------------


def test_enqueue_now_returns_pending_info_and_stores_the_task(
    client: Client, inspector: Inspector, clock: ManualClock
) -> None:
    info = client.enqueue("email:send", {"to": "a@b.c"})
    assert (info.queue, info.type, info.state) == ("default", "email:send", TaskState.PENDING)
    assert info.process_at == now(clock)
    assert len(info.id) == 12
    stored = inspector.get_task("default", info.id)
    assert (stored.state, stored.payload, stored.retry_count) == (
        TaskState.PENDING,
        {"to": "a@b.c"},
        0,
    )
    assert stored.enqueued_at == now(clock)
    assert inspector.queue_info("default").pending == 1
    assert inspector.queues() == ["default"]


def test_generated_ids_are_distinct(client: Client) -> None:
    ids = {client.enqueue("t").id for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 12 and i.replace("-", "").replace("_", "").isalnum() for i in ids)


def test_generated_ids_never_start_with_a_dash() -> None:
    # One id in 64 started with "-", and `rq-sched task default -cAj...` read it as an option.
    firsts = {new_task_id()[0] for _ in range(20_000)}
    assert "-" not in firsts
    assert len(firsts) == 63  # every other base64url character still starts ids


def test_a_forked_child_does_not_reuse_the_parents_ids() -> None:
    new_task_id()  # the parent now holds a stock of ids
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next id and leave without running pytest's teardown
        os.write(write_end, new_task_id().encode())
        os._exit(0)
    os.close(write_end)
    child_id = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert len(child_id) == 12
    assert child_id not in {new_task_id() for _ in range(300)}


@pytest.mark.parametrize(
    "payload",
    [None, b"\x00\xffraw", "text", 42, -1.5, True, [1, "a", b"b"], {"k": {"n": [1, 2]}}, {1: "x"}],
)
def test_payload_round_trips_unchanged(client: Client, inspector: Inspector, payload: Any) -> None:
    info = client.enqueue("t", payload)
    assert inspector.get_task("default", info.id).payload == payload


@pytest.mark.parametrize("delay", [timedelta(seconds=90), 90, 90.0])
def test_process_in_schedules_the_task(
    client: Client, inspector: Inspector, clock: ManualClock, delay: timedelta | float
) -> None:
    info = client.enqueue("t", queue="q1", process_in=delay)
    due = now(clock) + timedelta(seconds=90)
    assert (info.state, info.process_at, info.next_process_at) == (TaskState.SCHEDULED, due, due)
    stored = inspector.get_task("q1", info.id)
    assert (stored.state, stored.next_process_at) == (TaskState.SCHEDULED, due)
    assert inspector.queue_info("q1").scheduled == 1


def test_process_at_with_any_timezone_schedules_at_that_instant(
    client: Client, inspector: Inspector, clock: ManualClock
) -> None:
    when = (now(clock) + timedelta(hours=2)).astimezone(timezone(timedelta(hours=-5)))
    info = client.enqueue("t", process_at=when)
    assert inspector.get_task("default", info.id).next_process_at == when


@pytest.mark.parametrize(
    "option",
    [
        {"process_in": 0},
        {"process_in": timedelta(0)},
        {"process_at": datetime(2000, 1, 1, tzinfo=UTC)},
    ],
)
def test_process_time_not_in_the_future_means_ready_now(
    client: Client, inspector: Inspector, option: dict[str, Any]
) -> None:
    info = client.enqueue("t", **option)
    assert info.state is TaskState.PENDING
    assert inspector.get_task("default", info.id).state is TaskState.PENDING


def test_every_task_option_is_stored(
    client: Client, inspector: Inspector, clock: ManualClock
) -> None:
    deadline = now(clock) + timedelta(hours=1)
    info = client.enqueue(
        "report",
        b"x",
        queue="reports",
        max_retry=3,
        timeout=timedelta(seconds=30),
        deadline=deadline,
        unique=60,
        task_id="report-2024",
        retention=timedelta(days=1),
        headers={"trace": "abc"},
    )
    assert info.id == "report-2024"
    stored = inspector.get_task("reports", "report-2024")
    assert (stored.max_retry, stored.timeout, stored.deadline) == (3, 30.0, deadline)
    assert (stored.retention, stored.unique, stored.headers) == (86400.0, True, {"trace": "abc"})
    # The inspector cannot tell when a pending task became ready; everything else agrees.
    assert replace(stored, process_at=info.process_at) == info


def test_defaults_are_stored(client: Client, inspector: Inspector) -> None:
    stored = inspector.get_task("default", client.enqueue("t").id)
    assert (stored.max_retry, stored.timeout, stored.deadline, stored.retention) == (
        25,
        None,
        None,
        None,
    )
    assert (stored.unique, stored.headers, stored.last_error) == (False, {}, None)


def test_unique_refuses_same_type_and_payload_while_locked(
    client: Client, inspector: Inspector
) -> None:
    first = client.enqueue("t", {"a": 1}, unique=60)
    with pytest.raises(DuplicateTaskError, match="already queued in 'default'"):
        client.enqueue("t", {"a": 1}, unique=60)
    client.enqueue("t", {"a": 2}, unique=60)
    client.enqueue("other", {"a": 1}, unique=60)
    client.enqueue("t", {"a": 1}, unique=60, queue="elsewhere")
    assert inspector.queue_info("default").pending == 3
    inspector.delete_task("default", first.id)
    client.enqueue("t", {"a": 1}, unique=60)


def test_task_id_of_a_live_task_is_a_conflict(
    client: Client, inspector: Inspector, clock: ManualClock
) -> None:
    client.enqueue("t", task_id="job-1", process_in=60)
    clock.advance(0.001)  # another call: the same id and message bytes would be a resend
    with pytest.raises(TaskIdConflictError, match="'job-1' is already used in queue 'default'"):
        client.enqueue("t", task_id="job-1")
    assert inspector.queue_info("default").scheduled == 1
    client.enqueue("t", task_id="job-1", queue="other-queue")


def test_task_id_of_an_archived_task_can_be_reused(client: Client, inspector: Inspector) -> None:
    client.enqueue("t", b"old", task_id="job-1")
    inspector.archive_task("default", "job-1")
    client.enqueue("t", b"new", task_id="job-1")
    stored = inspector.get_task("default", "job-1")
    assert (stored.state, stored.payload) == (TaskState.PENDING, b"new")
    assert inspector.queue_info("default").archived == 0


# --- refused input ----------------------------------------------------------------------------

NAIVE = datetime(2030, 1, 1)

BAD_INPUT: list[tuple[dict[str, Any], str]] = [
    ({"type": ""}, "task type must be a non-empty str"),
    ({"type": None}, "task type must be a non-empty str"),
    ({"type": "x" * 256}, "the limit is 255"),
    ({"queue": ""}, "queue must be a non-empty str"),
    ({"queue": "q" * 101}, "the limit is 100"),
    ({"queue": "a{b"}, "may not contain braces"),
    ({"queue": "a}b"}, "may not contain braces"),
    ({"queue": "a b"}, "may not contain braces, spaces"),
    ({"queue": "a\nb"}, "control characters"),
    ({"process_at": NAIVE}, "process_at is a naive datetime; pass an aware one"),
    ({"deadline": NAIVE}, "deadline is a naive datetime; pass an aware one"),
    ({"process_at": "tomorrow"}, "process_at must be a datetime"),
    ({"process_in": -1}, "process_in must be >= 0"),
    ({"process_in": timedelta(seconds=-1)}, "process_in must be >= 0"),
    ({"process_in": "5s"}, "process_in must be a timedelta or a number of seconds"),
    ({"process_in": 5, "process_at": datetime(2030, 1, 1, tzinfo=UTC)}, "not both"),
    ({"payload": object()}, "payload cannot be encoded with msgpack"),
    ({"payload": {"when": datetime(2030, 1, 1, tzinfo=UTC)}}, "convert dates and objects"),
    ({"payload": 2**64}, "payload cannot be encoded"),
    ({"max_retry": -1}, "max_retry must be an int >= 0"),
    ({"max_retry": True}, "max_retry must be an int >= 0"),
    ({"max_retry": 2.5}, "max_retry must be an int >= 0"),
    ({"timeout": 0}, "timeout must be at least 1 ms"),
    ({"timeout": -5}, "timeout must be at least 1 ms"),
    ({"unique": 0}, "unique must be at least 1 ms"),
    ({"retention": -1}, "retention must be >= 0"),
    ({"deadline": datetime(2000, 1, 1, tzinfo=UTC)}, "has already passed"),
    ({"task_id": ""}, "task_id must be a non-empty str"),
    ({"task_id": "x" * 201}, "at most 200 chars"),
    ({"task_id": 7}, "task_id must be a non-empty str"),
    ({"headers": {"a": 1}}, "headers must be a dict of str to str"),
    ({"headers": [("a", "b")]}, "headers must be a dict of str to str"),
    # Issue #10 case 15: values that used to reach Redis or raise raw errors.
    *[
        ({name: value}, f"{name} must be a finite number of seconds")
        for name in ("timeout", "unique", "retention", "process_in")
        for value in (float("inf"), float("nan"))
    ],
    ({"process_in": 1e300}, "process_in is longer than the limit"),
    ({"timeout": timedelta(days=999_999_999)}, "timeout is longer than the limit"),
    ({"retention": 0.9}, "retention is kept in whole seconds: pass 0 or at least 1"),
    ({"max_retry": 2**64}, "max_retry must be at most 2147483647"),
    ({"type": "a\ud800"}, r"task type 'a\\ud800' has a lone surrogate or control character"),
    ({"type": "a\x1b[2J"}, "has a lone surrogate or control character"),
    ({"task_id": "a\ud800"}, r"task_id 'a\\ud800' has a lone surrogate or control character"),
    ({"task_id": "a\nb"}, "has a lone surrogate or control character"),
    ({"task_id": "."}, "task_id may not be '.' or '..'"),
    ({"task_id": ".."}, "task_id may not be '.' or '..'"),
    ({"queue": "a\ud800"}, "control characters"),
    ({"queue": "."}, "queue name may not be '.' or '..'"),
    ({"queue": ".."}, "queue name may not be '.' or '..'"),
    ({"queue": "a/b"}, "may not contain '/'"),
    ({"headers": {"k": "\ud800"}}, "header 'k' has a lone surrogate in its value"),
    ({"headers": {"a\x1b[2J": "v"}}, "header name .* has a lone surrogate or control character"),
    ({"headers": {"": "v"}}, "a header name may not be empty"),
]


def _enqueue_args(bad: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    options = dict(bad)
    task_type = options.pop("type", "t")
    payload = options.pop("payload", None)
    return (task_type, payload), options


@pytest.mark.parametrize(("bad", "message"), BAD_INPUT)
def test_bad_input_is_refused_with_advice_and_writes_nothing(
    client: Client, r: redis.Redis, namespace: str, bad: dict[str, Any], message: str
) -> None:
    args, options = _enqueue_args(bad)
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        client.enqueue(*args, **options)
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        client.enqueue_many([NewTask(type="ok"), NewTask(type=args[0], payload=args[1], **options)])
    assert namespace_keys(r, namespace) == []


def test_payload_over_the_default_limit_is_refused(
    client: Client, r: redis.Redis, namespace: str
) -> None:
    client.enqueue("t", b"x" * (512 * 1024 - 100))
    with pytest.raises(PayloadTooLargeError, match=r"the limit is 524288 \(Client\(max_payload"):
        client.enqueue("t", b"x" * 512 * 1024)


def test_payload_limit_is_configurable(r: redis.Redis, namespace: str) -> None:
    small = Client(r, namespace=namespace, max_payload_bytes=200)
    small.enqueue("t", b"x" * 100)
    with pytest.raises(PayloadTooLargeError, match="Store large data elsewhere"):
        small.enqueue("t", b"x" * 200)
    assert Inspector(r, namespace=namespace).queue_info("default").pending == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"namespace": ""}, "namespace must be non-empty"),
        ({"namespace": "a{b}"}, "brace-free"),
        ({"max_payload_bytes": 0}, "max_payload_bytes must be > 0"),
    ],
)
def test_bad_client_settings_are_refused(
    r: redis.Redis, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Client(r, **options)


# --- enqueue_many -----------------------------------------------------------------------------


def test_enqueue_many_enqueues_every_kind_in_order(
    client: Client, inspector: Inspector, clock: ManualClock
) -> None:
    tasks = [
        NewTask(type="a", payload=1),
        NewTask(type="b", queue="other", process_in=30),
        NewTask(type="c", unique=60, payload="u"),
        NewTask(type="d", task_id="fixed"),
    ]
    infos = client.enqueue_many(tasks)
    assert [(i.type, i.queue, i.state) for i in infos] == [
        ("a", "default", TaskState.PENDING),
        ("b", "other", TaskState.SCHEDULED),
        ("c", "default", TaskState.PENDING),
        ("d", "default", TaskState.PENDING),
    ]
    assert infos[3].id == "fixed"
    assert inspector.get_task("other", infos[1].id).next_process_at == now(clock) + timedelta(
        seconds=30
    )
    assert inspector.queue_info("default").pending == 3
    assert inspector.queues() == ["default", "other"]


def test_enqueue_many_splits_large_batches_and_keeps_fifo(
    client: Client, r: redis.Redis, namespace: str
) -> None:
    count = ENQUEUE_BATCH_LIMIT * 2 + 7
    infos = client.enqueue_many(NewTask(type="t", payload=i) for i in range(count))
    popped: Any = r.rpop(QueueKeys(namespace, "default").pending, count)
    assert [raw.decode() for raw in popped] == [i.id for i in infos]


def test_enqueue_many_of_nothing_does_nothing(
    client: Client, r: redis.Redis, namespace: str
) -> None:
    assert client.enqueue_many([]) == []
    assert namespace_keys(r, namespace) == []


def test_enqueue_many_reports_each_refused_task_and_keeps_the_rest(
    client: Client, inspector: Inspector, clock: ManualClock
) -> None:
    client.enqueue("t", task_id="taken")
    client.enqueue("u", "same", unique=60)
    clock.advance(0.001)  # another call: the same id and message bytes would be a resend
    tasks = [
        NewTask(type="t", payload=1),
        NewTask(type="t", task_id="taken"),
        NewTask(type="u", payload="same", unique=60),
        NewTask(type="t", payload=2, queue="q2"),
    ]
    with pytest.raises(EnqueueManyError, match="2 of 4 tasks were not enqueued") as caught:
        client.enqueue_many(tasks)
    ok1, conflict, duplicate, ok2 = caught.value.results
    assert isinstance(conflict, TaskIdConflictError)
    assert isinstance(duplicate, DuplicateTaskError)
    assert not isinstance(ok1, Exception)
    assert not isinstance(ok2, Exception)
    assert inspector.get_task("default", ok1.id).payload == 1
    assert inspector.get_task("q2", ok2.id).payload == 2
    assert inspector.queue_info("default").pending == 3


def test_enqueue_many_refuses_items_that_are_not_new_tasks(
    client: Client, r: redis.Redis, namespace: str
) -> None:
    with pytest.raises(ValidationError, match="enqueue_many takes NewTask items"):
        client.enqueue_many([NewTask(type="t"), {"type": "t"}])  # type: ignore[list-item]
    assert namespace_keys(r, namespace) == []


# --- connections ------------------------------------------------------------------------------


def client_names(r: redis.Redis) -> list[str]:
    return [c.get("name", "") for c in r.client_list()]


def test_from_url_and_context_manager_close_the_connection(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    url = f"{redis_url}?client_name={namespace}"
    with Client.from_url(url, namespace=namespace) as producer:
        producer.enqueue("t")
        assert namespace in client_names(r)
    wait_until(lambda: namespace not in client_names(r))
    assert Inspector(r, namespace=namespace).queue_info("default").pending == 1


def test_close_releases_the_connection(redis_url: str, r: redis.Redis, namespace: str) -> None:
    producer = Client.from_url(f"{redis_url}?client_name={namespace}", namespace=namespace)
    producer.enqueue("t")
    producer.close()
    wait_until(lambda: namespace not in client_names(r))


@pytest.fixture
def stopped_server(tmp_path: Path) -> RedisServer:
    """A Redis that was running when the client connected and has since been stopped."""
    server = RedisServer(tmp_path / "redis").start()
    server.stop()
    return server


def test_enqueue_to_a_stopped_redis_raises_unavailable(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    producer = Client.from_url(server.url)
    try:
        producer.enqueue("t")
        server.stop()
        with pytest.raises(RedisUnavailableError, match=f"127.0.0.1:{server.port}.*rq-sched dev"):
            producer.enqueue("t")
        with pytest.raises(RedisUnavailableError):
            producer.enqueue_many([NewTask(type="t")])
    finally:
        producer.close()
        server.stop()


def test_nothing_listening_raises_unavailable() -> None:
    with (
        Client.from_url(f"redis://127.0.0.1:{free_port()}/0") as producer,
        pytest.raises(RedisUnavailableError, match="Is redis-server running"),
    ):
        producer.enqueue("t")


def test_async_client_to_a_stopped_redis_raises_unavailable(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()

    async def scenario() -> None:
        async with AsyncClient.from_url(server.url) as producer:
            await producer.enqueue("t")
            server.stop()
            with pytest.raises(RedisUnavailableError, match=str(server.port)):
                await producer.enqueue("t")

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


def test_redis_refusing_writes_is_an_rq_sched_error(fresh_redis: RedisServer) -> None:
    with Client.from_url(fresh_redis.url) as producer:
        producer.enqueue("t", queue="a")
        producer.enqueue("t", queue="b")
        producer.redis.config_set("maxmemory", 1)  # every write is now refused (OOM)
        with pytest.raises(WriteRefusedError, match=r"Redis refused to enqueue task .*maxmemory"):
            producer.enqueue("t", queue="a")
        tasks = [NewTask(type="t", queue="a"), NewTask(type="t", queue="b", unique=5)]
        with pytest.raises(EnqueueManyError, match="3 of 3 tasks") as many:
            producer.enqueue_many([*tasks, NewTask(type="t", queue="a")])
        assert all(isinstance(r, WriteRefusedError) for r in many.value.results)
        assert all("maxmemory" in str(r) for r in many.value.results)
        with pytest.raises(WriteRefusedError, match="Redis refused to enqueue 1 tasks"):
            producer.enqueue_many([NewTask(type="t", queue="new-queue")])
        producer.redis.config_set("maxmemory", 0)
        assert Inspector(producer.redis).queue_info("a").pending == 1


# --- inspector reads --------------------------------------------------------------------------


def test_get_task_of_unknown_id_is_not_found(inspector: Inspector) -> None:
    with pytest.raises(TaskNotFoundError, match="no task 'nope' in queue 'default'"):
        inspector.get_task("default", "nope")


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        (b"\xc1garbage", "not msgpack"),
        (b"\x01", "not a task array"),
        (b"\x93\x07\xa1t\xc0", "version 7 is not supported"),
        (b"\x93\x01\x05\xc0", "task type is not a string"),
    ],
)
def test_get_task_with_garbage_stored_is_corrupt(
    client: Client,
    inspector: Inspector,
    r: redis.Redis,
    namespace: str,
    stored: bytes,
    message: str,
) -> None:
    info = client.enqueue("t")
    r.hset(QueueKeys(namespace, "default").msg, info.id, stored)
    with pytest.raises(CorruptTaskError, match=message):
        inspector.get_task("default", info.id)


# --- async client -----------------------------------------------------------------------------


def test_async_client_has_the_same_surface(
    redis_url: str, namespace: str, inspector: Inspector, clock: ManualClock
) -> None:
    async def scenario() -> tuple[Any, ...]:
        async with AsyncClient.from_url(redis_url, namespace=namespace, clock=clock) as producer:
            one = await producer.enqueue("t", b"p", process_in=5, task_id="a1")
            with pytest.raises(TaskIdConflictError):
                await producer.enqueue("t", task_id="a1")
            with pytest.raises(ValidationError, match="naive"):
                await producer.enqueue("t", process_at=NAIVE)
            many = await producer.enqueue_many([NewTask(type="x"), NewTask(type="y", unique=9)])
            with pytest.raises(EnqueueManyError) as caught:
                await producer.enqueue_many([NewTask(type="y", unique=9), NewTask(type="z")])
            assert await producer.enqueue_many([]) == []
            return one, many, caught.value.results

    one, many, results = asyncio.run(scenario())
    assert (one.id, one.state) == ("a1", TaskState.SCHEDULED)
    assert [t.type for t in many] == ["x", "y"]
    assert isinstance(results[0], DuplicateTaskError)
    assert inspector.get_task("default", results[1].id).type == "z"
    info = inspector.queue_info("default")
    assert (info.pending, info.scheduled) == (3, 1)
