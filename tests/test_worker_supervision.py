"""The worker survives what it reads and what breaks inside it: a poison message is archived as
corrupt and the worker goes on; a background loop that raises is logged and restarted; one that
keeps failing turns the server unhealthy and makes it exit with an error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgpack
import pytest
import redis

from rq_sched import Client, Inspector, Router, Server, Task, TaskState
from rq_sched.cli import main
from rq_sched.cli.worker import EXIT_UNHEALTHY
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.models import ServerInfo
from rq_sched.worker.component import Component
from rq_sched.worker.processor import CORRUPT_TYPE
from rq_sched.worker.recoverer import Recoverer
from rq_sched.worker.supervisor import ServerUnhealthyError, retry_pause
from tests.worker_support import FAST, Recorder, queue_state, running_server, wait_until


def _poison(r: redis.Redis, keys: QueueKeys, task_id: str, index: int, value: Any) -> bytes:
    """Rewrite a stored message with ``value`` in field ``index``; returns the new bytes."""
    stored = r.hget(keys.msg, task_id)
    assert isinstance(stored, bytes)
    fields = msgpack.unpackb(stored, raw=False)
    fields += [None] * (13 - len(fields))
    fields[index] = value
    raw = bytes(msgpack.packb(fields, use_bin_type=True))
    r.hset(keys.msg, task_id, raw)
    return raw


@pytest.mark.parametrize(
    ("index", "value"),
    [(7, "soon"), (4, "25"), (10, ["not", "a", "map"])],
    ids=["string-deadline", "string-max-retry", "list-headers"],
)
def test_a_poison_message_is_archived_as_corrupt_and_the_tasks_behind_it_still_run(
    redis_url: str, r: redis.Redis, namespace: str, index: int, value: Any
) -> None:
    keys = QueueKeys(namespace, "default")
    client = Client(r, namespace=namespace)
    poisoned = client.enqueue("p:run", b"first", unique=3600)
    raw = _poison(r, keys, poisoned.id, index, value)
    behind = [client.enqueue("p:run", f"next {i}".encode()).id for i in range(3)]
    ran = Recorder()
    router = Router()

    @router.task("p:run")
    async def run(task: Task) -> None:
        ran.add(task.id)

    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace, concurrency=2):
        assert sorted(ran.wait_for(3)) == sorted(behind)
        wait_until(
            lambda: inspector.get_task("default", poisoned.id).state is TaskState.ARCHIVED,
            what="the poison message archived",
        )
    info = inspector.get_task("default", poisoned.id)
    assert info.type == CORRUPT_TYPE
    assert info.payload == raw
    assert info.last_error is not None and "malformed message" in info.last_error
    assert list(r.scan_iter(f"{namespace}:*:unique:*")) == []
    assert queue_state(r, namespace)["lease"] == 0


def test_the_retry_pause_grows_and_is_capped() -> None:
    pauses = [retry_pause(n) for n in range(1, 12)]
    assert pauses == sorted(pauses)
    assert pauses[0] > 0
    assert max(pauses) == 2.0
    assert retry_pause(10**6) == 2.0  # no OverflowError however long the outage


def test_a_loop_that_raises_is_logged_and_restarted(
    redis_url: str,
    r: redis.Redis,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real_tick = Recoverer.tick
    calls: list[int] = []

    async def tick_failing_once(self: Recoverer) -> float:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in the recoverer")
        return await real_tick(self)

    monkeypatch.setattr(Recoverer, "tick", tick_failing_once)
    keys = QueueKeys(namespace, "default")
    task = Client(r, namespace=namespace).enqueue("s:run", b"x")
    # A task whose lease expired long ago, as if its worker died: only the recoverer frees it.
    r.lrem(keys.pending, 1, task.id)
    r.zadd(keys.lease, {task.id: 1})
    ran = Recorder()
    router = Router()

    @router.task("s:run")
    async def run(task: Task) -> None:
        ran.add(task.id)

    caplog.set_level(logging.ERROR, logger="rq_sched")
    with running_server(redis_url, router, namespace=namespace) as server:
        assert ran.wait_for(1) == [task.id]
        assert server.status == "running"
    assert "a bug in the recoverer" in caplog.text
    assert "recoverer" in caplog.text


def test_a_loop_that_keeps_failing_makes_the_server_unhealthy_and_serve_raise(
    redis_url: str, r: redis.Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def always_failing(self: Recoverer) -> float:
        raise RuntimeError("the recoverer is broken")

    monkeypatch.setattr(Recoverer, "tick", always_failing)
    options: dict[str, Any] = {**FAST, "loop_failures_allowed": 2}
    server = Server.from_url(redis_url, namespace=namespace, **options)

    async def main() -> None:
        try:
            await asyncio.wait_for(server.serve(Router()), 60)
        finally:
            await server.redis.aclose()

    with pytest.raises(ServerUnhealthyError, match="recoverer"):
        asyncio.run(main())
    assert server.status == "unhealthy"
    assert server.stopped.is_set()
    record = r.get(GlobalKeys(namespace).server(server.id))
    assert record is not None, "the unhealthy server's last heartbeat was cleared"
    assert ServerInfo.from_json(record).status == "unhealthy"


def test_rq_sched_worker_exits_non_zero_when_a_loop_keeps_failing(
    redis_url: str,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def always_failing(self: Recoverer) -> float:
        raise RuntimeError("the recoverer is broken")

    monkeypatch.setattr(Recoverer, "tick", always_failing)
    argv = ["worker", "tests.handlers:router", "--url", redis_url, "--namespace", namespace]
    assert main(argv) == EXIT_UNHEALTHY
    assert "its recoverer loop kept failing" in capsys.readouterr().err


class _FailsOnce(Component):
    name = "fails-once"

    def __init__(self) -> None:
        super().__init__()
        self.ticks = 0
        self.recovered = asyncio.Event()

    async def tick(self) -> float:
        self.ticks += 1
        if self.ticks == 1:
            raise KeyError("the first tick fails")
        self.recovered.set()
        return 60.0


def test_a_component_started_on_its_own_is_restarted_too() -> None:
    async def scenario() -> int:
        component = _FailsOnce()
        component.start()
        try:
            await asyncio.wait_for(component.recovered.wait(), 10)
        finally:
            await component.stop()
        return component.ticks

    assert asyncio.run(scenario()) == 2
