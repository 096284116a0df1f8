#!/usr/bin/env python3
"""Measure what each flow limit kind costs, on a private redis-server started for the run.

For each kind (none, a rate limit, a concurrency cap, both, keyed tasks over 10 or 10,000 keys
with and without per-key limits, a per-type rate and cap; all set high enough never to hold
anything back, so only their bookkeeping is measured):

* the dequeue script alone: Redis CPU time per call (``INFO commandstats``) while one client
  drains N pending tasks in batches of 100 and acknowledges them;
* drain throughput of one worker server (in this process, no-op async handler, concurrency 50).

This machine may be shared and busy: run several rounds and read the medians, not the best.

The drain half is also a scenario of the bench (``tools/bench --only rq_sched --scenarios flow``,
a worker process of its own, with worker and Redis CPU per task); this script stays for the
dequeue script's own cost per call, which a drain cannot separate from the acks and the rest.

Usage: ``python tools/measure_flow.py [--n N] [--rounds K]``
"""

from __future__ import annotations

import venv_bootstrap  # noqa: F401  (sets up .venv and re-runs the script inside it)

# isort: split
import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

from rq_sched import Client, FlowLimits, NewTask, Router, Server, TypeLimits, ops, scripts
from rq_sched.keys import QueueKeys
from rq_sched.local_redis import RedisServer

KINDS: dict[str, tuple[FlowLimits | None, int]] = {
    "none": (None, 0),
    "rate": (FlowLimits(rate="1000000/s", burst=1000), 0),
    "cap": (FlowLimits(concurrency=100_000), 0),
    "rate+cap": (FlowLimits(rate="1000000/s", burst=1000, concurrency=100_000), 0),
    # Keyed tasks (enqueue(key=...)) spread over that many keys, served round robin.
    "keyed-10": (None, 10),
    "keyed-10k": (None, 10_000),
    "keyed-10k+limits": (
        FlowLimits(key_rate="1000000/s", key_burst=1000, key_concurrency=100_000),
        10_000,
    ),
    # The drained type limited (its tasks go through the type's lane).
    "type rate+cap": (
        FlowLimits(types={"noop": TypeLimits(rate="1000000/s", burst=1000, concurrency=100_000)}),
        0,
    ),
}
"""Each kind: the flow limits set, and how many fairness keys the tasks use (0: unkeyed)."""


def tasks(n: int, queue: str, keyed: int) -> list[NewTask]:
    return [
        NewTask(type="noop", queue=queue, key=f"k{i % keyed}" if keyed else None) for i in range(n)
    ]


def evalsha_usec(r: redis.Redis) -> tuple[int, int]:
    stats = r.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def script_cost(r: redis.Redis, kind: str, n: int) -> float:
    """Redis µs per dequeue call of 100 tasks (acks excluded)."""
    keys = QueueKeys(f"m{kind.replace('+', '').replace(' ', '-')}{time.monotonic_ns()}", "q")
    client = Client(r, namespace=keys.namespace)
    limits, keyed = KINDS[kind]
    if limits is not None:
        client.set_flow("q", limits)
    for start in range(0, n, 1000):
        client.enqueue_many(tasks(min(1000, n - start), "q", keyed))
    usec = calls = 0
    while True:
        before = evalsha_usec(r)
        reply = scripts.run(r, *ops.dequeue(keys, 60_000, 100))
        after = evalsha_usec(r)
        leased = ops.parse_dequeue(reply)
        if not leased:
            break
        calls += after[0] - before[0]
        usec += after[1] - before[1]
        scripts.run(r, *ops.done(keys, [ops.Ack(t.id, t.token) for t in leased], time.time()))
    return usec / max(calls, 1)


def drain_rate(url: str, kind: str, n: int) -> float:
    """Tasks/s one worker server drains ``n`` no-op tasks at."""
    namespace = f"d{kind.replace('+', '').replace(' ', '-')}{time.monotonic_ns()}"
    r = redis.Redis.from_url(url)
    client = Client(r, namespace=namespace)
    limits, keyed = KINDS[kind]
    if limits is not None:
        client.set_flow("default", limits)
    for start in range(0, n, 1000):
        client.enqueue_many(tasks(min(1000, n - start), "default", keyed))
    router = Router()

    @router.task("noop")
    async def noop(task: object) -> None:
        return None

    server = Server.from_url(url, namespace=namespace, concurrency=50)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(router)), daemon=True)
    keys = QueueKeys(namespace, "default")
    started = time.perf_counter()
    thread.start()
    while int(r.get(keys.processed) or 0) < n:
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    server.stop()
    thread.join(30)
    r.close()
    return n / elapsed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="tasks per run (%(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per kind (%(default)s)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            r = redis.Redis.from_url(server.url)
            print(f"{'kind':<18} {'dequeue µs/call (100 tasks)':>28} {'drain tasks/s':>14}")
            for kind in KINDS:
                costs = [script_cost(r, kind, args.n) for _ in range(args.rounds)]
                rates = [drain_rate(server.url, kind, args.n) for _ in range(args.rounds)]
                print(
                    f"{kind:<18} {statistics.median(costs):>28.0f} "
                    f"{statistics.median(rates):>14,.0f}"
                )
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
