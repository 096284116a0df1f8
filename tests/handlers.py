"""Module-level handlers for the worker tests.

Process handlers are pickled by reference and run under multiprocessing's forkserver, and CLI
workers import ``tests.handlers:router``, so everything here lives at module level. Handlers
that run outside the test process report through Redis: their payload is a dict naming the
Redis URL and the list to push to (see :func:`note`).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from typing import Any

import redis
import redis.asyncio

from rq_sched import Router, SkipRetry, Task

router = Router()
NOT_A_ROUTER = "a string, not a Router"


def note(task: Task, key: str = "log", value: str | None = None) -> None:
    """RPUSH ``value`` (default: the task id) to ``payload[key]`` on ``payload["url"]``."""
    payload: dict[str, Any] = task.payload
    with redis.Redis.from_url(payload["url"]) as conn:
        conn.rpush(payload[key], value if value is not None else task.id)


@router.task("rec:push")
def push(task: Task) -> None:
    """Records the task id, after ``payload["sleep"]`` seconds (default none)."""
    time.sleep(float(task.payload.get("sleep", 0)))
    note(task)


@router.task("rec:slow")
def slow(task: Task) -> None:
    """Records the start, works ``payload["sleep"]`` seconds, records the end."""
    note(task, "started")
    time.sleep(float(task.payload["sleep"]))
    note(task, "done")


@router.task("rec:hang")
async def hang(task: Task) -> None:
    """Records the start, then waits (cancellably) far longer than any test."""
    note(task, "started")
    await asyncio.sleep(600)


def proc_fields(task: Task) -> bytes:
    """Returns what a child process saw of the task, as JSON (kept as the result)."""
    return json.dumps(
        {
            "pid": os.getpid(),
            "type": task.type,
            "payload_hex": task.payload.hex(),
            "payload_is_bytes": isinstance(task.payload, bytes),
            "id": task.id,
            "queue": task.queue,
            "retry_count": task.retry_count,
            "max_retry": task.max_retry,
            "headers": task.headers,
        }
    ).encode()


def proc_pid_then_sleep(task: Task) -> None:
    """Records its pid, then sleeps: a child for timeouts and cancellation to kill."""
    note(task, value=str(os.getpid()))
    time.sleep(600)


def proc_raise(task: Task) -> None:
    """Raises in the child process."""
    raise ValueError(f"bad input in a child process: {task.payload!r}")


def proc_skip(task: Task) -> None:
    """Refuses the task for good from a child process."""
    raise SkipRetry("refused by a child process")


def pid_of(task: Task) -> str:
    """Returns the pid of the process it ran in (kept as the result)."""
    return str(os.getpid())


def report_then_wait(task: Task) -> str:
    """Report progress, then block until ``payload["go"]`` gets an item (for progress tests:
    the task stays active while the test looks at it)."""
    payload: dict[str, Any] = task.payload
    task.report_progress(0.25, "a quarter")
    task.report_progress({"done": 3, "of": 4}, "three of four")
    with redis.Redis.from_url(payload["url"]) as conn:
        assert conn.blpop([payload["go"]], timeout=20) is not None
    return "finished"


def report_from_threads(task: Task) -> str:
    """Report large progress values from several threads at once (a process handler's reports
    share one pipe to the worker)."""

    def report(n: int) -> None:
        for i in range(50):
            task.report_progress(str(n) * 50_000, f"thread {n} report {i}")

    threads = [threading.Thread(target=report, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return "reported"


@router.task("wf:audit")
async def wf_audit(task: Task) -> str:
    """A workflow step for the kill -9 audit: records (id, pid, retry count, what it received,
    and which of its parents were not final when it started) in ``payload["runs"]``, sleeps a
    little so kills land mid-task, and returns ``payload["tag"]`` appended to its first
    parent's result (so a chain's last result spells the whole chain)."""
    payload: dict[str, Any] = task.payload
    conn = redis.asyncio.Redis.from_url(payload["url"])
    try:
        early = []
        for _, _, queue, parent_id in task.parents:
            prefix = f"{payload['ns']}:{{{queue}}}"
            live = await conn.hexists(f"{prefix}:msg", parent_id)
            archived = await conn.zscore(f"{prefix}:archived", parent_id)
            if live and archived is None:
                early.append(parent_id)
        received = [
            data.decode() if isinstance(data, bytes) else data for _, data, _, _ in task.parents
        ]
        record = {"id": task.id, "pid": os.getpid(), "early": early, "received": received}
        await conn.rpush(payload["runs"], json.dumps(record))
        await asyncio.sleep(payload.get("sleep", 0.0))
    finally:
        await conn.aclose()
    first = task.parent_results()[0] if task.parents else None
    tag: str = payload["tag"]
    return (first.decode() if first else "") + tag


_LEDGER_CONNECTIONS: dict[str, redis.Redis] = {}


@router.task("flow:ledger")
def ledger(task: Task) -> None:
    """Appends ``"s <id> <time> <pid>"`` to ``payload["ledger"]`` as it starts, works
    ``payload["sleep"]`` seconds, then appends ``"e <id> <time> <pid>"`` (the flow tests' ledger of
    starts and ends; Redis orders the entries of every worker process in one list)."""
    payload: dict[str, Any] = task.payload
    url = payload["url"]
    conn = _LEDGER_CONNECTIONS.get(url)
    if conn is None:
        conn = _LEDGER_CONNECTIONS[url] = redis.Redis.from_url(url)
    conn.rpush(payload["ledger"], f"s {task.id} {time.time():.6f} {os.getpid()}")
    time.sleep(float(payload.get("sleep", 0)))
    conn.rpush(payload["ledger"], f"e {task.id} {time.time():.6f} {os.getpid()}")


@router.task("flow:ledger:free")
def ledger_free(task: Task) -> None:
    """The same ledger as ``flow:ledger``, as another task type (the per-type limit tests)."""
    ledger(task)


@router.task("keyed:ledger", backoff=lambda retried, error, task: 0.2)
def keyed_ledger(task: Task) -> None:
    """Appends ``"s <id> <time> <pid> <key> <attempt>"`` to ``payload["ledger"]`` as it starts,
    works ``payload["sleep"]`` seconds, appends the same line with "e"; fails its first attempt
    when ``payload["fail_first"]`` (the keyed tests' ledger: Redis orders every worker's lines)."""
    payload: dict[str, Any] = task.payload
    url = payload["url"]
    conn = _LEDGER_CONNECTIONS.get(url)
    if conn is None:
        conn = _LEDGER_CONNECTIONS[url] = redis.Redis.from_url(url)
    tail = f"{task.id} {time.time():.6f} {os.getpid()} {task.key} {task.retry_count}"
    conn.rpush(payload["ledger"], "s " + tail)
    time.sleep(float(payload.get("sleep", 0)))
    failing = payload.get("fail_first") and task.retry_count == 0
    conn.rpush(payload["ledger"], ("f " if failing else "e ") + tail)
    if failing:
        raise RuntimeError("first attempt fails")
