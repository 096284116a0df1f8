"""The mixed-pool figures in docs/dq.md: ``python -m tests.dq.mixed_pool_figures [jobs]``.

Starts its own redis-server and two beanstalkd on loopback (stopped by pid at the end), then:

1. mixed pool: one rq_sched consumer (``mixed_pool=True``) and one emulated Go consumer per
   node share a tube; every 3rd job's first Python attempt fails; both orders; prints how
   many jobs ran zero, one or more times;
2. cost: rq_sched consumers only, every job fails once, default mode against mixed-pool
   mode; prints beanstalkd and Redis commands per job and wall time per job.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import redis

from rq_sched.dq import Consumer, Job, Producer
from rq_sched.local_redis import RedisServer
from tests.dq.conftest import BeanstalkdServer, nodes_of
from tests.dq.go_emulation import GoConsumer


def _put(servers: list[BeanstalkdServer], tube: str, jobs: int) -> list[bytes]:
    bodies = [str(i).encode() for i in range(1, jobs + 1)]
    with Producer(nodes_of(servers, tube)) as producer:
        for body in bodies:
            producer.delay(body, 0)
    return bodies


def _empty(servers: list[BeanstalkdServer], tube: str) -> bool:
    return all(s.jobs_in(tube) == 0 for s in servers)


def mixed(servers: list[BeanstalkdServer], url: str, jobs: int, python_first: bool) -> str:
    tube = f"mixed{int(python_first)}"
    r = redis.Redis.from_url(url)
    runs: Counter[bytes] = Counter()
    attempts: Counter[bytes] = Counter()
    tally = Counter[str]()

    def py(job: Job) -> None:
        attempts[job.body] += 1
        if int(job.body) % 3 == 0 and attempts[job.body] == 1:
            tally["failures"] += 1
            raise RuntimeError("injected")
        runs[job.body] += 1
        tally["python runs"] += 1

    def go(body: bytes) -> None:
        runs[body] += 1
        tally["go runs"] += 1

    bodies = _put(servers, tube, jobs)
    consumer = Consumer(
        nodes_of(servers, tube), redis=url, handler=py, mixed_pool=True, backoff=lambda n: 0
    )
    gos = [GoConsumer(s.port, tube, r, go) for s in servers]
    steps = [consumer.run_once, *(g.step for g in gos)]
    while not _empty(servers, tube):
        for step in steps if python_first else [*steps[1:], steps[0]]:
            step()
    consumer.stop()
    for g in gos:
        g.close()
    once = sum(1 for b in bodies if runs[b] == 1)
    lost = sum(1 for b in bodies if runs[b] == 0)
    doubled = sum(1 for b in bodies if runs[b] > 1)
    order = "python first" if python_first else "go first"
    return (
        f"{order}: jobs={jobs} failures injected={tally['failures']} "
        f"python runs={tally['python runs']} go runs={tally['go runs']} "
        f"ran once={once} lost={lost} ran twice or more={doubled}"
    )


def cost(servers: list[BeanstalkdServer], url: str, jobs: int, mixed_pool: bool) -> str:
    tube = f"cost{int(mixed_pool)}"
    r = redis.Redis.from_url(url)
    seen: Counter[bytes] = Counter()

    def fail_once(job: Job) -> None:
        seen[job.body] += 1
        if seen[job.body] == 1:
            raise RuntimeError("injected")

    _put(servers, tube, jobs)
    consumer = Consumer(
        nodes_of(servers, tube),
        redis=url,
        handler=fail_once,
        mixed_pool=mixed_pool,
        backoff=lambda n: 0,
    )
    bs_before = [_bs_commands(s) for s in servers]
    redis_before = _redis_calls(r)
    started = time.perf_counter()
    while consumer.run_once():  # retries are due at once: an empty round means done
        pass
    elapsed = time.perf_counter() - started
    consumer.stop()
    bs = sum(_bs_commands(s) for s in servers) - sum(bs_before)
    calls = _redis_calls(r) - redis_before
    mode = "mixed_pool=True " if mixed_pool else "default         "
    return (
        f"{mode}: jobs={jobs} (each fails once) runs={sum(seen.values())} "
        f"beanstalkd commands/job={bs / jobs:.1f} redis commands/job={calls / jobs:.1f} "
        f"time/job={elapsed / jobs * 1e6:.0f} us"
    )


def _bs_commands(server: BeanstalkdServer) -> int:
    with server.client("default") as client:
        stats = client.stats()
    return sum(int(v) for k, v in stats.items() if k.startswith("cmd-"))  # type: ignore[call-overload]


def _redis_calls(r: redis.Redis) -> int:
    stats = r.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    with tempfile.TemporaryDirectory() as tmp:
        redis_server = RedisServer(Path(tmp) / "redis").start()
        servers = [BeanstalkdServer(Path(tmp) / f"b{i}").start() for i in range(2)]
        try:
            for python_first in (True, False):
                print(mixed(servers, redis_server.url, jobs, python_first))
            for mixed_pool in (False, True):
                print(cost(servers, redis_server.url, jobs, mixed_pool))
        finally:
            for server in servers:
                server.stop(kill=True)
            redis_server.stop(kill=True)


if __name__ == "__main__":
    main()
