"""Sync handlers in threads: a call whose task was settled while it waited for a thread never
runs; a thread still stuck in a timed-out handler is not free capacity; the same task leased
twice to one worker keeps its lease until its newest run ends.
"""

from __future__ import annotations

import threading

import redis

from rq_sched import Client, Inspector, Router, Task, TaskState, ops, scripts
from rq_sched.keys import QueueKeys
from tests.script_support import redis_ms
from tests.worker_support import Recorder, running_server, wait_until

HOLD = 20.0
"""Longest a blocking test handler waits for its release (tests release it much sooner)."""


def _blocking_router(release: threading.Event, started: Recorder, ran: Recorder) -> Router:
    router = Router()

    @router.task("t:block")
    def block(task: Task) -> None:
        started.add(task.id)
        release.wait(HOLD)  # ignores is_cancelled(): a handler Python cannot stop

    @router.task("t:record")
    def record(task: Task) -> None:
        ran.add(task.id)

    return router


def test_a_call_whose_task_timed_out_while_waiting_for_a_thread_never_runs(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    release, started, ran = threading.Event(), Recorder(), Recorder()
    router = _blocking_router(release, started, ran)
    client = Client(r, namespace=namespace)
    inspector = Inspector(r, namespace=namespace)
    # Blockers hold every thread the pool may have; the call queued behind them times out.
    blockers = [client.enqueue("t:block", None, timeout=0.3, max_retry=0) for _ in range(2)]
    waiting = client.enqueue("t:record", None, timeout=0.3, max_retry=0)
    try:
        with running_server(redis_url, router, namespace=namespace, concurrency=1):
            for task in (*blockers, waiting):
                wait_until(
                    lambda t=task: (
                        inspector.get_task("default", t.id).state  # type: ignore[misc]
                        is TaskState.ARCHIVED
                    ),
                    what=f"{task.id} timed out",
                )
            release.set()
            later = client.enqueue("t:record", None)
            wait_until(lambda: later.id in ran.items, what="a task started after the release")
    finally:
        release.set()
    assert waiting.id not in ran.items, "a call ran after its task had been settled"
    error = inspector.get_task("default", waiting.id).last_error
    assert error is not None and "timed out" in error


def test_a_thread_stuck_in_a_timed_out_handler_is_not_counted_as_free(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    release, started, ran = threading.Event(), Recorder(), Recorder()
    router = _blocking_router(release, started, ran)
    client = Client(r, namespace=namespace)
    inspector = Inspector(r, namespace=namespace)
    stuck = client.enqueue("t:block", None, timeout=0.3, max_retry=0)
    try:
        with running_server(redis_url, router, namespace=namespace, concurrency=1):
            wait_until(
                lambda: inspector.get_task("default", stuck.id).state is TaskState.ARCHIVED,
                what="the blocker timed out",
            )
            nxt = client.enqueue("t:record", None, timeout=5, max_retry=0)
            assert ran.wait_for(1) == [nxt.id]  # while the blocker's thread is still stuck
            assert not release.is_set()
    finally:
        release.set()


def test_a_task_leased_twice_to_one_worker_keeps_its_lease_while_the_newer_run_goes_on(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    releases = [threading.Event(), threading.Event()]
    runs = Recorder()
    ended = Recorder()
    router = Router()

    @router.task("t:twice")
    def twice(task: Task) -> None:
        attempt = len(runs)
        runs.add(attempt)
        releases[min(attempt, 1)].wait(HOLD)
        ended.add(attempt)

    keys = QueueKeys(namespace, "default")
    task = Client(r, namespace=namespace).enqueue("t:twice", None)
    try:
        with running_server(redis_url, router, namespace=namespace, concurrency=2) as server:
            runs.wait_for(1)
            # The first run's lease ends as if it had expired (a long stall): it is requeued
            # and this worker leases the task again while the first run still goes on.
            r.zadd(keys.lease, {task.id: redis_ms(r) - 1}, xx=True)
            script, key_list, args = ops.recover(keys)
            scripts.run(r, script, key_list, args)
            runs.wait_for(2)
            releases[0].set()
            ended.wait_for(1)
            processor = server.processor
            assert processor is not None
            wait_until(
                lambda: (
                    processor.processed + getattr(processor, "dropped", 0) >= 1
                    and not processor.unacked
                ),
                what="the first run settled",
            )
            assert task.id in [i for i, _ in processor.leased().get("default", [])]
            assert r.zscore(keys.lease, task.id) is not None, "the newer run lost its task"
            assert r.hexists(keys.msg, task.id)
            releases[1].set()
            wait_until(lambda: not r.hexists(keys.msg, task.id), what="the task acknowledged")
    finally:
        for release in releases:
            release.set()
