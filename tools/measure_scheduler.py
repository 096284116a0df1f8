"""Measure how late the scheduler enqueues: task ``enqueued_at`` minus its tick's fire time.

Starts a private redis-server, runs N ``rq-sched scheduler`` processes with per-second entries
(half ``@every 1s``, half seconds-cron) for a while, then reads every task message and reports the
lateness distribution and whether every tick produced exactly one task.

    .venv/bin/python tools/measure_scheduler.py --processes 3 --entries 6 --seconds 60
"""

from __future__ import annotations

import venv_bootstrap  # noqa: F401  (sets up .venv and re-runs the script inside it)

# isort: split
import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.local_redis import RedisServer
from rq_sched.message import decode
from rq_sched.scheduler.cron import parse_spec

NAMESPACE = "measure"
QUEUE = "cron"
CLI = [
    sys.executable,
    "-c",
    "import sys; from rq_sched.cli import main; sys.exit(main(sys.argv[1:]))",
]


def entries(count: int) -> dict[str, str]:
    return {f"e{i}": "@every 1s" if i % 2 == 0 else "* * * * * *" for i in range(count)}


def config_text(specs: dict[str, str]) -> str:
    return "".join(
        f'[[entry]]\nname = "{name}"\nspec = "{spec}"\ntype = "t"\nqueue = "{QUEUE}"\n\n'
        for name, spec in specs.items()
    )


def percentile(values: list[int], fraction: float) -> int:
    return values[min(len(values) - 1, int(len(values) * fraction))]


def run(processes: int, count: int, seconds: float, workdir: Path) -> int:
    server = RedisServer(workdir / "redis").start()
    specs = entries(count)
    config = workdir / "schedule.toml"
    config.write_text(config_text(specs))
    args = ["--url", server.url, "--namespace", NAMESPACE, "--config", str(config)]
    conn = redis.Redis.from_url(server.url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs = [subprocess.Popen([*CLI, "scheduler", *args]) for _ in range(processes)]
        while conn.zcard(GlobalKeys(NAMESPACE).schedulers) < processes:
            time.sleep(0.05)
        start_ms = int(time.time() * 1000) + 500
        time.sleep(seconds)
        end_ms = int(time.time() * 1000) - 1000
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(10)
        return report(conn, specs, start_ms, end_ms, processes, seconds)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        conn.close()
        server.stop()


def report(
    conn: redis.Redis, specs: dict[str, str], start_ms: int, end_ms: int, processes: int,
    seconds: float,
) -> int:  # fmt: skip
    keys = QueueKeys(NAMESPACE, QUEUE)
    lateness, in_window = [], 0
    for raw_id, raw in conn.hscan_iter(keys.msg, count=1000):
        task_id = raw_id.decode()
        fire_ms = int(task_id.rsplit(":", 1)[1])
        if start_ms < fire_ms <= end_ms:
            in_window += 1
            lateness.append(decode(raw).enqueued_at - fire_ms)
    expected = 0
    for spec in specs.values():
        schedule, fire = parse_spec(spec), start_ms
        while (fire := schedule.next_after(fire)) <= end_ms:
            expected += 1
    pending_ids = conn.lrange(keys.pending, 0, -1)
    lateness.sort()
    print(
        f"{processes} scheduler processes, {len(specs)} per-second entries, {seconds:.0f} s\n"
        f"ticks in window: {expected}; tasks for them: {in_window}; "
        f"pending list length: {len(pending_ids)}, distinct: {len(set(pending_ids))}\n"
        f"lateness (enqueued_at - fire time) ms: p50={statistics.median(lateness):.1f} "
        f"p90={percentile(lateness, 0.9)} p99={percentile(lateness, 0.99)} max={lateness[-1]}"
    )
    exact = expected == in_window and len(pending_ids) == len(set(pending_ids))
    print("exactly once per tick:", "yes" if exact else "NO")
    return 0 if exact else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--entries", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rq-sched-measure-") as tmp:
        return run(args.processes, args.entries, args.seconds, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
