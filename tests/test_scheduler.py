"""The scheduler component, driven tick by tick with a manual clock against a real Redis:
exactly-once per tick across instances, misfire policies, DST, task options, Redis state."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis

from rq_sched import Inspector, ManualClock
from rq_sched.errors import RedisUnavailableError, ValidationError
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.local_redis import RedisCluster, RedisServer
from rq_sched.message import TaskMessage, decode
from rq_sched.models import ScheduleEntryInfo, ScheduleRecord
from rq_sched.scheduler.entries import build_entry
from rq_sched.scheduler.scheduler import Scheduler
from tests.polling import wait_until

T0 = 1_800_000_000.0  # a multiple of 60 s (and of 1 h)
MakeScheduler = Callable[..., Scheduler]


@pytest.fixture
def make(r: redis.Redis, namespace: str, clock: ManualClock) -> MakeScheduler:
    def build(**options: object) -> Scheduler:
        return Scheduler(r, namespace=namespace, clock=clock, **options)  # type: ignore[arg-type]

    return build


def raw(value: object) -> bytes:
    assert isinstance(value, bytes), value
    return value


def pending(r: redis.Redis, namespace: str, queue: str = "default") -> list[str]:
    """Ids in the pending list, oldest first."""
    ids = r.lrange(QueueKeys(namespace, queue).pending, 0, -1)
    return [raw(i).decode() for i in reversed(ids)]


def message_of(r: redis.Redis, namespace: str, task_id: str, queue: str = "default") -> TaskMessage:
    return decode(raw(r.hget(QueueKeys(namespace, queue).msg, task_id)))


def tick_id(name: str, at: float) -> str:
    return f"cron:{name}:{round(at * 1000)}"


# -- exactly once -----------------------------------------------------------------------------


def test_a_due_tick_is_enqueued_with_an_id_derived_from_entry_and_fire_time(
    make: MakeScheduler, r: redis.Redis, namespace: str, clock: ManualClock
) -> None:
    scheduler = make()
    scheduler.add("beat", "@every 60s", "beat", {"n": 1})
    clock.set(T0)
    wake = scheduler.tick()
    assert pending(r, namespace) == [tick_id("beat", T0)]
    message = message_of(r, namespace, tick_id("beat", T0))
    assert (message.type, message.payload, message.enqueued_at) == ("beat", {"n": 1}, T0 * 1000)
    assert wake == T0 + 5  # the heartbeat comes before the next tick
    assert r.sismember(GlobalKeys(namespace).queues, "default")


def test_tick_returns_the_next_fire_time_and_enqueues_nothing_before_it(
    make: MakeScheduler, r: redis.Redis, namespace: str, clock: ManualClock
) -> None:
    scheduler = make(heartbeat_interval=3600)
    scheduler.add("beat", "@every 60s", "beat")
    clock.set(T0 + 1)
    assert scheduler.tick() == T0 + 60
    assert scheduler.tick(T0 + 59.999) == T0 + 60
    assert pending(r, namespace) == []
    scheduler.tick(T0 + 60)
    assert pending(r, namespace) == [tick_id("beat", T0 + 60)]


def test_several_schedulers_enqueue_each_tick_once(
    make: MakeScheduler, r: redis.Redis, namespace: str
) -> None:
    schedulers = [make() for _ in range(3)]
    for scheduler in schedulers:
        scheduler.add("beat", "* * * * * *", "beat")
    for second in range(10):
        for scheduler in schedulers[second % 3 :] + schedulers[: second % 3]:
            scheduler.tick(T0 + second)
    assert pending(r, namespace) == [tick_id("beat", T0 + s) for s in range(10)]


def test_a_consumed_tick_is_not_enqueued_again(
    make: MakeScheduler, r: redis.Redis, namespace: str, inspector: Inspector
) -> None:
    first, late = make(), make()
    for scheduler in (first, late):
        scheduler.add("beat", "@every 10s", "beat")
    late.tick(T0 - 1)  # both know the entry before the tick
    first.tick(T0)
    inspector.delete_task("default", tick_id("beat", T0))  # a worker ran it
    late.tick(T0 + 0.5)  # the guard refuses the tick, though no live task holds its id
    assert pending(r, namespace) == []
    assert r.hlen(QueueKeys(namespace, "default").msg) == 0


def test_an_archived_tick_does_not_block_the_next_one(
    make: MakeScheduler, r: redis.Redis, namespace: str, inspector: Inspector
) -> None:
    scheduler = make()
    scheduler.add("beat", "@every 10s", "beat")
    scheduler.tick(T0)
    inspector.archive_task("default", tick_id("beat", T0))
    scheduler.tick(T0 + 10)
    assert pending(r, namespace) == [tick_id("beat", T0 + 10)]
    assert r.zscore(QueueKeys(namespace, "default").archived, tick_id("beat", T0)) is not None


def test_a_reload_that_keeps_an_entry_does_not_fire_its_tick_twice(
    make: MakeScheduler, r: redis.Redis, namespace: str
) -> None:
    scheduler = make()
    scheduler.add("beat", "@every 10s", "beat", {"v": 1})
    scheduler.tick(T0)
    scheduler.replace([build_entry("beat", "@every 10s", "beat", {"v": 2})])
    scheduler.tick(T0 + 0.2)
    scheduler.tick(T0 + 10)
    ids = pending(r, namespace)
    assert ids == [tick_id("beat", T0), tick_id("beat", T0 + 10)]
    assert message_of(r, namespace, ids[1]).payload == {"v": 2}


# -- late and missed ticks --------------------------------------------------------------------


def test_a_tick_handled_within_the_tolerance_is_still_enqueued(
    make: MakeScheduler, r: redis.Redis, namespace: str
) -> None:
    scheduler = make()
    scheduler.add("beat", "@every 1s", "beat")
    scheduler.tick(T0)
    scheduler.tick(T0 + 2.5)  # stalled: T0+1 is 1.5 s late, T0+2 0.5 s
    assert pending(r, namespace) == [tick_id("beat", T0 + s) for s in (0, 1, 2)]


def test_skip_drops_ticks_missed_while_no_scheduler_ran(
    make: MakeScheduler, r: redis.Redis, namespace: str
) -> None:
    before = make()
    before.add("beat", "@every 60s", "beat")
    before.tick(T0)
    after = make()  # a restart ten minutes later
    after.add("beat", "@every 60s", "beat")
    wake = after.tick(T0 + 600 + 30)
    assert pending(r, namespace) == [tick_id("beat", T0)]
    after.tick(T0 + 660)
    assert pending(r, namespace) == [tick_id("beat", T0), tick_id("beat", T0 + 660)]
    assert wake == T0 + 635


def test_run_once_enqueues_only_the_newest_missed_tick(
    make: MakeScheduler, r: redis.Redis, namespace: str
) -> None:
    before = make()
    before.add("beat", "@every 60s", "beat", misfire="run_once", grace=timedelta(minutes=5))
    before.tick(T0)
    after = make()
    after.add("beat", "@every 60s", "beat", misfire="run_once", grace=timedelta(minutes=5))
    after.tick(T0 + 630)
    after.tick(T0 + 631)
    assert pending(r, namespace) == [tick_id("beat", T0), tick_id("beat", T0 + 600)]


def test_run_once_skips_missed_ticks_older_than_grace(
    make: MakeScheduler, r: redis.Redis, namespace: str, clock: ManualClock
) -> None:
    day = datetime(2027, 1, 4, tzinfo=UTC).timestamp()
    for restart_after, expected in ((30 * 60, 1), (2 * 3600, 0)):
        scheduler = make()
        name = f"report{expected}"
        scheduler.add(name, "0 3 * * *", "report", misfire="run_once", grace="1h")
        scheduler.tick(day + 3600)  # 01:00, entry known
        scheduler.tick(day + 3 * 3600 + restart_after)  # nothing ran at 03:00
        assert [i for i in pending(r, namespace) if name in i] == [tick_id(name, day + 3 * 3600)][
            :expected
        ]


def test_run_once_finds_the_newest_missed_tick_of_a_dense_spec(
    make: MakeScheduler, r: redis.Redis, namespace: str
) -> None:
    day = datetime(2027, 1, 4, tzinfo=UTC).timestamp()
    spec = "* * 3 * * *"  # every second from 03:00:00 to 03:59:59
    before, after = make(), make()
    for scheduler in (before, after):
        scheduler.add("burst", spec, "burst", misfire="run_once", grace="60d")
    before.tick(day - 40 * 86400 + 3 * 3600)  # fired 40 days ago; nothing ran since
    after.tick(day + 10 * 3600)  # 144,000 missed ticks: more than a forward walk may visit
    assert pending(r, namespace) == [
        tick_id("burst", day - 40 * 86400 + 3 * 3600),
        tick_id("burst", day + 4 * 3600 - 1),
    ]


def test_run_once_with_several_schedulers_restarting_gives_one_task(
    make: MakeScheduler, r: redis.Redis, namespace: str
) -> None:
    schedulers = [make() for _ in range(3)]
    for scheduler in schedulers:
        scheduler.add("beat", "@every 60s", "beat", misfire="run_once")
    for scheduler in schedulers:
        scheduler.tick(T0 - 30)
    for scheduler in schedulers:
        scheduler.tick(T0 + 1000)  # each restarts after the same outage
    assert pending(r, namespace) == [tick_id("beat", T0 + 960)]


def test_a_tick_past_its_deadline_is_recorded_not_enqueued(
    make: MakeScheduler, r: redis.Redis, namespace: str
) -> None:
    scheduler = make()
    scheduler.add("beat", "@every 60s", "beat", misfire="run_once", deadline=30)
    scheduler.tick(T0 - 1)
    scheduler.tick(T0 + 45)  # the missed tick T0 may run until T0+30 only
    assert pending(r, namespace) == []
    record = ScheduleRecord.from_json(
        raw(r.lindex(GlobalKeys(namespace).scheduler_history("beat"), 0))
    )
    assert record.task_id == tick_id("beat", T0)
    assert record.error is not None
    assert "deadline" in record.error


# -- task options -----------------------------------------------------------------------------


def test_task_options_reach_the_message_and_deadline_counts_from_the_tick(
    make: MakeScheduler, r: redis.Redis, namespace: str
) -> None:
    scheduler = make()
    scheduler.add(
        "beat", "@every 60s", "beat", queue="cron", max_retry=2, timeout=timedelta(seconds=9),
        deadline="2m", retention=60, headers={"team": "ops"},
    )  # fmt: skip
    scheduler.tick(T0 - 1)
    scheduler.tick(T0 + 1)  # 1 s late
    message = message_of(r, namespace, tick_id("beat", T0), "cron")
    assert (message.max_retry, message.timeout, message.retention) == (2, 9.0, 60)
    assert message.headers == {"team": "ops"}
    assert message.deadline == (T0 + 120) * 1000
    assert message.enqueued_at == (T0 + 1) * 1000


def test_unique_entries_report_a_held_lock_in_the_history(
    make: MakeScheduler, r: redis.Redis, namespace: str
) -> None:
    scheduler = make()
    scheduler.add("beat", "@every 10s", "beat", unique="1h")
    scheduler.tick(T0)
    scheduler.tick(T0 + 10)  # the first task is still pending and holds the lock
    assert pending(r, namespace) == [tick_id("beat", T0)]
    records = r.lrange(GlobalKeys(namespace).scheduler_history("beat"), 0, -1)
    newest = ScheduleRecord.from_json(records[0])
    assert newest.error is not None
    assert "unique" in newest.error


# -- daylight saving time ---------------------------------------------------------------------


def run_days(scheduler: Scheduler, clock: ManualClock, start: datetime, until: datetime) -> None:
    clock.set(start)
    while clock.now() < until.timestamp():
        clock.set(scheduler.tick())


def fired_local(r: redis.Redis, namespace: str, tz: str) -> list[str]:
    return [
        datetime.fromtimestamp(int(i.rsplit(":", 1)[1]) / 1000, ZoneInfo(tz)).strftime(
            "%m-%d %H:%M%z"
        )
        for i in pending(r, namespace)
    ]


def test_spring_forward_runs_a_skipped_0230_job_once_at_0300(
    make: MakeScheduler, r: redis.Redis, namespace: str, clock: ManualClock
) -> None:
    ny = ZoneInfo("America/New_York")
    scheduler = make(heartbeat_interval=3600)
    scheduler.add("night", "30 2 * * *", "night", timezone="America/New_York")
    run_days(
        scheduler, clock, datetime(2025, 3, 8, 12, tzinfo=ny), datetime(2025, 3, 10, 12, tzinfo=ny)
    )
    assert fired_local(r, namespace, "America/New_York") == ["03-09 03:00-0400", "03-10 02:30-0400"]


def test_fall_back_runs_a_0130_job_once(
    make: MakeScheduler, r: redis.Redis, namespace: str, clock: ManualClock
) -> None:
    ny = ZoneInfo("America/New_York")
    scheduler = make(heartbeat_interval=3600)
    scheduler.add("night", "30 1 * * *", "night", timezone="America/New_York")
    scheduler.add("half", "*/30 * * * *", "half", timezone="America/New_York")
    run_days(
        scheduler,
        clock,
        datetime(2025, 11, 2, 0, 50, tzinfo=ny),
        datetime(2025, 11, 2, 6, 40, tzinfo=UTC),
    )
    night = [i for i in pending(r, namespace) if ":night:" in i]
    assert len(night) == 1
    assert fired_local(r, namespace, "America/New_York") == [
        "11-02 01:00-0400", "11-02 01:30-0400", "11-02 01:30-0400", "11-02 01:00-0500",
        "11-02 01:30-0500",
    ]  # fmt: skip


# -- state in Redis ---------------------------------------------------------------------------


def test_entries_and_a_capped_history_are_published(
    make: MakeScheduler, r: redis.Redis, namespace: str
) -> None:
    scheduler = make(history_length=3)
    scheduler.add("beat", "@every 10s", "beat", {"to": "ops"}, queue="cron")
    for step in range(5):
        scheduler.tick(T0 + 10 * step)
    keys = GlobalKeys(namespace)
    info = ScheduleEntryInfo.from_json(r.hget(keys.scheduler_entries, "beat") or b"")
    assert (info.name, info.spec, info.type, info.queue, info.misfire) == (
        "beat", "@every 10s", "beat", "cron", "skip",
    )  # fmt: skip
    assert info.payload_preview == '{"to": "ops"}'
    assert info.prev_fire == datetime.fromtimestamp(T0 + 40, UTC)
    assert info.next_fire == datetime.fromtimestamp(T0 + 50, UTC)
    history = [ScheduleRecord.from_json(x) for x in r.lrange(keys.scheduler_history("beat"), 0, -1)]
    assert [h.task_id for h in history] == [tick_id("beat", T0 + 10 * s) for s in (4, 3, 2)]
    assert all(h.error is None and h.queue == "cron" for h in history)


def test_only_the_instance_that_enqueued_writes_history(
    make: MakeScheduler, r: redis.Redis, namespace: str
) -> None:
    schedulers = [make(), make()]
    for scheduler in schedulers:
        scheduler.add("beat", "@every 10s", "beat")
    for step in range(3):
        for scheduler in schedulers:
            scheduler.tick(T0 + 10 * step)
    assert r.llen(GlobalKeys(namespace).scheduler_history("beat")) == 3


def test_heartbeat_registers_the_instance_until_stopped(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    scheduler = Scheduler.from_url(redis_url, namespace=namespace)
    scheduler.add("beat", "@every 1s", "beat")
    scheduler.start()
    try:
        running = scheduler.running
        assert running
        wait_until(lambda: pending(r, namespace), timeout=5, what="the first tick's task")
        expiry = r.zscore(GlobalKeys(namespace).schedulers, scheduler.instance_id)
        assert expiry is not None
        assert expiry > time.time() * 1000 + 20_000
    finally:
        scheduler.close()
    assert not scheduler.running
    assert r.zscore(GlobalKeys(namespace).schedulers, scheduler.instance_id) is None


def test_an_entry_removed_by_its_only_owner_disappears_at_once(
    make: MakeScheduler, r: redis.Redis, namespace: str
) -> None:
    keys = GlobalKeys(namespace)
    scheduler = make()
    scheduler.add("beat", "@every 10s", "beat")
    scheduler.add("keep", "@every 10s", "keep")
    scheduler.tick(T0)
    assert scheduler.remove("beat")
    scheduler.tick(T0 + 1)
    assert set(r.hkeys(keys.scheduler_entries)) == {b"keep"}
    assert not r.exists(keys.scheduler_history("beat"))


def test_an_entry_another_scheduler_still_owns_stays_until_nobody_refreshes_it(
    make: MakeScheduler, r: redis.Redis, namespace: str
) -> None:
    keys = GlobalKeys(namespace)
    mine, other = make(), make()
    for scheduler in (mine, other):
        scheduler.add("beat", "@every 10s", "beat")
    mine.tick(T0)
    other.tick(T0)
    mine.replace([])
    mine.tick(T0 + 1)
    assert r.hexists(keys.scheduler_entries, "beat")  # other still runs it
    mine.tick(T0 + 60)  # other stopped refreshing it long ago
    assert not r.hexists(keys.scheduler_entries, "beat")


# -- bad input --------------------------------------------------------------------------------


def test_duplicate_names_are_refused(make: MakeScheduler) -> None:
    scheduler = make()
    scheduler.add("beat", "@every 10s", "beat")
    with pytest.raises(ValidationError, match="duplicate schedule entry 'beat'"):
        scheduler.add("beat", "@every 20s", "other")
    assert [e.spec for e in scheduler.entries] == ["@every 10s"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"spec": "61 * * * *"}, "schedule entry 'job': invalid cron spec '61 \\* \\* \\* \\*'"),
        ({"timezone": "Europe/Atlantis"}, "schedule entry 'job': unknown time zone"),
        ({"max_retries": 3}, "'job': unknown option 'max_retries'; did you mean 'max_retry'"),
        ({"task_id": "x"}, "schedule entry 'job': unknown option 'task_id'"),
        ({"misfire": "catch_up"}, "schedule entry 'job': misfire must be one of"),
        ({"queue": "a b"}, "schedule entry 'job': queue name"),
        ({"payload": {"at": datetime(2025, 1, 1, tzinfo=UTC)}}, "'job': payload cannot be encoded"),
        ({"timeout": "soon"}, "schedule entry 'job': timeout: 'soon' is not a duration"),
    ],
)  # fmt: skip
def test_bad_entries_are_refused_with_the_entry_named(
    make: MakeScheduler, options: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"spec": "@every 10s", **options}
    with pytest.raises(ValidationError, match=message):
        make().add("job", type="job", **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tolerance": float("inf")}, "tolerance must be a finite number of seconds"),
        ({"heartbeat_interval": float("nan")}, "heartbeat_interval must be a finite number"),
        ({"tolerance": 0}, "tolerance must be at least 1 ms"),
        ({"history_length": 0}, "history_length must be >= 1"),
    ],
)
def test_bad_scheduler_settings_are_refused(
    make: MakeScheduler, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        make(**options)


def test_tick_reports_an_unreachable_redis(tmp_path: Path, namespace: str) -> None:
    server = RedisServer(tmp_path / "redis").start()
    scheduler = Scheduler.from_url(server.url, namespace=namespace, clock=ManualClock(T0))
    scheduler.add("beat", "@every 10s", "beat")
    scheduler.tick()
    server.stop(kill=True)
    with pytest.raises(RedisUnavailableError):
        scheduler.tick(T0 + 10)
    scheduler.redis.close()


@pytest.mark.cluster
def test_schedulers_on_a_cluster_enqueue_each_tick_once(
    cluster: RedisCluster, namespace: str
) -> None:
    clock = ManualClock(T0)
    schedulers = [
        Scheduler.from_url(cluster.url, cluster=True, namespace=namespace, clock=clock)
        for _ in range(2)
    ]
    try:
        for scheduler in schedulers:
            for queue in ("alpha", "beta", "gamma"):
                scheduler.add(f"beat-{queue}", "@every 10s", "beat", queue=queue)
        for step in range(3):
            for scheduler in schedulers:
                scheduler.tick(T0 + 10 * step)
        inspector = Inspector(schedulers[0].redis, namespace=namespace)
        for queue in ("alpha", "beta", "gamma"):
            assert inspector.queue_info(queue).pending == 3
        entries = schedulers[0].redis.hkeys(GlobalKeys(namespace).scheduler_entries)
        assert len(entries) == 3
    finally:
        for scheduler in schedulers:
            scheduler.redis.close()
