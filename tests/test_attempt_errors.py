"""Every attempt's error is kept with the task (the last 10), bounded, and shown by the inspector,
the CLI and the dashboard API; a task that never failed stores the same bytes as before."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
import redis

from rq_sched import Client, Inspector, Router, Task, TaskState
from rq_sched.cli import main
from rq_sched.message import (
    EARLIER_ERROR_CHARS,
    MAX_EARLIER_ERRORS,
    VERSION,
    TaskMessage,
    decode,
)
from rq_sched.web import create_app
from tests.web.serve import serving
from tests.worker_support import fast_backoff, running_server, wait_until

FRESH = TaskMessage(type="t", payload=b"p", enqueued_at=1_800_000_000_000)


def _fail(message: TaskMessage, times: int, start_ms: int = 1_000) -> TaskMessage:
    for n in range(1, times + 1):
        message = message.failed(f"error {n}", at_ms=start_ms + n)
    return message


def test_failures_keep_the_last_ten_attempt_errors_oldest_first() -> None:
    failed = _fail(FRESH, 12)
    assert failed.retried == 12
    assert len(failed.errors) == MAX_EARLIER_ERRORS
    assert failed.attempt_errors() == [(n, 1_000 + n, f"error {n}") for n in range(3, 13)]
    assert decode(failed.encode()) == failed


def test_earlier_errors_keep_only_their_head_where_the_exception_line_is() -> None:
    long = "ValueError: START\n" + "x" * (EARLIER_ERROR_CHARS * 3)
    failed = FRESH.failed(long, at_ms=1).failed("second", at_ms=2)
    (attempt, at, text), last = failed.attempt_errors()
    assert (attempt, at, last) == (1, 1, (2, 2, "second"))
    assert text.startswith("ValueError: START\n") and text.endswith("x…")
    assert len(text) == EARLIER_ERROR_CHARS + 1


def test_a_task_that_never_failed_or_failed_once_stores_no_error_history() -> None:
    assert msgpack.unpackb(FRESH.encode()) == [VERSION, "t", b"p", 1_800_000_000_000]
    once = msgpack.unpackb(FRESH.failed("boom", at_ms=5).encode())
    assert len(once) == 13  # as before the history existed: up to last_failed_at
    assert len(msgpack.unpackb(_fail(FRESH, 2).encode())) == 14


def test_a_message_written_before_the_history_existed_decodes_with_none() -> None:
    old = msgpack.packb([VERSION, "t", b"p", 1, 25, 3, 0, 0, 0, None, None, "boom", 9])
    message = decode(old)
    assert message.errors == ()
    assert message.attempt_errors() == [(3, 9, "boom")]


@pytest.mark.parametrize(
    "errors",
    [
        "no",
        [[1, 2]],
        [[1, 2, b"bytes"]],
        [["1", 2, "x"]],
        [[1, -2, "x"]],
        [[1, 2, "x"]] * (MAX_EARLIER_ERRORS + 1),
    ],
)
def test_a_malformed_history_is_a_corrupt_task(errors: object) -> None:
    data = msgpack.packb([VERSION, "t", b"p", 1, 25, 3, 0, 0, 0, None, None, "boom", 9, errors])
    with pytest.raises(Exception, match="errors"):
        decode(data, task_id="x1")


HOSTILE = "\x1b]0;TITLE\x07<img src=x onerror=alert(1)>"


@pytest.fixture
def failed_task(redis_url: str, r: redis.Redis, namespace: str) -> str:
    """A task whose handler failed 12 times (max_retry=11), now archived."""
    router = Router()

    @router.task("f:broken")
    def always_fails(task: Task) -> None:
        raise ValueError(f"attempt {task.retry_count + 1} {HOSTILE}")

    task = Client(r, namespace=namespace).enqueue("f:broken", None, max_retry=11)
    inspector = Inspector(r, namespace=namespace)
    with running_server(redis_url, router, namespace=namespace, backoff=fast_backoff):
        wait_until(
            lambda: inspector.get_task("default", task.id).state is TaskState.ARCHIVED,
            what="archived",
            timeout=30,
        )
    return task.id


def test_inspector_shows_each_of_the_last_ten_attempts_errors(
    r: redis.Redis, namespace: str, failed_task: str
) -> None:
    info = Inspector(r, namespace=namespace).get_task("default", failed_task)
    assert info.retry_count == 12
    assert [e.attempt for e in info.errors] == list(range(3, 13))
    for e in info.errors:
        assert e.error.startswith(f"ValueError: attempt {e.attempt} {HOSTILE}")
        assert e.failed_at is not None
    assert info.errors[-1].error == info.last_error
    failed_ats = [e.failed_at.timestamp() for e in info.errors if e.failed_at is not None]
    assert failed_ats == sorted(failed_ats)


def test_cli_task_prints_every_kept_error_escaped(
    redis_url: str, namespace: str, failed_task: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["task", "--url", redis_url, "--namespace", namespace, "default", failed_task])
    out = capsys.readouterr().out
    assert code == 0
    assert "\x1b" not in out and "\x07" not in out
    for attempt in range(3, 12):
        assert f"-- attempt {attempt}, failed " in out
        assert f"ValueError: attempt {attempt} \\x1b]0;TITLE\\x07<img" in out
    assert "attempt 2 " not in out
    assert "last error:\nValueError: attempt 12 " in out


def test_api_task_has_the_errors_list(inspector: Inspector, failed_task: str) -> None:
    with serving(create_app(inspector)) as http:
        data: dict[str, Any] = http.get(f"/api/queues/default/tasks/{failed_task}").json()
    assert [e["attempt"] for e in data["errors"]] == list(range(3, 13))
    assert data["errors"][0]["error"].startswith(f"ValueError: attempt 3 {HOSTILE}")
    assert data["errors"][0]["failed_at"].endswith("Z")
