"""Running one handler call: async on the loop, sync in a thread, or in a child process.

Timeouts and cancellation differ by kind, honestly: an async handler is cancelled; a process
handler's child is killed; a thread cannot be stopped by Python, so its task is failed (or
cancelled) at once, ``task.is_cancelled()`` turns true, and the thread is left to finish. Handler
threads are daemon threads: one still stuck after a graceful shutdown handed its task back does
not keep the worker process from exiting.

A sync call whose task was settled (timed out, cancelled) while it waited for a thread never
starts; one that waited past the worker's start window has its lease confirmed in Redis first.
A thread still stuck in a timed-out handler is not counted as free: the pool starts a
replacement, up to twice its size in all; past that, calls wait, and the pool counts and logs
the saturation.

A process handler's child never runs without its worker: it does not start the handler once
the worker's end of their pipe is closed, and exits as soon as that end closes (a worker killed
with ``kill -9``), so no handler runs on with nobody to record its outcome.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import math
import multiprocessing
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection, wait
from typing import Any

from rq_sched.errors import (
    HandlerTimeoutError,
    ProcessHandlerError,
    Retry,
    SkipRetry,
    TaskCancelledError,
)
from rq_sched.router import Route
from rq_sched.task import Task

log = logging.getLogger("rq_sched")

SATURATION_LOG_INTERVAL = 10.0
"""Seconds between two warnings that every handler thread is busy."""
NOT_STARTED = "the handler was not started: the task was given up first (lease lost or cancelled)"
READY, GO, STALE = "ready", "go", "stale"
"""A child says READY once it runs; the worker answers ``(GO, start by)`` if the handler may
still start, with the monotonic time by which it must; a child that gets there later answers
STALE, and the worker confirms the lease again before the next GO."""
CONFIRM_WAIT = 5.0
"""Seconds a handler thread waits for its loop to confirm a lease before checking again
whether the task was given up meanwhile."""
WORKER_GONE_EXIT = 75
"""Exit code of a handler child that stopped because its worker was gone."""


class Runners:
    """Owns the thread pool and the process slots of one worker server."""

    def __init__(self, *, threads: int, processes: int) -> None:
        self.threads = DaemonThreadPool(threads, name="rq-sched")
        self.process_slots = asyncio.Semaphore(processes)
        self._mp = multiprocessing.get_context("forkserver")
        # The forkserver imports rq_sched (and redis, msgpack) once; each child is a fork of it
        # and starts its handler in milliseconds instead of re-importing for ~170 ms of CPU.
        # The handler's own module is still imported by each child: importing user code in
        # the forkserver would share whatever it opens at import (a connection pool) with
        # every child. Preloading is per process and takes effect when the forkserver starts.
        self._mp.set_forkserver_preload(["__main__", __name__])

    async def run(self, route: Route, task: Task, timeout: float | None) -> None:
        """Run ``route``'s handler for ``task``; raise what it raised, or HandlerTimeoutError."""
        try:
            if route.kind != "process" and not await _may_start(task):
                raise TaskCancelledError(NOT_STARTED)
            if route.kind == "async":
                await self._run_async(route, task, timeout)
            elif route.kind == "thread":
                await self._run_thread(route, task, timeout)
            else:
                await self._run_process(route, task, timeout)
        except BaseException:
            task._cancel()
            raise

    async def _run_async(self, route: Route, task: Task, timeout: float | None) -> None:
        if timeout is None:  # the common case; entering asyncio.timeout costs a little per task
            _keep_returned(task, await route.handler(task))
            return
        try:
            async with asyncio.timeout(timeout):
                _keep_returned(task, await route.handler(task))
        except TimeoutError as exc:
            raise HandlerTimeoutError(f"timed out after {timeout:g}s") from exc

    async def _run_thread(self, route: Route, task: Task, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        call = self.threads.submit(_start_unless_given_up, (route.handler, task, loop))
        try:
            _keep_returned(task, await asyncio.wait_for(call.future, timeout))
        except TimeoutError as exc:
            raise HandlerTimeoutError(
                f"timed out after {timeout:g}s (the handler's thread cannot be stopped by Python "
                "and may still be running; check task.is_cancelled() in long sync handlers)"
            ) from exc
        finally:
            self.threads.abandon(call)  # no-op once the call is done

    async def _run_process(self, route: Route, task: Task, timeout: float | None) -> None:
        async with self.process_slots:
            if task.is_cancelled():  # given up while it waited for a slot
                raise TaskCancelledError(NOT_STARTED)
            # Duplex (a socket pair): the child says it is ready and waits for GO (starting a
            # child can take a second on a busy host: the task may be given up meanwhile);
            # after GO the worker never writes, so the child sees the worker's end close.
            receiver, sender = self._mp.Pipe(duplex=True)
            child = self._mp.Process(
                target=_child_main, args=(sender, route.handler, _TaskState.of(task)), daemon=True
            )
            child.start()
            sender.close()
            try:
                reply = await asyncio.wait_for(_converse(receiver, task), timeout)
            except TimeoutError as exc:
                raise HandlerTimeoutError(f"timed out after {timeout:g}s; child killed") from exc
            finally:
                if child.is_alive():
                    child.kill()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_readable(child.sentinel), 5)
                child.join(0)
                receiver.close()
        _raise_child_outcome(reply, task, child.exitcode)

    def close(self) -> None:
        self.threads.close()


@dataclass(slots=True, eq=False)
class PoolCall:
    """One call submitted to a :class:`DaemonThreadPool`."""

    fn: Callable[[Any], Any]
    arg: Any
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    context: contextvars.Context
    """The submitter's context variables, so what middleware set (a trace span, log fields)
    reaches a sync handler as it would through ``asyncio.to_thread``."""
    state: str = "queued"
    """queued -> running -> done; or skipped (abandoned before it started) or abandoned."""


class DaemonThreadPool:
    """Up to ``size`` daemon threads running sync handlers for one event loop.

    Not a ``ThreadPoolExecutor``: its threads are joined when the interpreter exits, so a single
    handler stuck after a graceful shutdown (its task already handed back) would keep the
    worker process alive for as long as the handler runs. And unlike one, it knows which of its
    threads are stuck in a call nobody waits for any more, and does not count them as free.
    """

    def __init__(self, size: int, *, name: str, max_threads: int | None = None) -> None:
        self.size = size
        self.name = name
        self.max_threads = max_threads or 2 * size
        """Threads in all, stuck ones included: the bound on replacements."""
        self.saturated = 0
        """Calls that had to wait because every thread was busy and no more were allowed."""
        self._calls: queue.SimpleQueue[PoolCall | None] = queue.SimpleQueue()
        self._threads: set[threading.Thread] = set()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._stuck = 0
        self._serial = 0
        self._warned_at = -SATURATION_LOG_INTERVAL

    @property
    def stuck(self) -> int:
        """Threads still running a call that was abandoned (timed out or cancelled)."""
        return self._stuck

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> PoolCall:
        """Run ``fn(arg)`` on a pool thread; ``call.future`` is resolved on the calling loop."""
        loop = asyncio.get_running_loop()
        call = PoolCall(fn, arg, loop, loop.create_future(), contextvars.copy_context())
        self._calls.put(call)
        if not self._idle.acquire(blocking=False):
            with self._lock:
                self._grow_or_note_saturation()
        return call

    def abandon(self, call: PoolCall) -> None:
        """Nobody waits for ``call`` any more: if it has not started it never will; if it is
        running, its thread is stuck and a replacement may start."""
        with self._lock:
            if call.state == "queued":
                call.state = "skipped"
            elif call.state == "running":
                call.state = "abandoned"
                self._stuck += 1
                if len(self._threads) - self._stuck < self.size:
                    self._grow_or_note_saturation()

    def close(self) -> None:
        """Let idle threads end; busy ones end when their handler returns (or with the process)."""
        with self._lock:
            count = len(self._threads)
        for _ in range(count):
            self._calls.put(None)

    def _grow_or_note_saturation(self) -> None:
        # Called with the lock held.
        free_capacity = len(self._threads) - self._stuck < self.size
        if free_capacity and len(self._threads) < self.max_threads:
            thread = threading.Thread(
                target=self._work, name=f"{self.name}_{self._serial}", daemon=True
            )
            self._serial += 1
            self._threads.add(thread)
            thread.start()
            return
        self.saturated += 1
        now = time.monotonic()
        if now - self._warned_at >= SATURATION_LOG_INTERVAL:
            self._warned_at = now
            log.warning(
                "all %d handler threads are busy (%d stuck in handlers that timed out or were "
                "cancelled); sync tasks wait for a thread (%d times so far)",
                len(self._threads),
                self._stuck,
                self.saturated,
            )

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            with self._lock:
                start = call.state == "queued"
                if start:
                    call.state = "running"
            if start:
                self._run(call)
            del call
            with self._lock:
                # A replacement made the pool larger than its size: the surplus retires.
                retire = len(self._threads) - self._stuck > self.size
                if retire:
                    self._threads.discard(threading.current_thread())
            if retire:
                return
            self._idle.release()

    def _run(self, call: PoolCall) -> None:
        try:
            outcome: tuple[bool, Any] = (True, call.context.run(call.fn, call.arg))
        except StopIteration as exc:  # cannot be set on a future
            outcome = (False, RuntimeError(f"handler raised StopIteration: {exc}"))
        except BaseException as exc:  # noqa: BLE001 - every outcome goes back to the loop
            outcome = (False, exc)
        with self._lock:
            if call.state == "abandoned":
                self._stuck -= 1
            call.state = "done"
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            call.loop.call_soon_threadsafe(_resolve, call.future, outcome)


def _start_unless_given_up(
    call: tuple[Callable[[Task], Any], Task, asyncio.AbstractEventLoop],
) -> Any:
    """Run a sync handler on a pool thread, unless its task was given up (lease lost,
    cancelled) while the call waited for a thread.

    A call that waited longer than the worker's start window asks the worker's loop to confirm
    the lease in Redis first, and waits here for the answer: the thread keeps its place, and
    the check is as close to the start as it can be, whatever the loop was doing meanwhile."""
    handler, task, loop = call
    while not task.is_cancelled():
        if time.monotonic() < _start_by(task):
            return handler(task)
        gate = task._may_start
        if gate is None or loop.is_closed():
            break
        try:
            confirmed = asyncio.run_coroutine_threadsafe(gate(), loop)
        except RuntimeError:  # the loop closed meanwhile: nobody waits for this call
            break
        try:
            if not confirmed.result(CONFIRM_WAIT):
                break
        except concurrent.futures.TimeoutError:
            confirmed.cancel()  # the loop is far behind: ask again, unless given up meanwhile
        except concurrent.futures.CancelledError:
            break
    raise TaskCancelledError(NOT_STARTED)


def _resolve(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():  # cancelled: timed out, or the task was cancelled
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


@dataclass(frozen=True, slots=True)
class _TaskState:
    """What a child process needs to rebuild the Task (picklable)."""

    type: str
    payload: Any
    id: str
    queue: str
    retry_count: int
    max_retry: int
    headers: dict[str, str]
    timeout: float | None
    deadline: datetime | None
    parents: tuple[Any, ...] = ()
    key: str | None = None

    @classmethod
    def of(cls, task: Task) -> _TaskState:
        return cls(
            task.type,
            task.payload,
            task.id,
            task.queue,
            task.retry_count,
            task.max_retry,
            task.headers,
            task.timeout,
            task.deadline,
            task.parents,
            task.key,
        )


def _keep_returned(task: Task, value: object) -> None:
    """A handler's returned value is its result, unless it wrote one itself (it is encoded
    when the task is acknowledged, and only if the task keeps results)."""
    if value is not None and task.result is None:
        task.result = value


async def _readable(fd: int) -> None:
    """Wait until ``fd`` can be read (data, or EOF) on the event loop itself.

    Waiting in a thread instead (``asyncio.to_thread``) would hold one of the loop's few
    default-executor threads per running child, and with more children than threads a finished
    child's reply would wait in line behind long-running ones, past its timeout.
    """
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def _may_start(task: Task) -> bool:
    if task.is_cancelled():
        return False
    gate = task._may_start
    return True if gate is None else await gate()


async def _converse(receiver: Connection, task: Task) -> Any:
    """The worker's side of a child's run: READY, then GO (unless the task was given up
    meanwhile), then the reply, or None at EOF (the child died)."""
    await _readable(receiver.fileno())
    hello = _receive(receiver)
    if hello != READY:
        return hello
    while True:
        if not await _may_start(task):
            raise TaskCancelledError(NOT_STARTED)
        receiver.send((GO, _start_by(task)))
        await _readable(receiver.fileno())
        reply = _receive(receiver)
        if reply != STALE:  # the child took longer than the start window to get going
            break
    while isinstance(reply, tuple) and reply and reply[0] == "progress":
        task.report_progress(reply[1], reply[2])  # relayed from the child's handler
        await _readable(receiver.fileno())
        reply = _receive(receiver)
    return reply


def _start_by(task: Task) -> float:
    """The monotonic time by which ``task``'s handler must start (inf: no limit set)."""
    start_by = task._start_by
    return math.inf if start_by is None else start_by()


def _receive(conn: Connection) -> Any:
    try:
        return conn.recv()
    except EOFError:
        return None


def _worker_gone(conn: Connection) -> bool:
    """True once the worker's end of ``conn`` is closed: it never writes, so readable is EOF."""
    return conn.poll(0)


def _exit_with_worker(conn: Connection) -> None:
    """Exit this child as soon as its worker's end of ``conn`` closes.

    The child's parent is the forkserver, not the worker, so ``getppid`` says nothing and
    ``PR_SET_PDEATHSIG`` would watch the wrong process. A worker killed with ``kill -9`` closes
    its end; the handler then stops here as a timeout would stop it, instead of running on with
    nobody to record its outcome while the task runs again elsewhere. A worker that is alive
    closes its end only after this child has exited or been killed.
    """
    fd = os.dup(conn.fileno())  # its own descriptor: the main thread closes conn when done

    def watch() -> None:
        wait([fd])  # returns at EOF only (selectors: no FD_SETSIZE limit)
        os._exit(WORKER_GONE_EXIT)

    threading.Thread(target=watch, name="rq-sched-worker-watch", daemon=True).start()


def _child_main(conn: Connection, handler: Any, state: _TaskState) -> None:
    if _worker_gone(conn):
        # The worker died between asking the forkserver for this child and now: nobody would
        # record the outcome, and the task is recovered and runs elsewhere.
        os._exit(WORKER_GONE_EXIT)
    task = Task(
        type=state.type,
        payload=state.payload,
        id=state.id,
        queue=state.queue,
        retry_count=state.retry_count,
        max_retry=state.max_retry,
        headers=state.headers,
        timeout=state.timeout,
        deadline=state.deadline,
        parents=state.parents,
        key=state.key,
    )
    sending = threading.Lock()

    def send(reply: Any) -> None:
        # One message at a time: the handler's own threads may report progress, and a message
        # larger than the pipe's atomic write interleaved with another corrupts the pipe.
        with sending:
            conn.send(reply)

    def relay(value: Any, message: str | None) -> None:
        with contextlib.suppress(OSError):  # the outcome was sent meanwhile: advisory, dropped
            send(("progress", value, message))

    task._progress = relay
    if not _go_ahead(conn):  # the worker is gone, or gave the task up (lease lost, cancelled)
        os._exit(WORKER_GONE_EXIT)
    _exit_with_worker(conn)
    try:
        _keep_returned(task, handler(task))
        send(("ok", task.result))
    except Retry as exc:
        send(("retry", exc.delay, str(exc)))
    except SkipRetry as exc:
        send(("skip", str(exc)))
    except BaseException as exc:  # noqa: BLE001 - everything is reported to the parent
        send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        with sending:
            conn.close()


def _go_ahead(conn: Connection) -> bool:
    """Say READY and wait for a GO that is still fresh when read (answering STALE to each
    that is not): True to start the handler, False when the worker gave the task up or is
    gone."""
    try:
        conn.send(READY)
        while True:
            go = conn.recv()
            if not (isinstance(go, tuple) and len(go) == 2 and go[0] == GO):
                return False
            if time.monotonic() < go[1]:
                return True
            conn.send(STALE)
    except (EOFError, OSError):
        return False


def _raise_child_outcome(reply: Any, task: Task, exitcode: int | None) -> None:
    if reply is None:
        raise ProcessHandlerError(f"handler process died without a reply (exit code {exitcode})")
    kind = reply[0]
    if kind == "ok":
        if reply[1] is not None:
            task.result = reply[1]
        return
    if kind == "retry":
        raise Retry(reply[1], reply[2])
    if kind == "skip":
        raise SkipRetry(reply[1])
    raise ProcessHandlerError(f"{reply[1]}\n{reply[2]}")
