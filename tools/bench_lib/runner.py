"""Running a system's processes (producer actions, worker processes) and reading Redis.

Worker processes start in their own session and are stopped by their process-group id (the
id of the process we started), so pools and forked children stop with them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import redis

from bench_lib import envs
from bench_lib.probe import DONE, SPAN
from bench_lib.systems import CONCURRENCY, System

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A producer or worker of a benchmarked system failed."""


class Runner:
    """Starts one system's processes against one Redis and reads the probe's keys."""

    def __init__(self, url: str, logs: Path) -> None:
        self.url = url
        self.r = redis.Redis.from_url(url)
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self._procs: list[subprocess.Popen[bytes]] = []

    def fresh(self) -> None:
        """An empty database, no cached scripts: each scenario starts from nothing."""
        self.r.flushall()
        self.r.script_flush()

    def env(self, system: System, probe: str, handler: str = "noop") -> dict[str, str]:
        return envs.child_env(
            {
                "BENCH_REDIS_URL": self.url,
                "BENCH_PROBE": probe,
                "BENCH_HANDLER": handler,
                "BENCH_CONCURRENCY": str(CONCURRENCY),
                **system.worker_env,
            }
        )

    def produce(self, system: System, action: str, timeout: float, **params: Any) -> dict[str, Any]:
        """Run one producer action in the system's interpreter; its JSON answer.

        Raises:
            BenchError: the action failed or ran past ``timeout`` seconds.
        """
        argv = system.producer_argv(action, json.dumps(params))
        try:
            proc = subprocess.run(
                argv,
                cwd=envs.ROOT,
                env=self.env(system, "count"),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{system.name} {action}: no answer within {timeout:.0f} s") from exc
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
            raise BenchError(f"{system.name} {action} failed (exit {proc.returncode}):\n{tail}")
        result: dict[str, Any] = json.loads(lines[-1])
        if "error" in result:
            raise BenchError(f"{system.name} {action}: {result['error']}")
        return result

    @contextmanager
    def workers(
        self,
        system: System,
        count: int = 1,
        probe: str = "count",
        handler: str = "noop",
        argv: list[str] | None = None,
    ) -> Iterator[None]:
        """``count`` worker processes of ``system`` (started with ``argv`` instead of the
        system's worker command if given) while the block runs; ``handler``: "noop" or
        "call" (the one-Redis-call handler, see bench_lib.probe)."""
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for i in range(count):
                log = (self.logs / f"{system.name}-worker{i}.log").open("ab")
                procs.append(
                    subprocess.Popen(
                        argv or system.worker_argv(self.url),
                        cwd=envs.ROOT,
                        env=self.env(system, probe, handler),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
                log.close()
            self._procs = procs
            yield
        finally:
            self._procs = []
            stop(procs)

    def done(self) -> int:
        return int(self.r.get(DONE) or 0)

    def wait_done(
        self,
        n: int,
        budget: float,
        startup: float = 60.0,
        on_first: Callable[[], None] | None = None,
    ) -> int:
        """Wait for ``n`` handler starts: ``startup`` s for the first, then ``budget`` s more;
        ``on_first`` is called as soon as the first start is seen (within 10 ms of it)."""
        deadline = time.monotonic() + startup
        done = self.done()
        while done == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
            done = self.done()
        if on_first is not None:
            on_first()
        deadline = time.monotonic() + budget
        while done < n and time.monotonic() < deadline:
            time.sleep(0.02)
            done = self.done()
        time.sleep(0.03)  # the probes' last flush
        return self.done()

    def span(self) -> tuple[float, float]:
        """First and last handler start (epoch seconds) over every worker process."""
        pairs: list[tuple[bytes, float]] = self.r.zrange(SPAN, 0, -1, withscores=True)  # type: ignore[assignment]
        scores = dict(pairs)
        return float(scores.get(b"first", 0.0)), float(scores.get(b"last", 0.0))

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time (user + system) used so far by the running worker processes (each started
        in a session of its own: every process of those sessions, with the children they
        reaped) and by redis-server (INFO cpu)."""
        sessions = {proc.pid for proc in self._procs}
        workers = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            if int(fields[3]) in sessions:  # field 6 of stat: the session id
                workers += sum(int(v) for v in fields[11:15]) / _CLOCK_TICKS
        info = self.r.info("cpu")
        return workers, float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def ping_floor(self, n: int = 5000) -> float:
        """PINGs per second from one redis-py connection: the round-trip floor of this machine,
        against which every per-call figure can be read."""
        self.r.ping()
        start = time.perf_counter()
        for _ in range(n):
            self.r.ping()
        return n / (time.perf_counter() - start)

    def ceiling(self, n: int, concurrency: int = CONCURRENCY) -> dict[str, float]:
        """The one-call handler body in a bare loop (bench_lib.ceiling) in the project's
        interpreter, with Redis CPU µs per call added.

        Raises:
            BenchError: the loop failed or took over a minute.
        """
        redis_before = self.cpu_seconds()[1]
        try:
            proc = subprocess.run(
                [envs.python_for("project"), "-m", "bench_lib.ceiling", str(n), str(concurrency)],
                cwd=envs.ROOT,
                env=envs.child_env({"BENCH_REDIS_URL": self.url}),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError("the ceiling loop gave no answer within 60 s") from exc
        if proc.returncode != 0:
            raise BenchError(f"the ceiling loop failed: {proc.stderr.strip()[-300:]}")
        result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
        result["redis_cpu_us"] = (self.cpu_seconds()[1] - redis_before) / n * 1e6
        return result

    def command_calls(self) -> dict[str, int]:
        """Calls per command so far (INFO commandstats), without INFO itself."""
        stats = self.r.info("commandstats")
        return {
            name.removeprefix("cmdstat_"): int(v["calls"])
            for name, v in stats.items()
            if name != "cmdstat_info"
        }


def stop(procs: list[subprocess.Popen[bytes]], grace: float = 3.0) -> None:
    """SIGTERM each process group we started, then SIGKILL what is left after ``grace``."""
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        with suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.1, deadline - time.monotonic()))
        _signal_group(proc, signal.SIGKILL)
        proc.wait()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
