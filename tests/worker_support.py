"""Helpers for the worker tests: a server running in a background thread, bounded waits, a
thread-safe recorder for what handlers saw, and worker processes started from the CLI.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import redis

from rq_sched import Router, Server
from rq_sched.keys import GlobalKeys, QueueKeys
from tests.polling import wait_until as wait_until  # noqa: PLC0414 - re-exported for the tests

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent

FAST = {
    "lease_duration": 2.0,
    "recover_interval": 0.5,
    "heartbeat_interval": 0.5,
    "shutdown_timeout": 2.0,
}
"""Server options that keep the tests quick (short leases, frequent upkeep)."""


def fast_backoff(attempt: int, error: BaseException, task: object) -> float:
    """A retry backoff for tests: 50 ms."""
    return 0.05


@contextmanager
def running_server(url: str, router: Router, *, namespace: str, **options: Any) -> Iterator[Server]:
    """Run ``Server.serve`` on its own event loop in a thread; stop it gracefully on exit.

    The server is started before the block runs (``server.started``) and is fully stopped
    (``server.stopped``) when the block ends; an error raised by ``serve`` fails the test.
    """
    server = Server.from_url(url, namespace=namespace, **{**FAST, **options})
    errors: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(_serve_and_close(server, router))
        except BaseException as exc:
            errors.append(exc)
            server.started.set()

    thread = threading.Thread(target=main, name=f"rq-sched-test-server {server.id}", daemon=True)
    thread.start()
    assert server.started.wait(10), "server did not start within 10s"
    if errors:
        raise errors[0]
    try:
        yield server
    finally:
        server.stop()
        stopped = server.stopped.wait(30)
        thread.join(10)
        if errors:
            raise errors[0]
        assert stopped, "server did not stop within 30s"
        assert not thread.is_alive(), "server thread still running 10s after the stop"


async def _serve_and_close(server: Server, router: Router) -> None:
    try:
        await server.serve(router)
    finally:
        await server.redis.aclose()


class Recorder:
    """What handlers saw, appended from any thread; tests wait on it without sleeping."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._cond = threading.Condition()

    def add(self, item: Any) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Any]:
        """Block until at least ``count`` items were added; returns a copy of them."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.items) >= count, timeout)
            items = list(self.items)
        assert ok, f"saw {len(items)} of {count} expected items within {timeout}s: {items!r}"
        return items

    def __len__(self) -> int:
        with self._cond:
            return len(self.items)


def texts(values: Iterable[Any]) -> list[str]:
    """Redis replies (ids, list items) as str."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def queue_state(r: redis.Redis, namespace: str, queue: str = "default") -> dict[str, int]:
    """How many ids each structure of ``queue`` holds (messages, pending, leased, ...)."""
    keys = QueueKeys(namespace, queue)
    return {
        "msg": int(r.hlen(keys.msg)),
        "pending": int(r.llen(keys.pending)),
        "lease": int(r.zcard(keys.lease)),
        "scheduled": int(r.zcard(keys.scheduled)),
        "retry": int(r.zcard(keys.retry)),
        "archived": int(r.zcard(keys.archived)),
        "completed": int(r.zcard(keys.completed)),
    }


def wait_subscribed(r: redis.Redis, namespace: str, servers: int = 1) -> None:
    """Wait until ``servers`` cancel listeners are subscribed to the cancel channel."""
    channel = GlobalKeys(namespace).cancel_channel

    def count() -> bool:
        numsub = r.pubsub_numsub(channel)
        return bool(numsub) and int(numsub[0][1]) >= servers

    wait_until(count, what="the cancel listener's subscription")


def cli_worker(
    url: str, namespace: str, *args: str, router: str = "tests.handlers:router"
) -> subprocess.Popen[str]:
    """Start ``python -m rq_sched.cli worker`` as a child process (stderr captured)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "rq_sched.cli", "--log-level", "WARNING", "worker", router,
         "--url", url, "--namespace", namespace, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def wait_server_registered(r: redis.Redis, namespace: str, proc: subprocess.Popen[str]) -> None:
    """Wait until a worker process has written its first heartbeat (it is serving)."""

    def registered() -> bool:
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"worker exited with {proc.returncode}: {err}")
        return bool(r.zcard(GlobalKeys(namespace).servers))

    wait_until(registered, timeout=20, what="the worker's first heartbeat")


def stop_process(
    proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 20
) -> tuple[int, str]:
    """Signal ``proc`` (by pid), wait for it; returns (exit code, stderr). Kills on timeout."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(
            f"process {proc.pid} did not exit {timeout}s after {sig}: {err}"
        ) from None
    return proc.returncode, err


@contextmanager
def monitored(url: str) -> Iterator[list[tuple[str, str]]]:
    """Record, with MONITOR, every command clients send Redis while the block runs, as
    (client address, name) in the order Redis ran them; a script call is named by its script
    (``EVALSHA dequeue``), and what scripts run inside Redis is left out. Reading ends at an
    ``ECHO`` sent after the block, so nothing the block caused is missed however slow the
    reader is."""
    from rq_sched import scripts  # noqa: PLC0415 - only these tests need the script names

    names = {s.sha: s.name for s in scripts.all_scripts()}
    end = f"monitored-end-{os.getpid()}-{threading.get_ident()}"
    seen: list[tuple[str, str]] = []
    conn = redis.Redis.from_url(url)
    monitor = conn.monitor()  # type: ignore[no-untyped-call]
    monitor.__enter__()

    def read() -> None:
        while True:
            reply = monitor.next_command()
            if end in reply["command"]:
                return
            parts = reply["command"].split()
            name = parts[0].upper() if parts else "?"
            if name == "EVALSHA" and len(parts) > 1:
                name = f"EVALSHA {names.get(parts[1].strip(chr(34)), '?')}"
            if reply.get("client_type") != "lua":
                seen.append((f"{reply['client_address']}:{reply['client_port']}", name))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield seen
    finally:
        with redis.Redis.from_url(url) as other:
            other.echo(end)
        reader.join(10)
        monitor.__exit__(None, None, None)
        conn.close()


@contextmanager
def worker_processes(
    url: str, namespace: str, count: int, *args: str
) -> Iterator[list[subprocess.Popen[str]]]:
    """``count`` CLI worker processes (``args`` passed on), stopped at the end; each must exit
    cleanly or have been killed by the test."""
    procs = [cli_worker(url, namespace, *args) for _ in range(count)]
    try:
        yield procs
    finally:
        for proc in procs:
            code, err = stop_process(proc)
            assert code in (0, -signal.SIGKILL), f"worker exited {code}: {err}"


def starts_under_a_rate(
    url: str, r: redis.Redis, namespace: str, limits: Any, *, key: str | None = None
) -> tuple[list[float], int]:
    """Six no-op tasks of type ``rate:one`` (with fairness ``key``) run by one server under
    flow ``limits`` (a rate of 5/s in the callers): their start times (monotonic, sorted) and
    how many dequeue answers held the server back meanwhile."""
    from rq_sched import Client, NewTask, Task  # noqa: PLC0415 - only these tests need them

    starts = Recorder()
    router = Router()

    @router.task("rate:one")
    async def one(task: Task) -> None:
        starts.add(time.monotonic())

    client = Client(r, namespace=namespace)
    client.set_flow("default", limits)
    with running_server(url, router, namespace=namespace, concurrency=10) as server:
        client.enqueue_many(NewTask(type="rate:one", key=key) for _ in range(6))
        seen = sorted(starts.wait_for(6, timeout=10))
        holds = server.processor.fetcher.flow_holds if server.processor else -1
    return seen, holds


def assert_one_start_per_token(what: str, seen: list[float], holds: int) -> None:
    """Starts 200 ms apart (a 5/s rate, less its 20 ms allowance), woken by the token's timer
    (not an idle timeout), with about one held dequeue answer per token (no polling)."""
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    print(f"\n{what}: gaps {[round(g * 1000) for g in gaps]} ms, {holds} held dequeues")
    assert all(g >= 0.15 for g in gaps), gaps
    assert seen[-1] - seen[0] < 2.0
    assert 0 < holds <= 12
