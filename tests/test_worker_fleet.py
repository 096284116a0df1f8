"""``rq-sched worker --workers N`` (issue #15): N worker processes under one command, sharing
the queues and the shutdown, each started again when it dies."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import redis

from rq_sched import Client, Inspector
from tests.worker_support import cli_worker, stop_process, texts, wait_until


def _pids(inspector: Inspector) -> set[int]:
    return {status.info.pid for status in inspector.servers()}


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for whoever adopted it to reap it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_n_workers_share_the_queue_come_back_after_a_kill_and_stop_together(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    inspector = Inspector(r, namespace=namespace)
    proc = cli_worker(redis_url, namespace, "--workers", "3", "--concurrency", "2", "--lease", "2")
    try:
        wait_until(lambda: len(_pids(inspector)) == 3, timeout=30, what="3 workers serving")
        first = _pids(inspector)
        assert proc.pid not in first  # the command supervises; the workers are its children
        log = f"{namespace}:log"
        client = Client(r, namespace=namespace)
        ids = {client.enqueue("rec:push", {"url": redis_url, "log": log, "sleep": 0.05}).id
               for _ in range(40)}  # fmt: skip
        wait_until(lambda: r.llen(log) >= 40, timeout=30, what="40 tasks run")
        assert set(texts(r.lrange(log, 0, -1))) == ids

        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(_pids(inspector) - first) == 1, timeout=30, what="a new worker")
        assert not _alive(victim)
    finally:
        code, err = stop_process(proc, signal.SIGTERM, timeout=40)
    assert code == 0, err
    assert "exited with signal SIGKILL" in err
    for pid in first | _pids(inspector):
        assert not _alive(pid), f"worker {pid} outlived its command"


def test_workers_stop_gracefully_when_their_command_is_killed(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    inspector = Inspector(r, namespace=namespace)
    proc = cli_worker(redis_url, namespace, "--workers", "2")
    try:
        wait_until(lambda: len(_pids(inspector)) == 2, timeout=30, what="2 workers serving")
        workers = _pids(inspector)
        proc.kill()  # kill -9: no chance to pass a signal on
        proc.wait(10)
        # A graceful shutdown removes each server's record; a killed worker's would stay.
        wait_until(lambda: not inspector.servers(), timeout=30, what="both workers shut down")
        wait_until(lambda: not any(_alive(pid) for pid in workers), timeout=10, what="exited")
    finally:
        stop_process(proc)
