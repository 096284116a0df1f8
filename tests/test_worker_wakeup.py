"""Waiting without polling: with every periodic sweep set to an hour, a worker still runs a
task scheduled a second ahead (the forwarder's timer) and picks up a task enqueued while it
idles (the marker wake-up). The tests assert the outcomes (what ran, in order; how many commands
an idle worker sends); latencies are printed for reading, never asserted.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import redis

from rq_sched import Client, Router, Task
from rq_sched.local_redis import RedisServer
from tests.worker_support import Recorder, queue_state, running_server, wait_until

NO_SWEEPS: dict[str, Any] = {"forward_sweep_interval": 3600.0, "idle_timeout": 3600.0}


def _blocked(conn: redis.Redis) -> bool:
    """Whether some client is blocked in BZPOPMIN (the worker idles on its markers)."""
    return any(c.get("cmd") == "bzpopmin" for c in conn.client_list())


def test_a_task_scheduled_a_second_ahead_runs_without_any_sweep(
    fresh_redis: RedisServer, namespace: str
) -> None:
    ran = Recorder()
    router = Router()

    @router.task("w:t")
    async def note(task: Task) -> None:
        ran.add(time.time())

    with (
        redis.Redis.from_url(fresh_redis.url) as conn,
        running_server(fresh_redis.url, router, namespace=namespace, **NO_SWEEPS),
    ):
        wait_until(lambda: _blocked(conn), what="the worker blocked on its markers")
        due = time.time() + 1.0
        Client(conn, namespace=namespace).enqueue("w:t", None, process_in=1.0)
        (ran_at,) = ran.wait_for(1, timeout=10)
    assert ran_at >= due - 0.002, "ran before it was due"
    print(f"\nscheduled task ran {1000 * (ran_at - due):.1f} ms after its due time")


def test_an_idle_worker_picks_up_a_new_task_without_polling(
    fresh_redis: RedisServer, namespace: str
) -> None:
    ran = Recorder()
    router = Router()

    @router.task("w:t")
    async def note(task: Task) -> None:
        ran.add((task.payload, time.perf_counter()))

    latencies = []
    with (
        redis.Redis.from_url(fresh_redis.url) as conn,
        running_server(fresh_redis.url, router, namespace=namespace, **NO_SWEEPS),
    ):
        client = Client(conn, namespace=namespace)
        for n in range(20):
            wait_until(lambda: _blocked(conn), what="the worker blocked on its markers")
            sent = time.perf_counter()
            client.enqueue("w:t", n)
            # With every sweep an hour apart, only the marker wake-up can run it within 10 s.
            payload, picked = ran.wait_for(n + 1, timeout=10)[n]
            assert payload == n, "tasks must be picked up one by one, in order"
            latencies.append(1000 * (picked - sent))
        assert [payload for payload, _ in ran.items] == list(range(20))
        assert queue_state(conn, namespace)["pending"] == 0
    latencies.sort()
    print(
        f"\nidle pickup over {len(latencies)} tasks: p50 {statistics.median(latencies):.2f} ms, "
        f"max {latencies[-1]:.2f} ms"
    )


def test_an_idle_worker_sends_few_commands(fresh_redis: RedisServer, namespace: str) -> None:
    router = Router()
    router.add("w:t", lambda task: None)
    defaults: dict[str, Any] = {
        "queues": {"critical": 6, "default": 3, "low": 1},
        "lease_duration": 10.0,
        "recover_interval": 4.0,
        "heartbeat_interval": 5.0,
    }
    window = 5.0
    with (
        redis.Redis.from_url(fresh_redis.url) as conn,
        running_server(fresh_redis.url, router, namespace=namespace, **defaults),
    ):
        wait_until(lambda: _blocked(conn), what="the worker blocked on its markers")
        threading.Event().wait(0.5)  # let the start-up sweeps finish
        conn.config_resetstat()
        threading.Event().wait(window)  # the measurement window itself
        stats = conn.info("commandstats")
    calls = {
        name.removeprefix("cmdstat_"): int(s["calls"])
        for name, s in stats.items()
        if not name.startswith(("cmdstat_config", "cmdstat_info"))
    }
    top_level = ("evalsha", "bzpopmin", "set", "del", "hset", "expire", "ping")
    sent = {k: v for k, v in calls.items() if k in top_level}
    print(
        f"\nidle worker, 3 queues, {window:g}s: about {sum(sent.values())} commands sent {sent}; "
        f"{sum(calls.values())} counting those run inside scripts {calls}"
    )
    assert sum(sent.values()) < 20 * window, "an idle worker must not busy-poll Redis"
