"""Settling cannot fail open: whatever a handler returns or raises, the task reaches a recorded
state and its slot is freed; one bad result fails its own task and never jams the acks of the
others; a cancel that lands while a failure is written ends the task cancelled, not retried.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import msgpack
import pytest
import redis

from rq_sched import Client, Inspector, Retry, Router, Task, TaskState, ValidationError
from rq_sched.keys import QueueKeys
from tests import runtime_handlers
from tests.worker_support import Recorder, fast_backoff, running_server, wait_until


def _state(inspector: Inspector, task_id: str) -> TaskState:
    return inspector.get_task("default", task_id).state


def _wait_state(inspector: Inspector, task_id: str, *states: TaskState) -> TaskState:
    return wait_until(
        lambda: _state(inspector, task_id) if _state(inspector, task_id) in states else None,
        what=f"{task_id} in {states}",
    )


@pytest.mark.parametrize(
    "delay",
    [float("inf"), float("nan"), -1, 400 * 86400, timedelta(days=400), "5", None, True],
)
def test_retry_refuses_a_delay_that_is_not_finite_or_not_bounded(delay: object) -> None:
    with pytest.raises(ValidationError, match=r"Retry\(delay\)"):
        Retry(delay)  # type: ignore[arg-type]


def test_an_error_text_with_a_lone_surrogate_is_recorded_and_the_slot_freed(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    ran = Recorder()
    router = Router()

    @router.task("s:listdir")
    async def listdir(task: Task) -> None:
        raise FileNotFoundError("no such file: report-\udcff.csv")  # as os.listdir returns it

    @router.task("s:next")
    async def after(task: Task) -> None:
        ran.add(task.id)

    client = Client(r, namespace=namespace)
    bad = client.enqueue("s:listdir", None, max_retry=0)
    nxt = client.enqueue("s:next", None)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace, concurrency=1):
        assert ran.wait_for(1) == [nxt.id]
        _wait_state(inspector, bad.id, TaskState.ARCHIVED)
    error = inspector.get_task("default", bad.id).last_error
    assert error is not None
    assert error.startswith("FileNotFoundError: no such file: report-\\udcff.csv")


def test_an_error_whose_str_raises_is_recorded(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    class UnprintableError(Exception):
        def __str__(self) -> str:
            raise RuntimeError("cannot print me")

    router = Router()

    @router.task("s:odd")
    async def odd(task: Task) -> None:
        raise UnprintableError

    bad = Client(r, namespace=namespace).enqueue("s:odd", None, max_retry=0)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace, concurrency=1) as server:
        _wait_state(inspector, bad.id, TaskState.ARCHIVED)
        wait_until(lambda: server.processor is not None and not server.processor.running)
    error = inspector.get_task("default", bad.id).last_error
    assert error is not None and error.startswith("UnprintableError: <str() of the error raised")


def test_a_backoff_returning_infinity_still_records_a_retry_and_frees_the_slot(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    ran = Recorder()
    router = Router()

    @router.task("s:bad-backoff", backoff=lambda attempt, error, task: float("inf"))
    async def failing(task: Task) -> None:
        raise ConnectionError("upstream down")

    @router.task("s:next")
    async def after(task: Task) -> None:
        ran.add(task.id)

    client = Client(r, namespace=namespace)
    bad = client.enqueue("s:bad-backoff", None)
    nxt = client.enqueue("s:next", None)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace, concurrency=1):
        assert ran.wait_for(1) == [nxt.id]
        _wait_state(inspector, bad.id, TaskState.RETRY)
    info = inspector.get_task("default", bad.id)
    assert info.last_error is not None and info.last_error.startswith("ConnectionError")


def test_one_result_that_is_not_bytes_does_not_jam_the_acks_of_its_queue(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    router = Router()

    @router.task("s:dict")
    async def dict_result(task: Task) -> None:
        task.result = {"rows": 3}

    @router.task("s:bytes")
    async def bytes_result(task: Task) -> bytes:
        return b"plain"

    client = Client(r, namespace=namespace)
    structured = client.enqueue("s:dict", None, retention=600)
    plain = client.enqueue("s:bytes", None, retention=600)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace):
        _wait_state(inspector, structured.id, TaskState.COMPLETED)
        _wait_state(inspector, plain.id, TaskState.COMPLETED)
    assert inspector.get_task("default", plain.id).result == b"plain"
    result = inspector.get_task("default", structured.id).result
    assert result is not None and msgpack.unpackb(result) == {"rows": 3}


def test_a_returned_value_is_kept_as_the_result_msgpack_encoded(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    router = Router()

    @router.task("s:report")
    def report(task: Task) -> dict[str, object]:
        return {"rows": [1, 2], "ok": True}

    task = Client(r, namespace=namespace).enqueue("s:report", None, retention=600)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace):
        _wait_state(inspector, task.id, TaskState.COMPLETED)
    result = inspector.get_task("default", task.id).result
    assert result is not None and msgpack.unpackb(result) == {"rows": [1, 2], "ok": True}


def test_an_unencodable_result_fails_its_task_alone_with_a_clear_error(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    router = Router()

    @router.task("s:object")
    async def object_result(task: Task) -> object:
        return object()

    @router.task("s:text")
    async def text_result(task: Task) -> str:
        return "fine"

    client = Client(r, namespace=namespace)
    bad = client.enqueue("s:object", None, retention=600, max_retry=0)
    good = client.enqueue("s:text", None, retention=600)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace):
        _wait_state(inspector, bad.id, TaskState.ARCHIVED)
        _wait_state(inspector, good.id, TaskState.COMPLETED)
    assert inspector.get_task("default", good.id).result == b"fine"
    error = inspector.get_task("default", bad.id).last_error
    assert error is not None
    assert error.startswith("ValidationError: the task's result object cannot be stored")


def test_write_result_refuses_what_cannot_be_stored_at_once() -> None:
    task = Task(type="t", payload=None, id="1", queue="default")
    with pytest.raises(ValidationError, match="cannot be stored"):
        task.write_result(object())
    with pytest.raises(ValidationError, match="cannot be stored"):
        task.write_result("lone \udcff surrogate")
    task.write_result([1, "two"])
    assert msgpack.unpackb(task.result) == [1, "two"]


def test_a_cancel_landing_while_a_failure_is_written_ends_the_task_cancelled(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    attempts = Recorder()
    ran = Recorder()
    router = Router()
    holder: list[object] = []

    @router.task("s:fail-then-cancel", backoff=fast_backoff)
    async def fail(task: Task) -> None:
        attempts.add(task.id)
        server = holder[0]
        # The cancel arrives at the processor's next step: while the failure is written.
        asyncio.get_running_loop().call_soon(
            server.processor.cancel,  # type: ignore[attr-defined]
            task.queue,
            task.id,
        )
        raise RuntimeError("failed")

    @router.task("s:next")
    async def after(task: Task) -> None:
        ran.add(task.id)

    client = Client(r, namespace=namespace)
    doomed = client.enqueue("s:fail-then-cancel", None)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace, concurrency=1) as server:
        holder.append(server)
        _wait_state(inspector, doomed.id, TaskState.ARCHIVED)
        nxt = client.enqueue("s:next", None)
        assert ran.wait_for(1) == [nxt.id]
    assert attempts.items == [doomed.id]
    assert r.zscore(QueueKeys(namespace, "default").lease, doomed.id) is None


def test_a_process_handler_sees_the_task_deadline(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    router = Router()
    router.add("s:deadline", runtime_handlers.proc_deadline, process=True)
    deadline = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    task = Client(r, namespace=namespace).enqueue(
        "s:deadline", None, deadline=deadline, retention=600
    )
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace):
        _wait_state(inspector, task.id, TaskState.COMPLETED, TaskState.ARCHIVED)
    info = inspector.get_task("default", task.id)
    assert info.result == deadline.isoformat().encode(), info.last_error


def test_a_handler_raising_retry_with_an_infinite_delay_fails_cleanly_and_frees_the_slot(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    ran = Recorder()
    router = Router()

    @router.task("s:retry-inf", backoff=fast_backoff)
    async def retry_inf(task: Task) -> None:
        raise Retry(float("inf"))

    @router.task("s:next")
    async def after(task: Task) -> None:
        ran.add(task.id)

    client = Client(r, namespace=namespace)
    bad = client.enqueue("s:retry-inf", None, max_retry=1)
    nxt = client.enqueue("s:next", None)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace, concurrency=1):
        assert ran.wait_for(1) == [nxt.id]
        _wait_state(inspector, bad.id, TaskState.ARCHIVED)
    error = inspector.get_task("default", bad.id).last_error
    assert error is not None and error.startswith("ValidationError: Retry(delay)")
