"""Every benchmarked system: where it runs, how its worker starts, and the settings printed.

The settings follow each project's documentation for I/O-bound no-op tasks: an async handler
where the library is asyncio-based, the pool its docs recommend for I/O otherwise, result
storage off where the docs offer that for fire-and-forget tasks, everything else default.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench_lib import envs

CONCURRENCY = 100
"""Handlers at once per worker process, for every system that has such a knob."""

JS = str(envs.TOOLS / "bench_lib" / "adapters" / "bullmq_peer.js")

Argv = Callable[[Path, str], list[str]]
"""(bin directory of the system's interpreter, Redis URL) -> worker command."""


@dataclass(frozen=True)
class System:
    name: str
    env: str
    """Bench environment: "project" (the bench's own interpreter), "py", "py-redis5", "node"."""
    adapter: str
    """Module under bench_lib.adapters (or the .js file for Node)."""
    worker: Argv
    settings: dict[str, str]
    worker_env: dict[str, str] = field(default_factory=dict)
    same_client_as: str | None = None
    """Enqueue-side results are the same as this system's (only the worker differs)."""
    no_delayed: str | None = None
    """Why delayed tasks are not measured, if they are not."""
    no_backlog: str | None = None
    """Why the scheduled-backlog scenario is not run, if it is not."""

    def bin_dir(self) -> Path:
        return Path(envs.python_for(self.env)).parent

    def producer_argv(self, action: str, params: str) -> list[str]:
        if self.env == "node":
            return ["node", JS, "produce", action, params]
        return [envs.python_for(self.env), "-m", "bench_lib.producer", self.adapter, action, params]

    def worker_argv(self, url: str) -> list[str]:
        return self.worker(self.bin_dir(), url)


C = str(CONCURRENCY)


RQ_FLAGS = ["--with-scheduler", "-q", "bench"]


def _rq(worker_class: str) -> Argv:
    def argv(b: Path, url: str) -> list[str]:
        return [str(b / "rq"), "worker", "-u", url, "-w", worker_class, *RQ_FLAGS]

    return argv


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in [
        System(
            "rq_sched",
            "project",
            "sys_rq_sched",
            lambda b, url: [sys.executable, "-m", "bench_lib.adapters.sys_rq_sched", "worker"],
            {
                "worker": f"Server(queues={{'default': 1}}, concurrency={C}, batch_size=100)",
                "handler": "async def",
                "client": "Client (sync): enqueue / enqueue_many / process_at=",
            },
            worker_env={"BENCH_BATCH": "100"},
        ),
        System(
            "rq",
            "py",
            "peer_rq",
            _rq("rq.Worker"),
            {
                "worker": "rq worker -w rq.Worker (fork per job) --with-scheduler",
                "handler": "def",
                "client": "Queue.enqueue / enqueue_many / enqueue_at, result_ttl=0",
            },
            worker_env={"BENCH_PROBE_DIRECT": "1"},
        ),
        System(
            "rq-simple",
            "py",
            "peer_rq",
            _rq("rq.SimpleWorker"),
            {
                "worker": "rq worker -w rq.SimpleWorker (no fork) --with-scheduler",
                "handler": "def",
                "client": "as rq",
            },
            same_client_as="rq",
        ),
        System(
            "arq",
            "py-redis5",
            "peer_arq",
            lambda b, url: [str(b / "arq"), "bench_lib.adapters.peer_arq.WorkerSettings"],
            {
                "worker": f"arq WorkerSettings(max_jobs={C}, keep_result=0), poll_delay 0.5 s",
                "handler": "async def",
                "client": "ArqRedis.enqueue_job (_defer_until=)",
            },
        ),
        System(
            "saq",
            "py",
            "peer_saq",
            lambda b, url: [
                str(b / "saq"),
                "bench_lib.adapters.peer_saq.settings",
                *["--workers", "1"],
            ],
            {
                "worker": f"saq settings(concurrency={C}) --workers 1",
                "handler": "async def",
                "client": "Queue.enqueue (scheduled=)",
            },
        ),
        System(
            "celery",
            "py",
            "peer_celery",
            lambda b, url: [
                str(b / "celery"),
                *["-A", "bench_lib.adapters.peer_celery", "worker"],
                *["-P", "gevent", "-c", C, "-l", "WARNING"],
            ],
            {
                "worker": f"celery worker -P gevent -c {C} (Redis broker, prefetch multiplier 4)",
                "handler": "def (gevent)",
                "client": "apply_async (eta=), no result backend",
            },
            no_backlog="Celery holds ETA tasks in worker memory, and its Redis transport "
            "redelivers ETAs beyond the 1 h visibility timeout; its docs advise against long ETAs",
        ),
        System(
            "dramatiq",
            "py",
            "peer_dramatiq",
            lambda b, url: [
                str(b / "dramatiq"),
                "bench_lib.adapters.peer_dramatiq",
                *["--processes", "1", "--threads", "16", "-Q", "bench"],
            ],
            {
                "worker": "dramatiq --processes 1 --threads 16 (RedisBroker)",
                "handler": "def (threads)",
                "client": "actor.send / send_with_options(delay=)",
            },
        ),
        System(
            "huey",
            "py",
            "peer_huey",
            lambda b, url: [
                str(b / "huey_consumer"),
                *["bench_lib.adapters.peer_huey.huey", "-k", "thread", "-w", "16", "-q"],
            ],
            {
                "worker": "huey_consumer -k thread -w 16 (RedisHuey, blocking BRPOP, no results)",
                "handler": "def (threads)",
                "client": "task() / task.schedule(eta=)",
            },
        ),
        System(
            "taskiq",
            "py-redis5",
            "peer_taskiq",
            lambda b, url: [
                str(b / "taskiq"),
                *["worker", "bench_lib.adapters.peer_taskiq:broker", "--workers", "1"],
                *["--max-async-tasks", C, "--no-configure-logging"],
            ],
            {
                "worker": f"taskiq worker --workers 1 --max-async-tasks {C} (ListQueueBroker)",
                "handler": "async def",
                "client": "task.kiq",
            },
            no_delayed="taskiq needs its separate scheduler process and a schedule source",
        ),
        System(
            "bullmq",
            "node",
            "bullmq_peer.js",
            lambda b, url: ["node", JS, "worker"],
            {
                "worker": f"new Worker(concurrency={C}) (Node)",
                "handler": "async function",
                "client": "Queue.add / addBulk (delay=), removeOnComplete",
            },
        ),
    ]
}

QUICK_PEERS = ["huey", "dramatiq", "bullmq"]
