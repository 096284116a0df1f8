"""A process handler's child never runs without its worker (found by the chaos soak).

After a ``kill -9`` of a worker, its forkserver children used to live on: a child already
running its handler ran it to the end, and one already requested started its handler later,
with nobody to record the outcome while the task ran again elsewhere. The child now watches
its pipe to the worker: it does not start a handler once the worker's end is closed, and it
exits as soon as the worker's end closes while the handler runs (as a timeout kills it).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from pathlib import Path

import redis

from rq_sched import Client, Router, Task
from rq_sched.worker.runners import _child_main, _TaskState
from tests.polling import wait_until
from tests.worker_support import cli_worker, stop_process, wait_server_registered

router = Router()
TICKS = 150
"""The handler's ticks, 0.1 s apart: far longer than the test waits once the worker is gone."""


@router.task("orphan:tick")
def tick(task: Task) -> None:
    """Records its pid, then counts ticks in Redis for about 15 s."""
    with redis.Redis.from_url(task.payload["url"]) as conn:
        conn.rpush(task.payload["pid"], os.getpid())
        for _ in range(TICKS):
            conn.incr(task.payload["ticks"])
            time.sleep(0.1)


def mark(task: Task) -> None:
    """Creates the file named by the payload: proof that the handler started."""
    Path(task.payload).write_text("started")


def test_a_process_handler_stops_when_its_worker_is_killed(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    keys = {"pid": f"{namespace}:pid", "ticks": f"{namespace}:ticks"}
    worker = cli_worker(
        redis_url, namespace, "--processes", "1", router="tests.test_worker_process_orphans:router"
    )
    child_pid = 0
    try:
        wait_server_registered(r, namespace, worker)
        Client(r, namespace=namespace).enqueue("orphan:tick", {"url": redis_url, **keys})
        popped = r.blpop([keys["pid"]], timeout=20)
        assert popped is not None, "the process handler never started"
        child_pid = int(popped[1])
        wait_until(lambda: int(r.get(keys["ticks"]) or 0) >= 3, what="the handler's first ticks")
        stop_process(worker, signal.SIGKILL)

        seen: list[int] = []

        def stopped() -> bool:
            seen.append(int(r.get(keys["ticks"]) or 0))
            time.sleep(0.3)  # the handler ticks every 0.1 s: three equal reads mean it stopped
            return len(seen) >= 3 and seen[-1] == seen[-3]

        wait_until(stopped, timeout=10, what="the orphaned handler to stop ticking")
        assert seen[-1] < TICKS / 2, seen
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
        if child_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child_pid, signal.SIGKILL)


def test_a_child_whose_worker_is_gone_before_it_starts_never_runs_its_handler(
    tmp_path: Path,
) -> None:
    # The worker's end of the pipe is closed before the child exists: a worker killed after it
    # asked the forkserver for a child and before the child ran.
    marker = tmp_path / "started"
    ctx = multiprocessing.get_context("forkserver")
    worker_end, child_end = ctx.Pipe(duplex=True)
    state = _TaskState("orphan:mark", str(marker), "id-1", "default", 0, 0, {}, None, None)
    child = ctx.Process(target=_child_main, args=(child_end, mark, state), daemon=True)
    worker_end.close()
    child.start()
    child_end.close()
    child.join(20)
    assert child.exitcode is not None, "the child did not exit"
    assert not marker.exists(), "the handler started although its worker was gone"
