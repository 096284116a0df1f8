"""Hostile inputs at the public API: each case must fail with a clear ValidationError before
anything is written to Redis (regressions found by a review that played the hostile user)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import pytest
import redis
import redis.asyncio

from rq_sched import AsyncClient, Client, Inspector, Router, Scheduler, Server
from rq_sched.dq.redis_producer import RedisProducer
from rq_sched.errors import DqConfigError, ValidationError
from rq_sched.worker.config import ServerConfig


class _OddTz(tzinfo):
    def dst(self, dt: datetime | None) -> None:
        return None

    def tzname(self, dt: datetime | None) -> str:
        return "odd"


class _RaisingTz(_OddTz):
    def utcoffset(self, dt: datetime | None) -> timedelta:
        raise RuntimeError("tz database unavailable")


class _OutOfRangeTz(_OddTz):
    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=30)


class _TextTz(_OddTz):
    def utcoffset(self, dt: datetime | None) -> Any:
        return "+01:00"


def _written(r: redis.Redis, namespace: str) -> list[bytes]:
    return sorted(r.scan_iter(match=f"{namespace}:*"))


FAR_FUTURE = datetime.max.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "options",
    [
        {"process_at": FAR_FUTURE},
        {"deadline": FAR_FUTURE},
        {"process_at": datetime(2030, 1, 1, tzinfo=_RaisingTz())},
        {"process_at": datetime(2030, 1, 1, tzinfo=_OutOfRangeTz())},
        {"deadline": datetime(2030, 1, 1, tzinfo=_TextTz())},
        {"timeout": 10**400},
        {"process_in": 10**400},
        {"unique": -(10**400)},
        {"timeout": 1e-300},
        {"unique": 1e-300},
        {"unique": timedelta(microseconds=1)},
    ],
    ids=[
        "process_at-year-9999",
        "deadline-year-9999",
        "tzinfo-raises",
        "tzinfo-offset-out-of-range",
        "tzinfo-returns-text",
        "timeout-10e400",
        "process_in-10e400",
        "unique-minus-10e400",
        "timeout-below-a-millisecond",
        "unique-below-a-millisecond",
        "unique-one-microsecond",
    ],
)
def test_enqueue_refuses_before_writing(
    client: Client, r: redis.Redis, namespace: str, options: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        client.enqueue("t", **options)
    assert _written(r, namespace) == []


@pytest.mark.parametrize("size", [True, "512", float("nan"), 0, -1])
def test_client_refuses_bad_max_payload_bytes(r: redis.Redis, size: Any) -> None:
    with pytest.raises(ValidationError, match="max_payload_bytes"):
        Client(r, max_payload_bytes=size)


TASK_ACTIONS = ["get_task", "delete_task", "run_task", "archive_task", "cancel_task"]


@pytest.mark.parametrize(
    "task_id", ["\ud800", None, 5, ""], ids=["surrogate", "none", "int", "empty"]
)
@pytest.mark.parametrize("method", TASK_ACTIONS)
def test_inspector_refuses_unusable_task_ids(
    client: Client, inspector: Inspector, r: redis.Redis, method: str, task_id: Any
) -> None:
    client.enqueue("t", task_id="kept")
    before = _dump(r, inspector.namespace)
    with pytest.raises(ValidationError, match="task id"):
        getattr(inspector, method)("default", task_id)
    assert _dump(r, inspector.namespace) == before


@pytest.mark.parametrize("task_id", ["\ud800", None, 5])
def test_inspector_search_and_selection_refuse_unusable_ids(
    client: Client, inspector: Inspector, task_id: Any
) -> None:
    client.enqueue("t", task_id="kept")
    with pytest.raises(ValidationError, match="task id"):
        inspector.find_task(task_id)
    with pytest.raises(ValidationError, match="task id"):
        inspector.act_on("default", ["kept", task_id], "delete")
    assert inspector.get_task("default", "kept").id == "kept"
    with pytest.raises(ValidationError, match="entry id"):
        inspector.run_entry_now(task_id)


@pytest.mark.parametrize(
    ("method", "args", "options"),
    [
        ("list_tasks", ("default", "pending"), {"size": 1.5}),
        ("list_tasks", ("default", "pending"), {"size": "5"}),
        ("list_tasks", ("default", "pending"), {"page": True}),
        ("history", ("default",), {"days": 2.5}),
        ("history", ("default",), {"days": "3"}),
        ("bulk", ("default", "archived", "run"), {"limit": "2"}),
        ("bulk", ("default", "archived", "run"), {"limit": 1.5}),
    ],
)
def test_inspector_refuses_non_int_counts(
    client: Client,
    inspector: Inspector,
    method: str,
    args: tuple[str, ...],
    options: dict[str, Any],
) -> None:
    client.enqueue("t")
    with pytest.raises(ValidationError, match=next(iter(options))):
        getattr(inspector, method)(*args, **options)


def _dump(r: redis.Redis, namespace: str) -> dict[bytes, bytes | None]:
    return {key: r.dump(key) for key in _written(r, namespace)}


@pytest.mark.parametrize("delay", [10**400, -(10**400), 2**64])
def test_dq_redis_producer_refuses_huge_int_delays(
    client: Client, r: redis.Redis, namespace: str, delay: int
) -> None:
    producer = RedisProducer(client, type="dq")
    with pytest.raises(DqConfigError, match="delay"):
        producer.delay(b"job", delay)
    assert _written(r, namespace) == []


@pytest.mark.parametrize(
    "options", [{"backoff": "exponential"}, {"backoff": 5}, {"process": "yes"}, {"process": 1}]
)
def test_router_refuses_bad_handler_options(options: dict[str, Any]) -> None:
    router = Router()
    with pytest.raises(ValidationError, match=next(iter(options))):
        router.task("t", **options)(_handler)
    assert "t" not in router.routes


@pytest.mark.parametrize("name", ["lease_duration", "recover_interval", "heartbeat_interval"])
def test_server_config_refuses_durations_below_a_millisecond(name: str) -> None:
    # 1e-300 s became a 0 ms lease: a PX 0 that Redis refuses inside the dequeue script.
    with pytest.raises(ValidationError, match=f"{name} must be at least 1 ms"):
        options: dict[str, Any] = {name: 1e-300}
        ServerConfig(**options)


def _handler(task: object) -> None:
    return None


@pytest.mark.parametrize("clock", ["x", 5, object()])
def test_components_refuse_a_clock_without_now(r: redis.Redis, clock: object) -> None:
    # Client(clock="x") used to be accepted and fail at the first enqueue, deep in a call.
    for make in (
        lambda: Client(r, clock=clock),  # type: ignore[arg-type]
        lambda: AsyncClient(redis.asyncio.Redis(), clock=clock),  # type: ignore[arg-type]
        lambda: Inspector(r, clock=clock),  # type: ignore[arg-type]
        lambda: Scheduler(r, clock=clock),  # type: ignore[arg-type]
        lambda: Server(redis.asyncio.Redis(socket_timeout=5), clock=clock),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValidationError, match="clock must have a now"):
            make()
