"""Time the dashboard's main API calls over a large queue.

Starts a private redis-server, seeds one queue with N pending tasks (plus a few other queues
and states), serves the dashboard app on a free loopback port and times each main call over
HTTP (median and worst of several runs, milliseconds). The bulk step is timed last, since it
changes the data.

    .venv/bin/python tools/measure_web.py --tasks 200000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from rq_sched import Client, Inspector, NewTask
from rq_sched.local_redis import RedisServer, free_port, wait_for_port
from rq_sched.web import create_app, make_server

QUEUE = "big"
BATCH = 1000


def seed(client: Client, tasks: int) -> None:
    for start in range(0, tasks, BATCH):
        client.enqueue_many(
            NewTask(
                type="email:send" if n % 10 else "resize",
                payload={"n": n},
                queue=QUEUE,
                task_id=f"t{n}",
            )
            for n in range(start, min(tasks, start + BATCH))
        )
    for n in range(200):
        client.enqueue("report", {"n": n}, queue=QUEUE, process_in=3600 + n)
        client.enqueue("other", {"n": n}, queue=f"q{n % 10}")


def timed(http: httpx.Client, method: str, url: str, runs: int, **kwargs: object) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        resp = http.request(method, url, **kwargs)  # type: ignore[arg-type]
        out.append((time.perf_counter() - start) * 1000)
        resp.raise_for_status()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            measure(server.url, args.tasks, args.runs)
        finally:
            server.stop()


def measure(url: str, tasks: int, runs: int) -> None:
    inspector = Inspector.from_url(url, namespace="measure")
    client = Client.from_url(url, namespace="measure")
    started = time.perf_counter()
    seed(client, tasks)
    print(f"seeded {tasks} pending tasks in {time.perf_counter() - started:.1f}s")
    inspector.sample_minute()
    port = free_port()
    web = make_server(create_app(inspector, sample_minutes=False), port=port)
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    wait_for_port(port)
    last = tasks // 20
    calls: list[tuple[str, str, str, dict[str, object]]] = [
        ("GET /api/queues", "GET", "/api/queues", {}),
        ("GET /api/queue (stats + memory + 14 days)", "GET", f"/api/queue?queue={QUEUE}", {}),
        ("GET tasks page 1 (20)", "GET", f"/api/queue/tasks?queue={QUEUE}&state=pending", {}),
        (
            f"GET tasks page {last} (20)",
            "GET",
            f"/api/queue/tasks?queue={QUEUE}&state=pending&page={last}",
            {},
        ),
        (
            "GET tasks page 1 (500)",
            "GET",
            f"/api/queue/tasks?queue={QUEUE}&state=pending&size=500",
            {},
        ),
        (
            "GET tasks ?type=resize (scans <= 20k)",
            "GET",
            f"/api/queue/tasks?queue={QUEUE}&state=pending&type=resize",
            {},
        ),
        ("GET /api/task", "GET", f"/api/task?queue={QUEUE}&id=t{tasks // 2}", {}),
        ("GET /api/search?id= (11 queues)", "GET", f"/api/search?id=t{tasks // 2}", {}),
        ("GET /api/queue/types (<= 1000 per state)", "GET", f"/api/queue/types?queue={QUEUE}", {}),
        ("GET /api/stats/minutes?window=hour", "GET", "/api/stats/minutes?window=hour", {}),
        ("GET /api/stats/minutes?window=day", "GET", "/api/stats/minutes?window=day", {}),
        ("GET /api/stats/history?days=14", "GET", "/api/stats/history?days=14", {}),
    ]
    headers = {"X-Requested-With": "measure"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            print(f"{'call':<44} {'median ms':>10} {'max ms':>8}")
            for label, method, path, kwargs in calls:
                times = timed(http, method, path, runs, **kwargs)
                print(f"{label:<44} {statistics.median(times):>10.2f} {max(times):>8.2f}")
            body = {"state": "pending", "action": "archive", "limit": 2000}
            bulk = timed(http, "POST", f"/api/queue/bulk?queue={QUEUE}", 5, json=body)
            label = "POST bulk archive step (2000 tasks)"
            print(f"{label:<44} {statistics.median(bulk):>10.2f} {max(bulk):>8.2f}")
            ids = [f"t{n}" for n in range(20_000, 20_500)]
            sel = {"action": "delete", "ids": ids}
            one = timed(
                http, "POST", f"/api/queue/selection?queue={QUEUE}", 1, json=sel, headers=headers
            )
            print(f"{'POST selection delete (500 ids)':<44} {one[0]:>10.2f} {one[0]:>8.2f}")
    finally:
        web.should_exit = True
        thread.join(10)
        inspector.close()
        client.close()


if __name__ == "__main__":
    main()
