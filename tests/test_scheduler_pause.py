"""Pausing and resuming a periodic entry, driven tick by tick with a manual clock against a real
Redis: skipped ticks are recorded once (whatever the number of schedulers), nothing is enqueued,
a resume fires only the next tick (misfire policy respected), and the pause lives in Redis
(survives a restart and a reload)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest
import redis

from rq_sched import Inspector, ManualClock
from rq_sched.errors import TaskNotFoundError
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.models import ScheduleRecord
from rq_sched.scheduler.entries import build_entry
from rq_sched.scheduler.scheduler import Scheduler
from rq_sched.web import create_app
from tests.web.serve import serving

MUTATE = {"X-Requested-With": "rq-sched"}

T0 = 1_800_000_000.0  # a multiple of 60 s
MakeScheduler = Callable[..., Scheduler]


@pytest.fixture
def make(r: redis.Redis, namespace: str, clock: ManualClock) -> MakeScheduler:
    def build(**options: object) -> Scheduler:
        return Scheduler(r, namespace=namespace, clock=clock, **options)  # type: ignore[arg-type]

    return build


def pending(r: redis.Redis, namespace: str) -> list[str]:
    ids: list[bytes] = r.lrange(QueueKeys(namespace, "default").pending, 0, -1)  # type: ignore[assignment]
    return [i.decode() for i in reversed(ids)]


def history(r: redis.Redis, namespace: str, entry: str) -> list[ScheduleRecord]:
    raw = r.lrange(GlobalKeys(namespace).scheduler_history(entry), 0, -1)
    return [ScheduleRecord.from_json(item) for item in reversed(raw)]  # oldest first


def tick_id(name: str, at: float) -> str:
    return f"cron:{name}:{round(at * 1000)}"


def started(make: MakeScheduler, clock: ManualClock, **options: object) -> Scheduler:
    """A scheduler with entry ``beat`` every 60 s, published at T0 - 30 (no tick yet)."""
    scheduler = make()
    scheduler.add("beat", "@every 60s", "beat", **options)  # type: ignore[arg-type]
    clock.set(T0 - 30)
    scheduler.tick()
    return scheduler


def test_a_paused_entry_enqueues_nothing_and_records_each_tick_as_skipped(
    make: MakeScheduler, r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    scheduler = started(make, clock)
    assert inspector.pause_entry("beat") is True
    for n in range(3):
        scheduler.tick(T0 + 60 * n)
    assert pending(r, namespace) == []
    records = history(r, namespace, "beat")
    assert [(rec.fire_time.timestamp(), rec.skipped, rec.task_id) for rec in records] == [
        (T0 + 60 * n, True, "") for n in range(3)
    ]
    status = inspector.scheduler(history=3)
    (entry,) = status.entries
    assert entry.paused is True
    assert entry.outcomes == ["skipped"] * 3


def test_a_resumed_entry_fires_only_its_next_tick_with_run_once(
    make: MakeScheduler, r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    scheduler = started(make, clock, misfire="run_once", grace=3600)
    inspector.pause_entry("beat")
    for n in range(5):
        scheduler.tick(T0 + 60 * n)
    assert inspector.resume_entry("beat") is True
    scheduler.tick(T0 + 4 * 60 + 30)  # between ticks: nothing is caught up
    assert pending(r, namespace) == []
    scheduler.tick(T0 + 5 * 60)
    assert pending(r, namespace) == [tick_id("beat", T0 + 5 * 60)]
    assert inspector.scheduler(history=1).entries[0].paused is False


def test_a_scheduler_started_while_an_entry_was_paused_does_not_catch_up_on_resume(
    make: MakeScheduler, r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    first = started(make, clock, misfire="run_once", grace=3600)
    inspector.pause_entry("beat")
    for n in range(3):
        first.tick(T0 + 60 * n)
    first.stop()
    # A restart: a new process with the same entry, still paused (the flag is in Redis).
    second = make()
    second.add("beat", "@every 60s", "beat", misfire="run_once", grace=3600)
    second.tick(T0 + 3 * 60)
    assert pending(r, namespace) == []
    assert history(r, namespace, "beat")[-1].skipped
    inspector.resume_entry("beat")
    second.tick(T0 + 3 * 60 + 10)
    assert pending(r, namespace) == []
    second.tick(T0 + 4 * 60)
    assert pending(r, namespace) == [tick_id("beat", T0 + 4 * 60)]


def test_several_schedulers_record_a_skipped_tick_once(
    make: MakeScheduler, r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    schedulers = [make(), make(), make()]
    for s in schedulers:
        s.add("beat", "@every 60s", "beat")
        s.tick(T0 - 30)
    inspector.pause_entry("beat")
    for s in schedulers:
        s.tick(T0)
    assert [rec.skipped for rec in history(r, namespace, "beat")] == [True]
    assert pending(r, namespace) == []


def test_a_pause_survives_a_config_reload(
    make: MakeScheduler, r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    scheduler = started(make, clock)
    inspector.pause_entry("beat")
    scheduler.replace([build_entry("beat", "@every 60s", "beat", {"changed": True})])
    scheduler.tick(T0)
    assert pending(r, namespace) == []
    assert inspector.scheduler().entries[0].paused is True


def test_an_entry_dropped_by_its_only_scheduler_loses_its_pause(
    make: MakeScheduler, r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    scheduler = started(make, clock)
    inspector.pause_entry("beat")
    scheduler.remove("beat")
    scheduler.tick(T0)
    assert not r.sismember(GlobalKeys(namespace).scheduler_paused, "beat")


def test_pause_is_idempotent_and_takes_the_name_of_an_entry(
    make: MakeScheduler, clock: ManualClock, inspector: Inspector
) -> None:
    scheduler = make()
    scheduler.add("nightly report (EU)", "@every 60s", "report")
    scheduler.tick(T0 - 30)
    (entry,) = scheduler.entries
    assert entry.id != entry.name
    assert inspector.pause_entry(entry.name) is True
    assert inspector.pause_entry(entry.id) is False
    assert inspector.scheduler().entries[0].paused is True
    assert inspector.resume_entry(entry.name) is True
    assert inspector.resume_entry(entry.id) is False


def test_pausing_an_unknown_entry_is_refused_and_writes_nothing(
    r: redis.Redis, namespace: str, inspector: Inspector
) -> None:
    with pytest.raises(TaskNotFoundError, match="no periodic entry 'nope'"):
        inspector.pause_entry("nope")
    assert not r.exists(GlobalKeys(namespace).scheduler_paused)


# -- the CLI (a real subprocess) and the dashboard API ------------------------------------------


def rq_sched(redis_url: str, namespace: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rq_sched.cli", *argv, "--url", redis_url, "--namespace", namespace],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )


def test_cli_pauses_lists_and_resumes_an_entry(
    make: MakeScheduler, r: redis.Redis, redis_url: str, namespace: str, clock: ManualClock
) -> None:
    scheduler = started(make, clock)
    done = rq_sched(redis_url, namespace, "cron", "pause", "beat")
    assert (done.returncode, done.stdout.strip()) == (
        0,
        "entry beat is now paused (its ticks are skipped)",
    )
    scheduler.tick(T0)
    listing = rq_sched(redis_url, namespace, "cron")
    assert listing.returncode == 0
    assert "beat (paused)" in listing.stdout and "skipped (paused)" in listing.stdout
    as_json = json.loads(rq_sched(redis_url, namespace, "cron", "--json").stdout)
    assert as_json["entries"][0]["paused"] is True
    assert as_json["entries"][0]["history"][0]["skipped"] is True
    again = rq_sched(redis_url, namespace, "cron", "resume", "beat", "--json")
    assert json.loads(again.stdout) == {"entry": "beat", "paused": False, "changed": True}
    assert not r.exists(GlobalKeys(namespace).scheduler_paused)


def test_cli_refuses_an_unknown_entry_or_a_missing_one(
    r: redis.Redis, redis_url: str, namespace: str
) -> None:
    unknown = rq_sched(redis_url, namespace, "cron", "pause", "nope\x1b[2J")
    assert unknown.returncode != 0
    assert "no periodic entry" in unknown.stderr and "\x1b" not in unknown.stderr
    missing = rq_sched(redis_url, namespace, "cron", "pause")
    assert missing.returncode != 0 and "needs the entry's id or name" in missing.stderr
    assert not r.exists(GlobalKeys(namespace).scheduler_paused)


def test_api_pauses_and_resumes_an_entry(
    make: MakeScheduler, r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    scheduler = started(make, clock)
    with serving(create_app(inspector)) as http:
        reply = http.post("/api/scheduler/pause", params={"entry": "beat"}, headers=MUTATE)
        assert (reply.status_code, reply.json()) == (
            200,
            {"entry": "beat", "paused": True, "changed": True},
        )
        scheduler.tick(T0)
        (entry,) = http.get("/api/scheduler").json()["entries"]
        assert entry["paused"] is True and entry["outcomes"] == ["skipped"]
        assert entry["history"][0]["skipped"] is True
        reply = http.post("/api/scheduler/resume", params={"entry": "beat"}, headers=MUTATE)
        assert reply.json()["changed"] is True
        assert http.get("/api/scheduler").json()["entries"][0]["paused"] is False
        unknown = http.post("/api/scheduler/pause", params={"entry": "nope"}, headers=MUTATE)
        assert unknown.status_code == 404
        forged = http.post("/api/scheduler/pause", params={"entry": "beat"})
        assert forged.status_code == 403
    assert not r.exists(GlobalKeys(namespace).scheduler_paused)


def test_a_read_only_dashboard_cannot_pause_an_entry(
    make: MakeScheduler, r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    started(make, clock)
    with serving(create_app(inspector, read_only=True)) as http:
        reply = http.post("/api/scheduler/pause", params={"entry": "beat"}, headers=MUTATE)
    assert reply.status_code == 403
    assert not r.exists(GlobalKeys(namespace).scheduler_paused)
