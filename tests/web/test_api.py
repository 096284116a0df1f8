"""The dashboard's JSON API against real Redis: reads, each action, bulk actions, errors as JSON
with the right status, and /metrics. Security rules have their own module (test_security)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any, cast

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from rq_sched import Client, Inspector, ManualClock, TaskState
from rq_sched.keys import GlobalKeys
from rq_sched.local_redis import free_port, wait_for_port
from rq_sched.web import create_app, make_server
from tests.seeding import ERROR, Seeded, seed_queue
from tests.web.serve import serving

MUTATE = {"X-Requested-With": "rq-sched"}
"""What the UI sends with every mutating call."""

Api = Callable[..., httpx.Client]


@pytest.fixture
def api(inspector: Inspector) -> Iterator[Api]:
    """Serve a dashboard over ``inspector`` with the given create_app options."""
    with ExitStack() as stack:

        def build(**options: Any) -> httpx.Client:
            return stack.enter_context(serving(create_app(inspector, **options)))

        yield build


@pytest.fixture
def http(api: Api) -> httpx.Client:
    """The default dashboard (no token, not read-only)."""
    return api()


@pytest.fixture
def seeded(r: redis.Redis, namespace: str, clock: ManualClock) -> Seeded:
    return seed_queue(r, namespace, clock, counts={"pending": 25})


def unreachable() -> redis.Redis:
    """A client for a port nothing listens on, failing at once (no retries)."""
    return redis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))


def state_of(inspector: Inspector, task_id: str) -> TaskState:
    return inspector.get_task("default", task_id).state


def test_queues_lists_counts_per_state(
    http: httpx.Client, clock: ManualClock, seeded: Seeded
) -> None:
    clock.advance(5)
    resp = http.get("/api/queues")
    assert resp.status_code == 200
    [queue] = resp.json()
    assert queue["info"]["queue"] == "default"
    assert [queue["info"][s] for s in ("pending", "active", "archived")] == [25, 2, 2]
    assert queue["latency"] == pytest.approx(5)


def test_queue_detail_has_memory_and_history(http: httpx.Client, seeded: Seeded) -> None:
    data = http.get("/api/queues/default?days=3").json()
    assert data["stats"]["memory_bytes"] > 0
    assert [(d["processed"], d["failed"]) for d in data["history"]] == [(0, 0), (0, 0), (2, 4)]


def test_unknown_queue_is_404(http: httpx.Client, seeded: Seeded) -> None:
    resp = http.get("/api/queues/nope")
    assert resp.status_code == 404
    assert resp.json()["error"].startswith("no queue 'nope'")


def test_tasks_page_through_pending(http: httpx.Client, seeded: Seeded) -> None:
    first = http.get("/api/queues/default/tasks?state=pending&page=1&size=10").json()
    last = http.get("/api/queues/default/tasks?state=pending&page=3&size=10").json()
    assert (first["total"], first["pages"], len(first["tasks"])) == (25, 3, 10)
    assert [t["id"] for t in last["tasks"]] == [f"pending-{i}" for i in range(20, 25)]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("state=lost", "unknown task state 'lost'"),
        ("state=pending&page=zero", "query parameter page must be an integer"),
        ("state=pending&size=1000", "page size must be between 1 and 500"),
    ],
)
def test_bad_task_queries_are_400(
    http: httpx.Client, seeded: Seeded, query: str, message: str
) -> None:
    resp = http.get(f"/api/queues/default/tasks?{query}")
    assert resp.status_code == 400
    assert message in resp.json()["error"]


def test_task_detail_has_payload_text_and_full_error(http: httpx.Client, seeded: Seeded) -> None:
    data = http.get("/api/queues/default/tasks/archived-0").json()
    assert data["state"] == "archived"
    assert data["payload"] == {"task": "archived-0", "n": 1}
    assert data["payload_text"] == '{\n  "task": "archived-0",\n  "n": 1\n}'
    assert data["last_error"] == ERROR
    done = http.get("/api/queues/default/tasks/completed-1").json()
    assert done["result_text"] == '{\n  "ok": true\n}'


def test_missing_task_is_404(http: httpx.Client, seeded: Seeded) -> None:
    resp = http.get("/api/queues/default/tasks/ghost")
    assert resp.status_code == 404 and "no task 'ghost'" in resp.json()["error"]


def test_run_moves_a_task_to_pending(
    http: httpx.Client, inspector: Inspector, seeded: Seeded
) -> None:
    resp = http.post("/api/queues/default/tasks/retry-1/run", headers=MUTATE)
    assert resp.status_code == 200 and resp.json() == {"run": "retry-1"}
    assert state_of(inspector, "retry-1") is TaskState.PENDING


def test_an_action_the_state_forbids_is_409(
    http: httpx.Client, inspector: Inspector, seeded: Seeded
) -> None:
    resp = http.post("/api/queues/default/tasks/pending-0/run", headers=MUTATE)
    assert resp.status_code == 409 and "not in a state" in resp.json()["error"]
    resp = http.delete("/api/queues/default/tasks/active-0", headers=MUTATE)
    assert resp.status_code == 409 and "is active" in resp.json()["error"]
    assert state_of(inspector, "active-0") is TaskState.ACTIVE


def test_archive_then_delete_a_task(
    http: httpx.Client, r: redis.Redis, inspector: Inspector, seeded: Seeded
) -> None:
    assert http.post("/api/queues/default/tasks/scheduled-0/archive", headers=MUTATE).is_success
    assert state_of(inspector, "scheduled-0") is TaskState.ARCHIVED
    resp = http.delete("/api/queues/default/tasks/scheduled-0", headers=MUTATE)
    assert resp.json() == {"deleted": "scheduled-0"}
    assert not r.hexists(seeded.keys.msg, "scheduled-0")


def test_cancel_an_active_task_reaches_listening_servers(
    http: httpx.Client, r: redis.Redis, namespace: str, seeded: Seeded
) -> None:
    sub = cast(Any, r).pubsub()  # typed from redis-py 8.2 on, untyped before
    sub.subscribe(GlobalKeys(namespace).cancel_channel)
    sub.get_message(timeout=5)
    try:
        resp = http.post("/api/queues/default/tasks/active-0/cancel", headers=MUTATE)
        message = sub.get_message(timeout=5)
    finally:
        sub.close()
    assert resp.json() == {"cancelled": "active-0", "servers_notified": 1}
    assert message is not None and b"active-0" in message["data"]


def test_unknown_task_action_is_404(http: httpx.Client, seeded: Seeded) -> None:
    resp = http.post("/api/queues/default/tasks/pending-0/explode", headers=MUTATE)
    assert resp.status_code == 404 and "unknown task action" in resp.json()["error"]


def test_pause_and_unpause(http: httpx.Client, r: redis.Redis, seeded: Seeded) -> None:
    resp = http.post("/api/queues/default/pause", headers=MUTATE)
    assert resp.json() == {"queue": "default", "paused": True, "changed": True}
    assert r.exists(seeded.keys.paused)
    assert http.get("/api/queues").json()[0]["info"]["paused"] is True
    http.post("/api/queues/default/unpause", headers=MUTATE)
    assert not r.exists(seeded.keys.paused)


def test_bulk_runs_every_archived_task(http: httpx.Client, r: redis.Redis, seeded: Seeded) -> None:
    body = {"state": "archived", "action": "run"}
    resp = http.post("/api/queues/default/tasks:bulk", json=body)
    assert resp.status_code == 200
    assert (resp.json()["done"], resp.json()["skipped"]) == (2, 0)
    assert r.zcard(seeded.keys.archived) == 0 and r.llen(seeded.keys.pending) == 27


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"state": "pending", "action": "run"}', "run does not apply to pending"),
        ('{"state": "active", "action": "delete"}', "delete does not apply to active"),
        ("[1, 2]", "must be a JSON object"),
        ("{not json", "must be a JSON object"),
    ],
)
def test_bad_bulk_requests_are_400(
    http: httpx.Client, r: redis.Redis, seeded: Seeded, body: str, message: str
) -> None:
    headers = {"Content-Type": "application/json"}
    resp = http.post("/api/queues/default/tasks:bulk", content=body, headers=headers)
    assert resp.status_code == 400 and message in resp.json()["error"]
    assert r.llen(seeded.keys.pending) == 25


def test_delete_queue_needs_force_while_tasks_run(
    http: httpx.Client, r: redis.Redis, seeded: Seeded
) -> None:
    resp = http.delete("/api/queues/default", headers=MUTATE)
    assert resp.status_code == 409 and "active task" in resp.json()["error"]
    resp = http.delete("/api/queues/default?force=1", headers=MUTATE)
    assert resp.status_code == 200 and resp.json()["deleted_keys"] > 0
    assert list(r.scan_iter(match=seeded.keys.pattern())) == []
    assert http.get("/api/queues").json() == []


def test_stats_history_sums_queues(
    http: httpx.Client, r: redis.Redis, namespace: str, clock: ManualClock, seeded: Seeded
) -> None:
    seed_queue(r, namespace, clock, "low", counts={"pending": 0, "active": 0})
    days = http.get("/api/stats/history?days=2").json()
    assert [(d["processed"], d["failed"]) for d in days] == [(0, 0), (4, 8)]
    assert http.get("/api/stats/history?days=2&queue=low").json()[1]["processed"] == 2


def test_servers_scheduler_redis_and_config(http: httpx.Client, namespace: str) -> None:
    assert http.get("/api/servers").json() == []
    assert http.get("/api/scheduler").json() == {"instances": [], "entries": []}
    [node] = http.get("/api/redis").json()
    assert node["info"]["redis_version"]
    config = http.get("/api/config").json()
    assert config["read_only"] is False and config["namespace"] == namespace
    assert config["states"][0] == "pending"


def test_unknown_api_path_and_wrong_method_are_json(http: httpx.Client) -> None:
    missing = http.get("/api/nothing/here")
    assert missing.status_code == 404 and "no endpoint /api/nothing/here" in missing.json()["error"]
    wrong = http.get("/api/queues/default/pause")
    assert wrong.status_code == 405 and "error" in wrong.json()


def test_redis_down_is_503(r: redis.Redis, namespace: str) -> None:
    dead = Inspector(unreachable(), namespace=namespace)
    with serving(create_app(dead)) as http:
        resp = http.get("/api/queues")
    assert resp.status_code == 503
    assert "cannot talk to Redis" in resp.json()["error"]


def test_metrics_report_sizes_counters_and_latency(http: httpx.Client, seeded: Seeded) -> None:
    resp = http.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert "rq_sched_redis_up 1.0" in text
    assert 'rq_sched_queue_tasks{queue="default",state="pending"} 25.0' in text
    assert 'rq_sched_queue_tasks{queue="default",state="archived"} 2.0' in text
    assert 'rq_sched_processed_total{queue="default"} 2.0' in text
    assert 'rq_sched_failed_total{queue="default"} 4.0' in text
    assert 'rq_sched_archive_trimmed_total{queue="default"} 0.0' in text
    assert 'rq_sched_queue_latency_seconds{queue="default"}' in text


def test_metrics_say_when_redis_is_down(namespace: str) -> None:
    dead = Inspector(unreachable(), namespace=namespace)
    with serving(create_app(dead)) as http:
        resp = http.get("/metrics")
    assert resp.status_code == 200 and "rq_sched_redis_up 0.0" in resp.text


def test_make_server_serves_until_told_to_stop(inspector: Inspector) -> None:
    port = free_port()
    server = make_server(create_app(inspector), port=port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        resp = httpx.get(f"http://127.0.0.1:{port}/api/config", timeout=5)
        assert resp.status_code == 200 and resp.json()["read_only"] is False
    finally:
        server.should_exit = True
        thread.join(10)
    assert not thread.is_alive()


def test_a_sharded_queue_is_one_queue_with_a_per_shard_breakdown(
    http: httpx.Client, inspector: Inspector, r: redis.Redis, namespace: str, clock: ManualClock
) -> None:
    inspector.set_shards("orders", 3)
    client = Client(r, namespace=namespace, clock=clock)
    infos = [client.enqueue("t", i, queue="orders") for i in range(6)]
    names = [q["info"]["queue"] for q in http.get("/api/queues").json()]
    assert names == ["orders"]
    stats = http.get("/api/queues/orders").json()["stats"]
    assert stats["info"]["pending"] == 6
    assert [s["info"]["pending"] for s in stats["shards"]] == [2, 2, 2, 0]
    task = http.get(f"/api/queues/orders/tasks/{infos[4].id}").json()
    assert task["payload"] == 4
    resp = http.post("/api/queues/orders/pause", headers=MUTATE)
    assert resp.status_code == 200
    assert all(
        s["info"]["paused"] for s in http.get("/api/queues/orders").json()["stats"]["shards"]
    )
