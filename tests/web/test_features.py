"""The dashboard API's second-version features against real Redis: find a task by id across
queues, filter a state by type, act on a selection, bulk actions in bounded steps, per-minute
samples for the hour/day charts, the per-type breakdown, and each scheduler fire's outcome."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import redis

from rq_sched import Client, Inspector, ManualClock, TaskState
from rq_sched.clock import from_ms, to_ms
from rq_sched.inspector import minutes
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.models import ScheduleEntryInfo, ScheduleRecord
from rq_sched.web import create_app
from tests.seeding import Seeded, seed_queue
from tests.web.serve import serving

MUTATE = {"X-Requested-With": "rq-sched"}


@pytest.fixture
def seeded(r: redis.Redis, namespace: str, clock: ManualClock) -> Seeded:
    return seed_queue(r, namespace, clock, counts={"pending": 25})


@pytest.fixture
def http(inspector: Inspector) -> Iterator[httpx.Client]:
    with serving(create_app(inspector, sample_minutes=False)) as client:
        yield client


def test_search_finds_a_task_in_any_queue(
    http: httpx.Client, r: redis.Redis, namespace: str, clock: ManualClock, seeded: Seeded
) -> None:
    only_pending = {"pending": 1, "active": 0, "scheduled": 0, "retry": 0, "archived": 0}
    seed_queue(r, namespace, clock, "other", counts={**only_pending, "completed": 0})
    found = http.get("/api/search", params={"id": "retry-1"}).json()
    assert [(t["queue"], t["state"]) for t in found] == [("default", "retry")]
    both = http.get("/api/search", params={"id": "pending-0"}).json()
    assert sorted(t["queue"] for t in both) == ["default", "other"]
    assert http.get("/api/search", params={"id": "ghost"}).json() == []
    assert http.get("/api/search").status_code == 400


def test_type_filter_pages_through_matching_tasks_only(
    http: httpx.Client, client: Client, seeded: Seeded
) -> None:
    for n in range(5):
        client.enqueue("resize", {"n": n}, task_id=f"img-{n}")
    params: dict[str, str | int] = {
        "queue": "default", "state": "pending", "type": "resize", "size": 2, "page": 2
    }  # fmt: skip
    page = http.get("/api/queue/tasks", params=params).json()
    assert [t["id"] for t in page["tasks"]] == ["img-2", "img-3"]
    assert (page["total"], page["pages"], page["complete"], page["scanned"]) == (5, 3, True, 30)
    none = http.get("/api/queue/tasks", params={**params, "type": "nope", "page": 1}).json()
    assert (none["total"], none["tasks"]) == (0, [])


def test_a_selection_action_reports_each_id(
    http: httpx.Client, inspector: Inspector, seeded: Seeded
) -> None:
    body = {"action": "archive", "ids": ["pending-0", "pending-1", "active-0", "ghost"]}
    result = http.post("/api/queue/selection", params={"queue": "default"}, json=body).json()
    assert result["done"] == ["pending-0", "pending-1"]
    assert sorted(result["failed"]) == ["active-0", "ghost"]
    assert inspector.get_task("default", "pending-1").state is TaskState.ARCHIVED
    assert inspector.get_task("default", "active-0").state is TaskState.ACTIVE


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"action": "explode", "ids": ["a"]}, "unknown action"),
        ({"action": "run", "ids": []}, "between 1 and 500"),
        ({"action": "run", "ids": "pending-0"}, "list of task id strings"),
    ],
)
def test_bad_selections_are_400(
    http: httpx.Client, seeded: Seeded, body: dict[str, object], message: str
) -> None:
    resp = http.post("/api/queue/selection", params={"queue": "default"}, json=body)
    assert resp.status_code == 400 and message in resp.json()["error"]


def test_bulk_with_a_limit_goes_step_by_step(
    http: httpx.Client, r: redis.Redis, seeded: Seeded
) -> None:
    body = {"state": "pending", "action": "archive", "limit": 10}
    steps = []
    for _ in range(5):
        result = http.post("/api/queue/bulk", params={"queue": "default"}, json=body).json()
        steps.append((result["done"], result["remaining"]))
        if not result["remaining"]:
            break
    assert steps == [(10, 15), (10, 5), (5, 0)]
    assert r.llen(seeded.keys.pending) == 0 and r.zcard(seeded.keys.archived) == 27


def test_per_minute_samples_give_processed_failed_size_and_latency(
    r: redis.Redis, inspector: Inspector, clock: ManualClock, seeded: Seeded
) -> None:
    clock.set(clock.now() // 60 * 60 + 5)  # 5 s into a minute
    assert inspector.sample_minute() == 1
    assert inspector.sample_minute() == 0  # one sample per minute, whoever takes it
    r.incrby(seeded.keys.processed, 7)
    r.incrby(seeded.keys.failed, 2)
    clock.advance(60)
    inspector.sample_minute()
    points = inspector.minutes("default", window="hour")
    assert len(points) == 60
    last, before = points[-1], points[-2]
    assert (last.processed, last.failed) == (7, 2)
    assert last.size == 25 + 2 + 2 + 2  # pending, active, scheduled, retry
    assert last.latency is not None and last.latency > before.latency  # type: ignore[operator]
    assert (before.processed, before.size) == (None, 31)  # nothing sampled before it
    assert all(p.size is None for p in points[:-2])


def test_samples_are_bounded_to_a_day(
    r: redis.Redis, inspector: Inspector, clock: ManualClock, seeded: Seeded
) -> None:
    start = clock.now() // 60 * 60
    for n in range(1, 200):  # as if sampled long ago
        r.hset(seeded.keys.minutes, str(int(start * 1000) - 60_000 * n), "{}")
    clock.set(start + minutes.KEEP_MINUTES * 60 + 30)
    inspector.sample_minute()
    assert r.hlen(seeded.keys.minutes) <= minutes.KEEP_MINUTES
    day = inspector.minutes(window="day")
    assert len(day) == minutes.KEEP_MINUTES and day[-1].size == 31


def test_minutes_api_and_its_window_check(
    http: httpx.Client, inspector: Inspector, seeded: Seeded
) -> None:
    inspector.sample_minute()
    points = http.get("/api/stats/minutes", params={"window": "hour"}).json()
    assert len(points) == 60 and points[-1]["size"] == 31
    bad = http.get("/api/stats/minutes", params={"window": "week"})
    assert bad.status_code == 400 and "hour or day" in bad.json()["error"]


def test_the_app_samples_while_it_serves(
    r: redis.Redis, inspector: Inspector, seeded: Seeded
) -> None:
    with serving(create_app(inspector)) as client:
        deadline = time.monotonic() + 10
        while not r.hlen(seeded.keys.minutes) and time.monotonic() < deadline:
            client.get("/api/config")
    assert r.hlen(seeded.keys.minutes) == 1


def test_type_breakdown_counts_per_type_and_state(http: httpx.Client, seeded: Seeded) -> None:
    data = http.get("/api/queue/types", params={"queue": "default"}).json()
    assert data["types"]["email:send"] == {"pending": 25}
    assert data["types"]["report"] == {"scheduled": 2}
    assert data["types"]["work"] == {"active": 2, "retry": 2, "archived": 2, "completed": 2}
    assert data["sampled"]["pending"] == data["totals"]["pending"] == 25


def test_each_scheduler_fire_shows_its_tasks_state_now(
    http: httpx.Client, r: redis.Redis, namespace: str, seeded: Seeded
) -> None:
    keys = GlobalKeys(namespace)
    now = from_ms(to_ms(time.time()))
    entry = ScheduleEntryInfo(
        "e1", "nightly", "0 3 * * *", "work", "default", "UTC", "skip", "{}",
        now + timedelta(hours=3), now - timedelta(hours=21), now,
    )  # fmt: skip
    r.hset(keys.scheduler_entries, "e1", entry.to_json())
    fires = [("completed-0", None), ("archived-1", None), ("ghost", None), ("", "bad payload")]
    for task_id, error in fires:
        record = ScheduleRecord(now, now, task_id, "default", error)
        r.rpush(keys.scheduler_history("e1"), record.to_json())
    [status] = http.get("/api/scheduler", params={"history": 10}).json()["entries"]
    assert status["outcomes"] == ["completed", "archived", "gone", "error"]


def test_a_sample_is_small_json(r: redis.Redis, inspector: Inspector, seeded: Seeded) -> None:
    inspector.sample_minute()
    [raw] = r.hvals(QueueKeys(seeded.keys.namespace, "default").minutes)
    assert len(raw) < 80 and set(json.loads(raw)) == {"p", "f", "s", "l"}


def test_run_an_entry_now_copies_its_latest_stored_fire(
    http: httpx.Client, r: redis.Redis, namespace: str, client: Client, seeded: Seeded
) -> None:
    keys = GlobalKeys(namespace)
    now = from_ms(to_ms(time.time()))
    entry = ScheduleEntryInfo(
        "e2", "hourly", "@every 1h", "report", "default", "UTC", "skip", "{...}",
        now + timedelta(hours=1), now, now,
    )  # fmt: skip
    r.hset(keys.scheduler_entries, "e2", entry.to_json())
    fired = client.enqueue("report", {"full": "payload", "n": 7}, max_retry=3, task_id="e2:t1")
    for task_id in ("e2:t1", "e2:gone"):  # newest first: the gone one is skipped
        record = ScheduleRecord(now, now, task_id, "default")
        r.lpush(keys.scheduler_history("e2"), record.to_json())
    resp = http.post("/api/scheduler/run", params={"entry": "e2"}, headers=MUTATE)
    assert resp.status_code == 200, resp.text
    task = resp.json()["task"]
    assert task["id"] != fired.id and task["id"].startswith("e2:now:")
    assert (task["type"], task["payload"], task["max_retry"]) == (
        "report", {"full": "payload", "n": 7}, 3
    )  # fmt: skip
    [status] = [e for e in http.get("/api/scheduler").json()["entries"] if e["info"]["id"] == "e2"]
    assert status["history"][0]["task_id"] == task["id"]
    assert status["outcomes"][0] == "pending"


def test_running_an_entry_with_nothing_stored_or_unknown_is_refused(
    http: httpx.Client, r: redis.Redis, namespace: str, seeded: Seeded
) -> None:
    now = from_ms(to_ms(time.time()))
    entry = ScheduleEntryInfo(
        "e3", "empty", "@every 1h", "report", "default", "UTC", "skip", "{}", None, None, now
    )
    r.hset(GlobalKeys(namespace).scheduler_entries, "e3", entry.to_json())
    resp = http.post("/api/scheduler/run", params={"entry": "e3"}, headers=MUTATE)
    assert resp.status_code == 409 and "no stored fire" in resp.json()["error"]
    missing = http.post("/api/scheduler/run", params={"entry": "nope"}, headers=MUTATE)
    assert missing.status_code == 404
    assert r.llen(GlobalKeys(namespace).scheduler_history("e3")) == 0
