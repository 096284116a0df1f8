"""``rq-sched dev`` smoke test: one command starts a private Redis, a worker, the scheduler and
the dashboard, runs the demo tasks, and stops everything (Redis included) on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO

from rq_sched import Inspector
from rq_sched.local_redis import free_port, process_alive
from tests.worker_support import ROOT, wait_until

BANNER = "rq_sched dev is running"


def _lines(stream: IO[str] | None) -> tuple[queue.Queue[str], threading.Thread]:
    """Lines of ``stream`` as they arrive, read (and closed at EOF) by a daemon thread."""
    assert stream is not None
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        with stream:
            for line in stream:
                lines.put(line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return lines, thread


def _stop(proc: subprocess.Popen[str], sig: int, readers: list[threading.Thread]) -> int:
    """Signal ``proc``, wait for its exit (killing it after 30 s) and for its pipes to drain."""
    proc.send_signal(sig)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    for reader in readers:
        reader.join(10)
    return proc.returncode


def _drain(lines: queue.Queue[str]) -> str:
    out = []
    while not lines.empty():
        out.append(lines.get_nowait())
    return "".join(out)


def _read_banner(lines: queue.Queue[str], proc: subprocess.Popen[str], timeout: float) -> str:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if BANNER in line:
            for _ in range(6):  # the rest of the banner follows at once
                seen.append(lines.get(timeout=5))
            return "".join(seen)
    raise AssertionError(f"no banner within {timeout}s; stdout {''.join(seen)!r}")


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.status), response.read()


def test_dev_runs_everything_processes_the_demo_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rq_sched.cli", "--log-level", "WARNING", "dev",
         "--data-dir", str(tmp_path / "data"), "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    out, out_reader = _lines(proc.stdout)
    err, err_reader = _lines(proc.stderr)
    readers = [out_reader, err_reader]
    try:
        banner = _read_banner(out, proc, timeout=30)
        found = re.search(r"redis +(redis://\S+) +\(pid (\d+)", banner)
        assert found, banner
        url, redis_pid = found.group(1), int(found.group(2))
        assert f"http://127.0.0.1:{port}/" in banner
        status, page = wait_until(lambda: _try_get(f"http://127.0.0.1:{port}/"), what="dashboard")
        assert status == 200
        assert b"<html" in page.lower()
        status, body = _get(f"http://127.0.0.1:{port}/api/queues")
        assert status == 200
        assert json.loads(body)
        inspector = Inspector.from_url(url)
        try:
            wait_until(
                lambda: sum(inspector.queue_info(q).processed for q in inspector.queues()) > 0,
                timeout=20,
                what="demo tasks processed",
            )
        finally:
            inspector.close()
    except BaseException:
        _stop(proc, signal.SIGKILL, readers)
        print("dev stderr:", _drain(err))
        raise
    assert _stop(proc, signal.SIGINT, readers) == 0, _drain(err)
    assert not process_alive(redis_pid), "dev left its redis-server running"


def _try_get(url: str) -> tuple[int, bytes] | None:
    try:
        return _get(url)
    except OSError:
        return None
