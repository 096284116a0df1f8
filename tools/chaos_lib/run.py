"""The orchestrator: start Redis, the proxy and every process; inject the faults; let the
system settle; take the snapshot the audit reads; stop everything it started, by pid.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from chaos_lib.faults import Injector
from chaos_lib.ledger import Ledger
from chaos_lib.ledger import read as read_ledger
from chaos_lib.plan import ALL_PHYSICAL, LEASE, QUEUES, SHARDED, Fault, fault_schedule
from chaos_lib.procs import Proc, wait_all
from chaos_lib.proxy import Proxy
from chaos_lib.roles import BIG_ARCHIVE, OPS
from chaos_lib.windows import read_keys
from rq_sched import Inspector, RqSchedError
from rq_sched.keys import QueueKeys
from rq_sched.local_redis import RedisServer, free_port

SCHEDULER_CATCH_UP = 15.0
"""Most seconds the settle waits for the schedulers to enqueue the current ticks."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """One soak's parameters (the CLI's options)."""

    seed: int
    duration: float
    aof: str
    kinds: tuple[str, ...]
    run_dir: Path
    rate: float = 4.0
    """Producer iterations per second, per producer (about 2.7 tasks each)."""
    mean_gap: float = 2.0
    """Mean seconds between two faults."""
    settle_timeout: float = 45.0
    workers: int = 3
    concurrency: int = 8
    """Handler slots per worker process (the soak's throughput grows with it)."""
    cli_worker: bool = True
    ops: tuple[str, ...] = OPS


@dataclass
class Snapshot:
    """What the audit needs from the system once it settled."""

    settled: bool
    settle_started: float
    sched_stopped: float
    taken_at: float
    queues: dict[str, dict[str, Any]] = field(default_factory=dict)
    servers: list[dict[str, Any]] = field(default_factory=list)
    worker_pids: list[int] = field(default_factory=list)
    windows: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The debounce and throttle keys left (``windows.read_keys``)."""


class Soak:
    """Runs one soak; :meth:`run` returns the snapshot, the ledger is in ``run_dir``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.namespace = f"chaos{uuid.uuid4().hex[:6]}"
        self.run_dir = settings.run_dir
        self.ledger = Ledger(self.run_dir / "ledger", "orchestrator")
        fsync = ["--appendfsync", settings.aof, "--auto-aof-rewrite-percentage", "0"]
        self.redis = RedisServer(self.run_dir / "redis", appendonly=True, extra_args=fsync)
        self.proxy = Proxy(free_port(), 0)
        self.procs: dict[str, Proc] = {}
        self.direct: redis.Redis = redis.Redis()
        self.inspector: Inspector
        self.injector = Injector(self)
        self.schedule: list[Fault] = []
        self.redis_procs: list[subprocess.Popen[bytes] | None] = []
        """Every redis-server this soak started, all stopped at the end (a child not yet
        reaped keeps its pid, so this never signals a stranger)."""

    # -- lifecycle ----------------------------------------------------------------------------

    def run(self) -> Snapshot:
        try:
            self._start()
            self._chaos()
            return self._settle()
        finally:
            self._teardown()

    def _start(self) -> None:
        self.redis.start()
        self.redis_procs.append(self.redis.proc)
        self.proxy.upstream_port = self.redis.port
        self.proxy.start()
        self.direct = redis.Redis(port=self.redis.port, socket_timeout=10, socket_connect_timeout=1)
        self.inspector = Inspector(
            self.direct, namespace=self.namespace, archive_limits=BIG_ARCHIVE
        )
        for queue, n in SHARDED.items():  # before any worker starts: it reads them then
            self.inspector.set_shards(queue, n)
        self.ledger.write(
            "run",
            seed=self.settings.seed,
            aof=self.settings.aof,
            ns=self.namespace,
            kinds=list(self.settings.kinds),
            lease=LEASE,
            duration=self.settings.duration,
        )
        until = time.time() + self.settings.duration
        for proc in self._plan_procs(until):
            self.procs[proc.name] = proc
            proc.start()
        workers = [n for n, p in self.procs.items() if p.role == "worker"]
        schedulers = [n for n, p in self.procs.items() if p.role == "scheduler"]
        self.schedule = fault_schedule(
            self.settings.seed,
            self.settings.duration,
            self.settings.kinds,
            workers=workers,
            schedulers=schedulers,
            mean_gap=self.settings.mean_gap,
        )
        (self.run_dir / "schedule.json").write_text(
            json.dumps([f.__dict__ for f in self.schedule], indent=1)
        )

    def _plan_procs(self, until: float) -> list[Proc]:
        s = self.settings
        proxy_url = f"redis://127.0.0.1:{self.proxy.port}/0"
        base = [
            "--url",
            proxy_url,
            "--ns",
            self.namespace,
            "--ledger",
            str(self.run_dir / "ledger"),
        ]

        def role(name: str, kind: str, *extra: str, seed: int = 0) -> Proc:
            argv = [
                "-m",
                "chaos_lib.roles",
                kind,
                *base,
                "--name",
                name,
                "--seed",
                str(s.seed * 1000 + seed),
                "--until",
                str(until),
                *extra,
            ]
            return Proc(name, kind.replace("async-", ""), argv, self.run_dir, self.ledger)

        procs = [
            role(
                f"w{i + 1}",
                "worker",
                "--lease",
                str(LEASE),
                "--concurrency",
                str(s.concurrency),
                *(("--processes", "2") if i == 1 else ()),
            )
            for i in range(s.workers)
        ]
        if s.cli_worker:
            queues = ",".join(f"{q}={w}" for q, w in QUEUES.items())
            argv = [
                "-m",
                "rq_sched.cli",
                "worker",
                "chaos_lib.handlers:router",
                "--url",
                proxy_url,
                "--namespace",
                self.namespace,
                "--queues",
                queues,
                "--lease",
                str(LEASE),
                "--concurrency",
                str(s.concurrency),
                "--shutdown-timeout",
                "2",
                # The same archive as the other servers: the default 10,000 would trim theirs.
                "--archive-max-size",
                str(BIG_ARCHIVE.max_size),
                "--archive-max-age",
                str(BIG_ARCHIVE.max_age_s),
            ]
            procs.append(Proc("wcli", "worker", argv, self.run_dir, self.ledger))
        procs += [role(f"s{i + 1}", "scheduler") for i in range(2)]
        rate = str(s.rate)
        procs += [
            role("p1", "producer", "--rate", rate, seed=1),
            role("p2", "producer", "--rate", rate, seed=2),
            role("pa", "async-producer", "--rate", rate, seed=3),
            role("op", "operator", "--rate", "1", "--ops", ",".join(s.ops), seed=4),
        ]
        return procs

    # -- the chaos phase ----------------------------------------------------------------------

    def _chaos(self) -> None:
        """Begin each fault at its planned time and undo it ``hold`` seconds later.

        Each target (a process, Redis, the proxy, the store) has its own thread that runs its
        begins and undos in order, so one slow step — a SIGTERM that takes 6 s, a write to a
        Redis that is down — delays only its own target: a Redis kill is undone after its hold
        even while a worker takes its time to stop. (One loop for all of them let faults pile
        up: Redis stayed down 21 s instead of 1.5 s, and both schedulers were gone for longer
        than their tolerance, which the tick audit then reported as missed ticks.)
        """
        start = time.monotonic()
        order = itertools.count()
        events: list[tuple[float, int, str, Callable[[], None]]] = []
        lock = threading.Lock()
        lanes: dict[str, ThreadPoolExecutor] = {}
        running: list[Future[None]] = []

        def submit(target: str, action: Callable[[], None]) -> None:
            if target not in lanes:
                lanes[target] = ThreadPoolExecutor(1, thread_name_prefix=f"fault-{target}")
            running.append(lanes[target].submit(action))

        def beginner(fault: Fault) -> Callable[[], None]:
            def begin() -> None:
                undo = self.injector.begin(fault)
                if undo is not None:
                    undo.is_undo = True  # type: ignore[attr-defined]
                    with lock:
                        due = time.monotonic() + fault.hold
                        heapq.heappush(events, (due, next(order), fault.target, undo))

            return begin

        for fault in self.schedule:
            events.append((start + fault.at, next(order), fault.target, beginner(fault)))
        heapq.heapify(events)
        end = start + self.settings.duration
        try:
            while time.monotonic() < end:
                with lock:
                    due_now = []
                    while events and events[0][0] <= time.monotonic():
                        due_now.append(heapq.heappop(events))
                for _, _, target, action in due_now:
                    submit(target, action)
                self._check_lanes(running)
                self._supervise()
                time.sleep(0.05)
            # Begin nothing new; wait for the begins under way, then undo what is still held.
            for lane in lanes.values():
                lane.submit(lambda: None).result()
            with lock:
                held = [e for e in sorted(events) if getattr(e[3], "is_undo", False)]
                events.clear()
            for _, _, target, undo in held:
                submit(target, undo)
        finally:
            for lane in lanes.values():
                lane.shutdown(wait=True)
        self._check_lanes(running)

    @staticmethod
    def _check_lanes(running: list[Future[None]]) -> None:
        """Raise what a fault's begin or undo raised (an injector bug, not a fault)."""
        for future in [f for f in running if f.done()]:
            running.remove(future)
            future.result()

    def _supervise(self) -> None:
        """Restart a process that died without a fault: a crash is a finding, not a fault."""
        for proc in self.procs.values():
            if proc.held or proc.popen is None or proc.alive():
                continue
            if proc.role in ("producer", "operator"):
                continue  # they end at --until
            self.ledger.write(
                "proc_died", name=proc.name, child=proc.pid, code=proc.popen.returncode
            )
            proc.start()

    def redis_up(self) -> bool:
        return self.redis.proc is not None and self.redis.proc.poll() is None

    def restart_redis(self) -> None:
        for _ in range(3):
            if self.redis_up():
                break
            try:
                self.redis.start()
                self.redis_procs.append(self.redis.proc)
                break
            except (RuntimeError, TimeoutError, OSError) as exc:
                self.ledger.write("redis_restart_failed", error=str(exc))
                time.sleep(0.5)
        self.ledger.write("redis_up", t=time.time())

    # -- settling -----------------------------------------------------------------------------

    def _settle(self) -> Snapshot:
        began = time.time()
        self.ledger.write("settle", phase="begin")
        if not self.redis_up():
            self.restart_redis()
        with contextlib.suppress(redis.RedisError):
            self.direct.client_unpause()
        clients = [p for p in self.procs.values() if p.role in ("producer", "operator")]
        wait_all(clients, 40.0)
        for proc in clients:
            proc.kill_groups()
        for queue in QUEUES:
            self._retry(lambda q=queue: self.inspector.unpause(q))  # type: ignore[misc]
            if queue not in SHARDED:  # a sharded queue takes no flow limits
                self._retry(lambda q=queue: self.inspector.set_flow(q, None))  # type: ignore[misc]
        # A scheduler cut off at the end of the chaos (a blackholed connection takes its socket
        # timeout, 10 s, to notice) catches up on missed ticks within its tolerance once it
        # reaches Redis again: let it, before it is stopped, rather than count them as missed.
        caught_up = self._wait_ticks_current(time.monotonic() + SCHEDULER_CATCH_UP)
        self.ledger.write("settle", phase="ticks current" if caught_up else "ticks behind")
        schedulers = [p for p in self.procs.values() if p.role == "scheduler"]
        for proc in schedulers:
            proc.holds += 1  # stopped for good: the supervisor must not restart them
            proc.signal(signal.SIGTERM)
        wait_all(schedulers, 10.0)
        sched_stopped = time.time()
        self.ledger.write("settle", phase="schedulers stopped")
        settled = self._wait_quiet(time.monotonic() + self.settings.settle_timeout)
        time.sleep(6.0)  # heartbeats (every 1 s; 5 s for `rq-sched worker`) catch up
        self.ledger.write("settle", phase="settled" if settled else "timed out")
        return self._snapshot(settled, began, sched_stopped)

    def _wait_ticks_current(self, deadline: float) -> bool:
        """Wait until a scheduler has enqueued the ``every-1s`` tick of 2 s ago or later."""
        while True:
            want = (int(time.time()) - 2) * 1000
            ticks = (
                int(ev["id"].rsplit(":", 1)[1])
                for ev in read_ledger(self.run_dir / "ledger")
                if ev["ev"] == "tick" and ev["id"].startswith("cron:every-1s:")
            )
            if max(ticks, default=0) >= want:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)

    def _retry(self, action: Callable[[], object]) -> None:
        for _ in range(20):
            try:
                action()
                return
            except (RqSchedError, redis.RedisError):
                time.sleep(0.5)

    def _wait_quiet(self, deadline: float) -> bool:
        next_note = 0.0
        while time.monotonic() < deadline:
            self._supervise()
            try:
                left = self._left()
            except redis.RedisError as exc:
                left = {"error": str(exc)}
            if not any(left.values()):
                return True
            if time.monotonic() >= next_note:  # why it is not quiet yet, for the record
                self.ledger.write("settle", phase="waiting", left=left)
                next_note = time.monotonic() + 5.0
            time.sleep(0.5)
        return False

    def _left(self) -> dict[str, Any]:
        """What still keeps each queue busy (pending, active, retry, due scheduled)."""
        soon = int((time.time() + 1.0) * 1000)
        pipe = self.direct.pipeline(transaction=False)
        for queue in ALL_PHYSICAL:
            keys = QueueKeys(self.namespace, queue)
            pipe.llen(keys.pending)
            pipe.zcard(keys.lease)
            pipe.zcard(keys.retry)
            pipe.zcount(keys.scheduled, "-inf", soon)
            pipe.zcard(keys.keyed[0])  # keyed ready tasks are pending too
        counts = pipe.execute()
        return {
            q: counts[i * 5 : i * 5 + 5]
            for i, q in enumerate(ALL_PHYSICAL)
            if any(counts[i * 5 : i * 5 + 5])
        }

    def _snapshot(self, settled: bool, began: float, sched_stopped: float) -> Snapshot:
        snap = Snapshot(settled, began, sched_stopped, time.time())
        for queue in ALL_PHYSICAL:
            keys = QueueKeys(self.namespace, queue)
            pipe = self.direct.pipeline(transaction=False)
            pipe.hgetall(keys.msg)
            pipe.lrange(keys.pending, 0, -1)
            for key in (keys.lease, keys.scheduled, keys.retry, keys.archived, keys.completed):
                pipe.zrange(key, 0, -1, withscores=True)
            pipe.get(keys.processed)
            pipe.get(keys.failed)
            pipe.hget(keys.limits, "trimmed")
            pipe.zrange(keys.keyed[0], 0, -1)
            pipe.hgetall(keys.keyed[3])
            (
                msg,
                pending,
                lease,
                scheduled,
                retry,
                archived,
                completed,
                processed,
                failed,
                trimmed,
                keyed_ready,
                keyed_state,
            ) = pipe.execute()
            locks: dict[str, str] = {}
            for key in self.direct.scan_iter(match=keys.unique("*"), count=1000):
                holder: Any = self.direct.get(key) or b""
                locks[key.decode()] = holder.decode(errors="replace")
            snap.queues[queue] = {
                "msg": msg,
                # A keyed ready task's member is "<key digest 16><seq 12><id>".
                "pending": [i.decode() for i in pending] + [m.decode()[28:] for m in keyed_ready],
                # Per-key counts and parking left once settled (lua/includes/keyed.lua).
                "keyed_state": {
                    k.decode(): v.decode()
                    for k, v in keyed_state.items()
                    if k.decode()[:2] in ("n:", "a:", "p:", "h:", "t:")
                },
                "lease": {i.decode(): s for i, s in lease},
                "scheduled": {i.decode(): s for i, s in scheduled},
                "retry": {i.decode(): s for i, s in retry},
                "archived": {i.decode(): s for i, s in archived},
                "completed": {i.decode(): s for i, s in completed},
                "processed": int(processed or 0),
                "failed": int(failed or 0),
                "trimmed": int(trimmed or 0),
                "locks": locks,
            }
        for server in self.inspector.servers():
            snap.servers.append(
                {
                    "id": server.info.id,
                    "pid": server.info.pid,
                    "active": server.info.active,
                    "status": server.info.status,
                    "workers": [w.task_id for w in server.workers],
                }
            )
        snap.worker_pids = [p.pid for p in self.procs.values() if p.role == "worker" and p.alive()]
        snap.windows = read_keys(self.direct, self.namespace)
        return snap

    def _teardown(self) -> None:
        procs = list(self.procs.values())
        for proc in procs:
            proc.signal(signal.SIGTERM)
        wait_all(procs, 8.0)
        for proc in procs:
            proc.kill_groups()
        self.proxy.stop()
        with contextlib.suppress(Exception):
            self.direct.close()
        self.redis.stop(kill=True)
        for server in self.redis_procs:
            if server is not None and server.poll() is None:
                server.kill()
                server.wait(10)
