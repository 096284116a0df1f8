"""Structured logs: lines written while a task runs (async or thread handler) are JSON that
names the task; the optional event lines report success and failure with a traceback."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from rq_sched import Client, Router, SkipRetry, Task
from rq_sched.contrib.jsonlog import JsonFormatter, TaskLogContext
from tests.worker_support import Recorder, running_server

LOGGER = "tests.contrib.jsonlog"


class Lines(logging.Handler):
    """Keeps every formatted line; tests wait on it without sleeping."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter(static_fields={"service": "test"}))
        self.lines = Recorder()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.add(json.loads(self.format(record)))


@pytest.fixture
def lines() -> Iterator[Recorder]:
    handler = Lines()
    loggers = [logging.getLogger(LOGGER), logging.getLogger("rq_sched.tasks")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
            logger.setLevel(logging.NOTSET)


def test_lines_logged_by_async_and_thread_handlers_name_their_task(
    redis_url: str, r: redis.Redis, namespace: str, lines: Recorder
) -> None:
    router = Router()
    router.use(TaskLogContext())
    log = logging.getLogger(LOGGER)

    @router.task("mail:send")
    async def send(task: Task) -> None:
        log.info("sending to %s", task.payload["to"], extra={"attempt_note": "first"})

    @router.task("report:build")
    def build(task: Task) -> None:
        log.info("building in %s", threading.current_thread().name)

    client = Client(r, namespace=namespace)
    mail = client.enqueue("mail:send", {"to": "a@example.com"}, queue="mail")
    report = client.enqueue("report:build", None, max_retry=4)
    with running_server(redis_url, router, namespace=namespace, queues={"default": 1, "mail": 1}):
        got = {line["task_type"]: line for line in lines.wait_for(2)}
    assert got["mail:send"] == {
        "time": got["mail:send"]["time"],
        "level": "INFO",
        "logger": LOGGER,
        "message": "sending to a@example.com",
        "service": "test",
        "task_id": mail.id,
        "task_type": "mail:send",
        "queue": "mail",
        "attempt": 1,
        "max_retry": 25,
        "attempt_note": "first",
    }
    assert got["mail:send"]["time"].endswith("+00:00")
    built = got["report:build"]
    assert built["message"].startswith("building in rq-sched")  # it ran in a handler thread
    assert (built["task_id"], built["queue"], built["max_retry"]) == (report.id, "default", 4)


def test_event_lines_report_success_and_failure_with_the_traceback(
    redis_url: str, r: redis.Redis, namespace: str, lines: Recorder
) -> None:
    router = Router()
    router.use(TaskLogContext(log_events=True))

    @router.task("ok")
    async def ok(task: Task) -> None:
        return None

    @router.task("bad")
    def bad(task: Task) -> None:
        raise SkipRetry("no such user")

    client = Client(r, namespace=namespace)
    good = client.enqueue("ok")
    failing = client.enqueue("bad")
    with running_server(redis_url, router, namespace=namespace):
        events = lines.wait_for(4)  # started + ended, for each task
    by_task: dict[str, list[dict[str, Any]]] = {}
    for line in events:
        by_task.setdefault(line["task_id"], []).append(line)
    started, succeeded = by_task[good.id]
    assert (started["level"], started["message"]) == ("DEBUG", "task started")
    assert (succeeded["level"], succeeded["message"]) == ("INFO", "task succeeded")
    assert succeeded["duration_ms"] >= 0
    _, failed = by_task[failing.id]
    assert (failed["level"], failed["message"]) == ("WARNING", "task failed: SkipRetry")
    assert "SkipRetry: no such user" in failed["exception"]
    assert failed["task_type"] == "bad"


def test_lines_outside_a_task_carry_no_task_fields() -> None:
    record = logging.LogRecord(LOGGER, logging.ERROR, __file__, 1, "plain %s", ("line",), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "plain line"
    assert not {"task_id", "task_type", "queue", "attempt"} & set(line)


def test_a_line_with_an_unserialisable_extra_is_still_written() -> None:
    """Found by review: a dict with tuple keys in ``extra`` made the formatter raise."""
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "hello", None, None)
    record.d = {(1, 2): 3}
    line = json.loads(JsonFormatter().format(record))
    assert (line["message"], line["d"]) == ("hello", "{(1, 2): 3}")
