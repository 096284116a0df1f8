"""Exactly once with real processes: three ``rq-sched scheduler`` processes on one Redis, per-second
entries, a consumer taking tasks as they come, one scheduler killed with SIGKILL and a replacement
started mid-run. Every tick in the window must be enqueued exactly once.

The run lasts 20 s by default; set RQ_SCHED_SCHEDULER_SOAK_SECONDS (e.g. 120) for a longer one.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from rq_sched import ops, scripts
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.message import decode
from rq_sched.scheduler.cron import parse_spec
from tests.polling import wait_until

SOAK_S = float(os.environ.get("RQ_SCHED_SCHEDULER_SOAK_SECONDS", "20"))
ENTRIES = {
    # name: (spec, timezone, queue)
    "every": ("@every 1s", "UTC", "cron"),
    "seconds": ("* * * * * *", "America/New_York", "cron"),
    "even": ("*/2 * * * * *", "Europe/Berlin", "cron-b"),
}
CLI = [
    sys.executable,
    "-c",
    "import sys; from rq_sched.cli import main; sys.exit(main(sys.argv[1:]))",
]


def config_text() -> str:
    return "".join(
        f'[[entry]]\nname = "{name}"\nspec = "{spec}"\ntype = "t:{name}"\n'
        f'timezone = "{tz}"\nqueue = "{queue}"\n\n'
        for name, (spec, tz, queue) in ENTRIES.items()
    )


class Consumer(threading.Thread):
    """Takes and acknowledges tasks with the worker's own scripts, recording every id seen, so a
    tick enqueued again after its first task was consumed would be counted twice."""

    def __init__(self, url: str, namespace: str) -> None:
        super().__init__(daemon=True)
        self.redis = redis.Redis.from_url(url)
        self.queues = [QueueKeys(namespace, q) for q in sorted({e[2] for e in ENTRIES.values()})]
        self.seen: Counter[str] = Counter()
        self.lateness_ms: list[int] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.wait(0.1):
                self.drain()
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def drain(self) -> None:
        for keys in self.queues:
            while taken := self.take(keys):
                acks = [ops.Ack(task_id, token) for task_id, token in taken]
                scripts.run(self.redis, *ops.done(keys, acks, time.time()))

    def take(self, keys: QueueKeys) -> list[tuple[str, int]]:
        reply = scripts.run(self.redis, *ops.dequeue(keys, 60_000, 100))
        ids = []
        for leased in ops.parse_dequeue(reply):
            task_id = leased.id
            fire_ms = int(task_id.rsplit(":", 1)[1])
            self.lateness_ms.append(decode(leased.data).enqueued_at - fire_ms)
            self.seen[task_id] += 1
            ids.append((task_id, leased.token))
        return ids


def expected_ticks(start_ms: int, end_ms: int) -> set[str]:
    ticks = set()
    for name, (spec, tz, _) in ENTRIES.items():
        schedule, fire = parse_spec(spec, tz), start_ms
        while (fire := schedule.next_after(fire)) <= end_ms:
            ticks.add(f"cron:{name}:{fire}")
    return ticks


def on_grid(task_id: str) -> bool:
    _, name, fire = task_id.split(":")
    spec, tz, _ = ENTRIES[name]
    return parse_spec(spec, tz).next_after(int(fire) - 1) == int(fire)


def start_scheduler(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen([*CLI, "scheduler", *args], stderr=err)


@pytest.mark.slow
@pytest.mark.timeout(SOAK_S + 90)
def test_three_scheduler_processes_enqueue_every_tick_exactly_once(
    tmp_path: Path, redis_url: str, r: redis.Redis, namespace: str
) -> None:
    config = tmp_path / "schedule.toml"
    config.write_text(config_text())
    args = ["--url", redis_url, "--namespace", namespace, "--config", str(config)]
    procs = [start_scheduler(args, tmp_path / f"scheduler{i}.log") for i in range(3)]
    consumer = Consumer(redis_url, namespace)
    consumer.start()
    try:
        wait_until(
            lambda: r.zcard(GlobalKeys(namespace).schedulers) >= 3,
            timeout=20,
            what="three schedulers' heartbeats",
        )
        start_ms = int(time.time() * 1000) + 500
        time.sleep(SOAK_S / 3)
        procs[0].send_signal(signal.SIGKILL)  # by pid; no chance to clean up
        assert procs[0].wait(10) == -signal.SIGKILL
        time.sleep(SOAK_S / 3)
        procs.append(start_scheduler(args, tmp_path / "scheduler3.log"))
        time.sleep(SOAK_S / 3)
        end_ms = int(time.time() * 1000) - 2000  # ticks older than this must be in by now
        for proc in procs[1:]:
            proc.send_signal(signal.SIGTERM)
        assert [proc.wait(10) for proc in procs[1:]] == [0, 0, 0]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        consumer.stopping.set()
        consumer.join(10)
    assert consumer.error is None
    consumer.drain()

    expected = expected_ticks(start_ms, end_ms)
    assert len(expected) >= int(SOAK_S - 2) * 2  # the window holds ~2.5 ticks per second
    missing = sorted(expected - set(consumer.seen))
    duplicated = sorted(i for i, n in consumer.seen.items() if n > 1)
    assert (missing, duplicated) == ([], [])
    assert all(on_grid(task_id) for task_id in consumer.seen)
    for keys in consumer.queues:
        assert r.llen(keys.pending) == 0
        assert r.hlen(keys.msg) == 0
    late = sorted(consumer.lateness_ms)
    print(
        f"\n{len(expected)} ticks in {SOAK_S:.0f}s, {len(consumer.seen)} tasks; lateness ms: "
        f"p50={statistics.median(late):.0f} p99={late[int(len(late) * 0.99)]} max={late[-1]}"
    )
