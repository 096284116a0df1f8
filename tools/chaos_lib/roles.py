"""The processes of a soak, one subcommand each: ``worker``, ``producer``, ``scheduler``,
``operator``. The orchestrator starts them with ``python -m chaos_lib.roles ROLE ...``;
each runs until its ``--until`` wall time (or a signal) and writes what it did to the ledger.
Everything goes through rq_sched's public API (and, for some operator actions, its CLI).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from chaos_lib import handlers
from chaos_lib.ledger import Ledger
from chaos_lib.plan import QUEUES, TaskPlanner, physical_of
from chaos_lib.windows import WindowPlanner, acall_burst, call_burst
from rq_sched import (
    AsyncClient,
    Client,
    EnqueueManyError,
    FlowLimits,
    Inspector,
    KeyLimits,
    NewTask,
    RqSchedError,
    Scheduler,
    Server,
    TaskInfo,
    TypeLimits,
)
from rq_sched.ops import ArchiveLimits

BIG_ARCHIVE = ArchiveLimits(max_size=10_000_000, max_age_s=30 * 86400)
"""The soak audits every archived task, so nothing may be trimmed while it runs."""


class OffsetClock:
    """The system clock moved by ``offset`` seconds: a host whose clock is off."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True)
    parser.add_argument("--ns", required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--until", type=float, default=0.0, help="wall time to stop at")


# -- worker -------------------------------------------------------------------------------------


def run_worker(args: argparse.Namespace) -> int:
    book = Ledger(args.ledger, args.name)
    book.write("proc_start", role="worker", skew=args.skew, processes=args.processes)
    server = Server.from_url(
        args.url,
        clock=OffsetClock(args.skew),
        queues=QUEUES,
        concurrency=args.concurrency,
        processes=args.processes,
        lease_duration=args.lease,
        recover_interval=0.5,
        heartbeat_interval=1.0,
        shutdown_timeout=2.0,
        archive_limits=BIG_ARCHIVE,
        namespace=args.ns,
    )
    server.run(handlers.router)
    book.write("proc_exit", role="worker")
    return 0


# -- producer -----------------------------------------------------------------------------------


class _Producing:
    """What both producer flavours share: the plan, the ledger and the bookkeeping."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.book = Ledger(args.ledger, args.name)
        self.planner = TaskPlanner(random.Random(args.seed), prefix=args.name)
        self.windows = WindowPlanner(args.seed, args.name)  # debounce and throttle bursts
        self.until = args.until
        self.pause = 1.0 / args.rate

    def log(
        self, task: NewTask, mode: str, outcome: TaskInfo | BaseException, **extra: Any
    ) -> None:
        due = 0.0
        if isinstance(outcome, TaskInfo):
            if outcome.next_process_at is not None:
                due = outcome.next_process_at.timestamp()
            self.book.write(
                "enq",
                id=outcome.id,
                q=outcome.queue,
                mode=mode,
                res="ok",
                due=due,
                type=task.type,
                ret=bool(task.retention),
                **extra,
            )
            return
        refused = isinstance(outcome, RqSchedError) and type(outcome).__name__ not in (
            "RedisUnavailableError",
            "RqSchedError",
        )
        self.book.write(
            "enq",
            id=task.task_id,
            q=physical_of(task.queue, task.task_id),
            mode=mode,
            res="refused" if refused else "unknown",
            err=type(outcome).__name__,
            msg=str(outcome)[:200],
            type=task.type,
            **extra,
        )


def run_producer(args: argparse.Namespace) -> int:
    state = _Producing(args)
    state.book.write("proc_start", role="producer")
    client = Client.from_url(args.url, namespace=args.ns)
    try:
        while time.time() < state.until:
            call_burst(client, state.book, state.windows.burst())
            mode, tasks = state.planner.next()
            if mode == "bulk":
                _bulk(client, state, tasks)
            else:
                _one(client, state, mode, tasks[0])
            time.sleep(state.pause * state.planner.rng.uniform(0.5, 1.5))
    finally:
        client.close()
        state.book.write("proc_exit", role="producer")
    return 0


def _enqueue_args(task: NewTask) -> dict[str, Any]:
    return {
        "queue": task.queue,
        "process_in": task.process_in,
        "max_retry": task.max_retry,
        "timeout": task.timeout,
        "unique": task.unique,
        "task_id": task.task_id,
        "retention": task.retention,
    }


def _one(client: Client, state: _Producing, mode: str, task: NewTask) -> None:
    for attempt in range(3):
        try:
            info = client.enqueue(task.type, task.payload, **_enqueue_args(task))
        except RqSchedError as exc:
            state.log(task, mode, exc, attempt=attempt)
            # The error's own advice: retry with the same id to stay idempotent.
            if task.task_id is None or type(exc).__name__ != "RedisUnavailableError":
                return
            time.sleep(0.5)
            continue
        state.log(task, mode, info, attempt=attempt)
        return


def _bulk(client: Client, state: _Producing, tasks: list[NewTask]) -> None:
    try:
        infos = client.enqueue_many(tasks)
    except EnqueueManyError as exc:
        for task, result in zip(tasks, exc.results, strict=True):
            state.log(task, "bulk", result)
        return
    except RqSchedError as exc:
        for task in tasks:
            state.log(task, "bulk", exc)
        return
    for task, info in zip(tasks, infos, strict=True):
        state.log(task, "bulk", info)


def run_async_producer(args: argparse.Namespace) -> int:
    state = _Producing(args)
    state.book.write("proc_start", role="producer", flavour="async")

    async def main() -> None:
        client = AsyncClient.from_url(args.url, namespace=args.ns)
        try:
            while time.time() < state.until:
                await acall_burst(client, state.book, state.windows.burst())
                _, tasks = state.planner.next(bulk=False)
                task = tasks[0]
                try:
                    info = await client.enqueue(task.type, task.payload, **_enqueue_args(task))
                except RqSchedError as exc:
                    state.log(task, "async", exc)
                else:
                    state.log(task, "async", info)
                await asyncio.sleep(state.pause * state.planner.rng.uniform(0.5, 1.5))
        finally:
            await client.close()

    asyncio.run(main())
    state.book.write("proc_exit", role="producer")
    return 0


# -- scheduler ----------------------------------------------------------------------------------


class _TickRecorder(logging.Handler):
    """Writes the scheduler's own "enqueued" debug records to the ledger."""

    def __init__(self, book: Ledger) -> None:
        super().__init__(logging.DEBUG)
        self.book = book

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "entry %r: enqueued %s" and isinstance(record.args, tuple):
            self.book.write("tick", entry=record.args[0], id=record.args[1])


def run_scheduler(args: argparse.Namespace) -> int:
    book = Ledger(args.ledger, args.name)
    book.write("proc_start", role="scheduler")
    logger = logging.getLogger("rq_sched.scheduler.scheduler")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(_TickRecorder(book))
    scheduler = Scheduler.from_url(
        args.url,
        namespace=args.ns,
        tolerance=30.0,  # faults are shorter: a tick delayed by one must still be enqueued
        history_length=100,
        heartbeat_interval=1.0,
    )
    for name, spec in (("every-1s", "@every 1s"), ("cron-2s", "*/2 * * * * *")):
        scheduler.add(name, spec, handlers.TICK, queue="cron", retention=3600, max_retry=3)
    _on_signals(lambda: scheduler.stop(0))
    scheduler.run()
    book.write("proc_exit", role="scheduler")
    return 0


def _on_signals(stop: Callable[[], None]) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


# -- operator -----------------------------------------------------------------------------------

OPS = ("cancel", "delete", "archive", "run", "pause", "bulk", "flow")
"""What the operator does (``--ops`` picks a subset; the rolls stay the same per seed)."""
SINGLE = {
    "cancel": ("active",),
    "delete": ("pending", "scheduled", "retry", "archived"),
    "archive": ("pending", "scheduled", "retry"),
    "run": ("scheduled", "retry", "archived"),
}
FLOWS = (
    FlowLimits(concurrency=4),
    FlowLimits(rate="200/s", burst=20),
    FlowLimits(rate="300/s", burst=30, concurrency=6),
    FlowLimits(key_concurrency=1, key_hold_on_retry=True),
    FlowLimits(key_concurrency=2, key_rate="40/s", key_burst=4),
    FlowLimits(rate="300/s", burst=30, key_concurrency=1),
    FlowLimits(
        key_concurrency=1,
        key_hold_on_retry=True,
        keys={
            "tenant:0": KeyLimits(concurrency=3, weight=3),
            "tenant:1": KeyLimits(rate="30/s", burst=3, weight=2),
            "tenant:2": KeyLimits(),
        },
    ),
    FlowLimits(types={handlers.THREAD: TypeLimits(concurrency=2, weight=2)}),
    FlowLimits(
        rate="300/s",
        burst=30,
        types={
            handlers.ASYNC: TypeLimits(rate="60/s", burst=6, concurrency=4),
            handlers.PROCESS: TypeLimits(rate="20/s"),
        },
    ),
    None,
)
"""Flow limits the operator sets on the "chaos" queue (None removes them): the queue's, per key
(defaults, and keys with limits and weights of their own), and per task type (a limited type's
tasks, keyed or not, move to their type's lane)."""
BULK = (
    ("chaos", "archived", "run"),
    ("chaos", "retry", "archive"),
    ("chaos", "scheduled", "run"),
    ("chaos-doomed", "pending", "delete"),
    ("chaos-doomed", "scheduled", "delete"),
    ("chaos-doomed", "retry", "archive"),
)


class Operator:
    """Acts on tasks the way a person at the dashboard would, through Inspector and the CLI."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.book = Ledger(args.ledger, args.name)
        self.rng = random.Random(args.seed)
        self.inspector = Inspector.from_url(args.url, namespace=args.ns, archive_limits=BIG_ARCHIVE)
        # Flow changes roll on their own generator, so the other rolls stay the same per seed.
        self.flow_rng = random.Random(args.seed * 7919 + 18)

    def step(self) -> None:
        roll = self.rng.random()
        allowed = self.args.ops
        if roll < 0.08:
            if "pause" in allowed:
                self.pause()
        elif roll < 0.18:
            queue, state, action = self.rng.choice(BULK)
            if "bulk" in allowed:
                self.bulk(queue, state, action)
        else:
            action = self.rng.choice(["cancel", "cancel", "delete", "archive", "run"])
            if action in allowed:
                self.single(action)

    def flow_step(self, *, first: bool = False, limits: FlowLimits | None = None) -> None:
        """Now and then change the flow limits of the "chaos" queue at run time (a cap, a
        rate, both, per-key limits, none): whatever they are, no task may be lost or run twice
        for it. The first step sets strict per-key order, so every soak runs keyed tasks under
        per-key limits for a while."""
        if "flow" not in self.args.ops:
            return
        if limits is None:
            if not first and self.flow_rng.random() >= 0.05:
                return
            limits = FLOWS[3] if first else self.flow_rng.choice(FLOWS)
        try:
            self.inspector.set_flow("chaos", limits)
            res = "ok"
        except RqSchedError as exc:
            res = type(exc).__name__
        self.book.write("flow", q="chaos", limits=repr(limits), res=res)

    def single(self, action: str) -> None:
        queue = self.rng.choice(["chaos", "chaos", "chaos-doomed", "chaos-sharded"])
        state = self.rng.choice(SINGLE[action])
        try:
            page = self.inspector.list_tasks(queue, state, size=50)
        except RqSchedError as exc:
            self.book.write("op", action="list", q=queue, res="error", err=type(exc).__name__)
            return
        if not page.tasks:
            return
        row = self.rng.choice(page.tasks)
        # The action names the queue (a sharded one finds the shard); the record names where
        # the task lives, as its enqueue record does.
        task_id, where = row.id, row.queue
        via_cli = self.rng.random() < 0.2
        started = time.time()
        if via_cli:
            code, out = self.cli("task", queue, task_id, action)
            self.book.write(
                "op",
                action=action,
                id=task_id,
                q=where,
                state=state,
                via="cli",
                res="ok" if code == 0 else "error",
                err=out[-200:],
                t0=started,
            )
            return
        try:
            reply: object = {
                "cancel": self.inspector.cancel_task,
                "delete": self.inspector.delete_task,
                "archive": self.inspector.archive_task,
                "run": self.inspector.run_task,
            }[action](queue, task_id)
        except RqSchedError as exc:
            self.book.write(
                "op",
                action=action,
                id=task_id,
                q=where,
                state=state,
                res="error",
                err=type(exc).__name__,
                t0=started,
            )
            return
        self.book.write(
            "op",
            action=action,
            id=task_id,
            q=where,
            state=state,
            res="ok",
            heard=reply if isinstance(reply, int) else None,
            t0=started,
        )

    def bulk(self, queue: str, state: str, action: str) -> None:
        started = time.time()
        if self.rng.random() < 0.3:
            code, out = self.cli("tasks", queue, state, "--bulk", action)
            self.book.write(
                "op",
                action="bulk_" + action,
                q=queue,
                state=state,
                via="cli",
                res="ok" if code == 0 else "error",
                err=out[-200:],
                t0=started,
            )
            return
        try:
            result = self.inspector.bulk(queue, state, action)
        except RqSchedError as exc:
            self.book.write(
                "op",
                action="bulk_" + action,
                q=queue,
                state=state,
                res="error",
                err=type(exc).__name__,
                t0=started,
            )
            return
        self.book.write(
            "op",
            action="bulk_" + action,
            q=queue,
            state=state,
            res="ok",
            done=result.done,
            skipped=result.skipped,
            t0=started,
        )

    def pause(self) -> None:
        queue = self.rng.choice(["chaos", "chaos-doomed", "cron", "chaos-sharded"])
        for action, wait in (("pause", self.rng.uniform(0.3, 2.0)), ("unpause", 0.0)):
            for _ in range(20):  # an unpause must not be lost to a Redis outage
                try:
                    getattr(self.inspector, action)(queue)
                except RqSchedError as exc:
                    self.book.write(
                        "op", action=action, q=queue, res="error", err=type(exc).__name__
                    )
                    time.sleep(0.5)
                    continue
                self.book.write("op", action=action, q=queue, res="ok")
                break
            time.sleep(wait)

    def cli(self, *argv: str) -> tuple[int, str]:
        command = [sys.executable, "-m", "rq_sched.cli", *argv]
        command += ["--url", self.args.url, "--namespace", self.args.ns]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        except subprocess.TimeoutExpired:
            return 124, "timed out"
        return done.returncode, (done.stdout + done.stderr).strip()


def run_operator(args: argparse.Namespace) -> int:
    operator = Operator(args)
    operator.book.write("proc_start", role="operator")
    try:
        operator.flow_step(first=True)
        # Every soak also runs a while under keys with limits and weights of their own, and
        # under per-type limits, whatever the random changes pick.
        start = time.time()
        forced = [(start + (args.until - start) * k / 3, FLOWS[i]) for k, i in ((1, 6), (2, 8))]
        while time.time() < args.until:
            operator.step()
            if forced and time.time() >= forced[0][0]:
                operator.flow_step(limits=forced.pop(0)[1])
            operator.flow_step()
            time.sleep(operator.rng.uniform(0.2, 0.8) / args.rate)
    finally:
        operator.inspector.close()
        operator.book.write("proc_exit", role="operator")
    return 0


def _watch_parent() -> None:
    """Stop when the orchestrator is gone (it was killed): nobody else would stop us."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)  # a graceful stop first
        time.sleep(15.0)
        os._exit(3)

    threading.Thread(target=watch, name="chaos-parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos_lib.roles")
    sub = parser.add_subparsers(dest="role", required=True)
    worker = sub.add_parser("worker")
    _common(worker)
    worker.add_argument("--skew", type=float, default=0.0)
    worker.add_argument("--lease", type=float, default=2.0)
    worker.add_argument("--concurrency", type=int, default=8)
    worker.add_argument("--processes", type=int, default=0)
    for name in ("producer", "async-producer", "operator"):
        role = sub.add_parser(name)
        _common(role)
        role.add_argument("--rate", type=float, default=20.0)
        if name == "operator":
            role.add_argument("--ops", type=lambda t: set(t.split(",")), default=set(OPS))
    _common(sub.add_parser("scheduler"))
    args = parser.parse_args(argv)
    _watch_parent()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    runner = {
        "worker": run_worker,
        "producer": run_producer,
        "async-producer": run_async_producer,
        "scheduler": run_scheduler,
        "operator": run_operator,
    }[args.role]
    return runner(args)


if __name__ == "__main__":
    sys.exit(main())
