"""The handlers every chaos worker runs: one router with async, thread and process handlers.

A task's payload says what its handler does (so a seeded producer decides it): how long it
takes, whether it fails, asks for a retry, skips retries, runs into its timeout or keeps a
result. Each call appends ``start`` and ``end`` to the ledger of the process it runs in (a
process handler writes from its child). ``end.outcome`` is one of ``ok``, ``fail``, ``retry``,
``skip``, ``interrupted`` (cancelled: timeout, operator cancel or shutdown) and ``abandoned``
(a thread handler that finished after its task was given up on: a timeout or a cancel).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from typing import Any

from chaos_lib.ledger import Ledger
from rq_sched import Retry, Router, SkipRetry, Task
from rq_sched.router import Next

ASYNC = "chaos.async"
THREAD = "chaos.thread"
PROCESS = "chaos.process"
TICK = "chaos.tick"
STALL = "chaos.stall"
"""Blocks the worker's event loop (``time.sleep`` in an async handler) for ``payload['s']``."""
BAD = "chaos.bad"
"""Outcomes that cannot be written as given (issue 10, cases 2 and 8)."""

_ledger: Ledger | None = None


def ledger() -> Ledger | None:
    global _ledger  # noqa: PLW0603 - one ledger per process, opened on first use
    if _ledger is None:
        _ledger = Ledger.from_env("worker")
    return _ledger


def _worker_pid() -> int:
    """The worker server's pid, also from a process handler's child (a forkserver child)."""
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None and parent.pid is not None else os.getpid()


def _log(event: str, task: Task, **fields: Any) -> None:
    book = ledger()
    if book is not None:
        call = _spec(task).get("c")
        if event == "start" and call is not None:
            fields["call"] = call  # a debounce or throttle call: whose payload this run has
        book.write(
            event,
            wpid=_worker_pid(),
            id=task.id,
            q=task.queue,
            type=task.type,
            retried=task.retry_count,
            max_retry=task.max_retry,
            **fields,
        )


def _spec(task: Task) -> dict[str, Any]:
    payload = task.payload
    return payload if isinstance(payload, dict) else {}


def _verdict(task: Task, spec: dict[str, Any]) -> tuple[str, object]:
    """What this attempt does after its work: (outcome, value to return)."""
    behaviour = spec.get("b", "ok")
    fails = int(spec.get("ft", 1))
    if behaviour == "fail" and task.retry_count < fails:
        return "fail", None
    if behaviour == "retry" and task.retry_count < fails:
        return "retry", None
    if behaviour == "skip":
        return "skip", None
    if behaviour == "always_fail":
        return "fail", None
    return "ok", f"r:{task.id}:{task.retry_count}"


def _finish(task: Task, outcome: str, value: object) -> object:
    if task.is_cancelled():
        _log("end", task, outcome="abandoned")
        return None
    _log("end", task, outcome=outcome)
    if outcome == "fail":
        raise ValueError(f"chaos failure on attempt {task.retry_count}")
    if outcome == "retry":
        raise Retry(0.2, "chaos asks for a retry")
    if outcome == "skip":
        raise SkipRetry("chaos skips retries")
    return value


def _backoff(attempt: int, error: BaseException, task: Task) -> float:
    return 0.1 * attempt  # short: the soak's settle phase must see retries finish


router = Router()

LAG_PROBE = 0.2
"""Seconds between two event-loop lag probes in each worker."""
LAG_REPORT = 0.5
"""A probe late by this much is written to the ledger as ``lag``."""
_probing: set[int] = set()


class _LateRenewals(logging.Handler):
    """Writes the lease keeper's "renewals ran late" warnings to the ledger as ``lag``: the
    worker's own account of a stretch in which its leases could expire (a loop starved on an
    overloaded machine), which the audit uses like the probe's."""

    def emit(self, record: logging.LogRecord) -> None:
        if not str(record.msg).startswith("lease-keeper: %.2fs since"):
            return
        book = ledger()
        if book is not None and isinstance(record.args, tuple):
            gap = float(str(record.args[0]))
            book.write("lag", wpid=os.getpid(), seconds=round(gap, 3), since=record.created - gap)


logging.getLogger("rq_sched").addHandler(_LateRenewals(logging.WARNING))


@router.use
async def probe_lag(task: Task, call_next: Next) -> None:
    """Start, once per worker process, a probe that writes event-loop lag to the ledger.

    A worker whose loop is blocked (a stalled handler, an overloaded machine) cannot renew its
    leases; the audit explains re-runs that follow such lag instead of calling them violations.
    """
    if os.getpid() not in _probing:
        _probing.add(os.getpid())
        probe = asyncio.ensure_future(_probe())
        probe.add_done_callback(lambda _: _probing.discard(os.getpid()))
    await call_next(task)


async def _probe() -> None:
    book = ledger()
    while book is not None:
        before = time.monotonic()
        await asyncio.sleep(LAG_PROBE)
        late = time.monotonic() - before - LAG_PROBE
        if late >= LAG_REPORT:
            book.write("lag", wpid=os.getpid(), seconds=round(late, 3), since=time.time() - late)


@router.task(ASYNC, backoff=_backoff)
async def run_async(task: Task) -> object:
    spec = _spec(task)
    _log("start", task, kind="async")
    try:
        await asyncio.sleep(float(spec.get("d", 0)))
    except asyncio.CancelledError:
        _log("end", task, outcome="interrupted")
        raise
    outcome, value = _verdict(task, spec)
    return _finish(task, outcome, value)


@router.task(THREAD, backoff=_backoff)
def run_thread(task: Task) -> object:
    spec = _spec(task)
    _log("start", task, kind="thread", cancelled_at_start=task.is_cancelled())
    deadline = time.monotonic() + float(spec.get("d", 0))
    while time.monotonic() < deadline and not task.is_cancelled():
        time.sleep(0.02)
    outcome, value = _verdict(task, spec)
    return _finish(task, outcome, value)


@router.task(PROCESS, process=True, backoff=_backoff)
def run_process(task: Task) -> object:
    spec = _spec(task)
    _log("start", task, kind="process")
    time.sleep(float(spec.get("d", 0)))
    outcome, value = _verdict(task, spec)
    return _finish(task, outcome, value)


@router.task(TICK, backoff=_backoff)
async def run_tick(task: Task) -> None:
    _log("start", task, kind="async")
    _log("end", task, outcome="ok")


@router.task(STALL, backoff=_backoff)
async def run_stall(task: Task) -> None:
    seconds = float(_spec(task).get("s", 1.0))
    first = _claim_stall(task)
    _log("start", task, kind="async", stall=seconds if first else 0)
    if first:  # a stall task recovered elsewhere must not stall every worker in turn
        time.sleep(seconds)  # on purpose: the whole event loop stops, lease renewal included
    _log("end", task, outcome="ok")


def _claim_stall(task: Task) -> bool:
    book = ledger()
    if book is None:
        return True
    try:
        fd = os.open(book.directory / f"stall-{task.id}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


@router.task(BAD, backoff=_backoff)
async def run_bad(task: Task) -> object:
    how = _spec(task).get("how", "surrogate")
    _log("start", task, kind="async", bad=how)
    _log("end", task, outcome="fail" if how != "result" else "ok")
    if how == "surrogate":
        raise ValueError("cannot open \udcff.txt")  # a lone surrogate, as os.listdir gives
    if how == "retry_inf":
        raise Retry(float("inf"))
    task.result = {"not": "bytes"}  # any msgpack value is a result now (issue 10 case 8)
    return None
