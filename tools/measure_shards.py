#!/usr/bin/env python3
"""Measure a sharded queue (``shards=N``) on a private 3-master Redis Cluster started for the run.

For N = 1, 3 and 6, one queue ``q`` of a fresh namespace:

* enqueue throughput: one producer thread, ``enqueue_many`` in batches of 100, then one thread
  of single ``enqueue`` calls;
* drain throughput: one worker server (in this process, no-op async handler, concurrency 50);
* per master, over both phases: the commands Redis ran (``INFO commandstats``, all commands)
  and the CPU time it used (``INFO cpu``, user + sys), with each master's share.

The point is the last part: with N=1 one master carries the whole queue; with N=3 or 6 each
master carries about a third. On a 2-core machine the Python producer and worker, not Redis,
bound the throughput, so the rates say little about what a spread queue gains on real machines.

Usage: ``python tools/measure_shards.py [--n N] [--single S]``
"""

from __future__ import annotations

import venv_bootstrap  # noqa: F401  (sets up .venv and re-runs the script inside it)

# isort: split
import argparse
import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

from rq_sched import Client, Inspector, NewTask, Router, Server
from rq_sched.connection import connect
from rq_sched.local_redis import RedisCluster


def node_stats(conns: list[redis.Redis]) -> list[tuple[int, float]]:
    """(commands run, CPU seconds) of each master."""
    out = []
    for conn in conns:
        commands = conn.info("commandstats")
        cpu = conn.info("cpu")
        calls = sum(int(v["calls"]) for k, v in commands.items() if k.startswith("cmdstat_"))
        out.append((calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])))
    return out


def run(url: str, masters: list[redis.Redis], shards: int, n: int, single: int) -> None:
    namespace = f"m{shards}x{time.monotonic_ns()}"
    conn = connect(url, cluster=True)
    Inspector(conn, namespace=namespace).set_shards("q", shards)
    client = Client(conn, namespace=namespace)
    for m in masters:
        m.config_resetstat()
    before = node_stats(masters)
    started = time.perf_counter()
    for start in range(0, n, 100):
        client.enqueue_many([NewTask(type="noop", queue="q") for _ in range(min(100, n - start))])
    batched = n / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(single):
        client.enqueue("noop", queue="q")
    one_by_one = single / (time.perf_counter() - started)
    total = n + single
    router = Router()

    @router.task("noop")
    async def noop(task: object) -> None:
        return None

    server = Server.from_url(
        url, cluster=True, namespace=namespace, queues={"q": 1}, concurrency=50
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(router)), daemon=True)
    inspector = Inspector(conn, namespace=namespace)
    started = time.perf_counter()
    thread.start()
    while inspector.queue_info("q").processed < total:
        time.sleep(0.02)
    drained = total / (time.perf_counter() - started)
    server.stop()
    thread.join(30)
    after = node_stats(masters)
    calls = [a[0] - b[0] for a, b in zip(after, before, strict=True)]
    cpu = [a[1] - b[1] for a, b in zip(after, before, strict=True)]
    print(
        f"N={shards}: enqueue_many {batched:,.0f}/s, enqueue {one_by_one:,.0f}/s, "
        f"drain {drained:,.0f}/s ({total} tasks)"
    )
    for index, (c, s) in enumerate(zip(calls, cpu, strict=True)):
        print(
            f"    master {index}: {c:>8,} commands ({c / sum(calls):5.1%}), "
            f"{s:6.2f} s CPU ({s / max(sum(cpu), 1e-9):5.1%})"
        )
    conn.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=30_000, help="tasks enqueued in batches")
    parser.add_argument("--single", type=int, default=3_000, help="tasks enqueued one by one")
    parser.add_argument("--shards", type=int, nargs="*", default=[1, 3, 6])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cluster = RedisCluster(Path(tmp), masters=3).start()
        masters = [redis.Redis(port=node.port) for node in cluster.nodes[:3]]
        try:
            for shards in args.shards:
                run(cluster.url, masters, shards, args.n, args.single)
        finally:
            for m in masters:
                m.close()
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
