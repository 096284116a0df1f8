"""Corrupt records planted in Redis: the inspector shows them as corrupt (or skips them) and
never fails a whole list because of one bad record (regressions from a hostile-user review)."""

from __future__ import annotations

import json

import pytest
import redis

from rq_sched import Inspector, ManualClock, TaskState, WrongKeyTypeError
from rq_sched.clock import utc_day
from rq_sched.inspector.minutes import minute_of
from rq_sched.keys import GlobalKeys
from tests.seeding import Seeded, seed_queue


def _seeded(r: redis.Redis, namespace: str, clock: ManualClock) -> Seeded:
    return seed_queue(r, namespace, clock)


def test_bad_names_in_the_queue_registry_are_skipped(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    _seeded(r, namespace, clock)
    r.sadd(GlobalKeys(namespace).queues, "", "a{b", "bad\x00name", b"\xff\xfe")
    assert inspector.queues() == ["default"]
    assert [s.info.queue for s in inspector.all_queue_stats()] == ["default"]
    assert inspector.history(days=2)  # summed over every queue
    assert inspector.minutes(window="hour")
    assert inspector.sample_minute() == 1


def test_scores_out_of_datetime_range_do_not_fail_the_page(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    seeded = _seeded(r, namespace, clock)
    keys = seeded.keys
    r.zadd(keys.retry, {"retry-0": float("inf")})
    r.zadd(keys.scheduled, {"scheduled-0": 1e300})
    r.hset(keys.lost, "active-0", "not-a-number")
    retry = inspector.list_tasks("default", "retry")
    assert {t.id: t.score_at for t in retry.tasks}["retry-0"] is None
    scheduled = inspector.list_tasks("default", "scheduled")
    assert {t.id: t.next_process_at for t in scheduled.tasks}["scheduled-0"] is None
    active = inspector.list_tasks("default", "active")
    assert {t.id: t.lost_count for t in active.tasks}["active-0"] == 0
    assert inspector.get_task("default", "retry-0").next_process_at is None
    assert inspector.get_task("default", "active-0").lost_count == 0


def test_garbage_counters_read_as_zero(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    seeded = _seeded(r, namespace, clock)
    r.set(seeded.keys.processed, "garbage")
    r.set(seeded.keys.failed_on(utc_day(clock.now())), "1e999")
    info = inspector.queue_info("default")
    assert info.processed == 0 and info.failed_today == 0
    assert inspector.history("default", days=1)[0].failed == 0


def test_garbage_minute_samples_are_skipped(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    seeded = _seeded(r, namespace, clock)
    minute = minute_of(clock.now())
    r.hset(
        seeded.keys.minutes,
        mapping={
            "not-a-minute": "{}",
            str(minute - 60_000): json.dumps({"p": "x", "f": None}),
            str(minute - 120_000): json.dumps({"s": 1}),
            str(minute - 180_000): "[1, 2]",
        },
    )
    points = inspector.minutes("default", window="hour")
    assert len(points) == 60
    # The sweep (run when a queue holds too many samples) skips fields that are not minutes.
    r.hset(seeded.keys.minutes, mapping={str(i): "{}" for i in range(2000)})
    clock.advance(60)
    assert inspector.sample_minute() == 1


def test_a_key_of_the_wrong_type_is_named_as_such_not_an_internal_error(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    # Found by the adversarial review: a string planted where the pending list belongs made
    # every read of the queue a raw redis ResponseError (an HTTP 500 "internal error").
    seeded = _seeded(r, namespace, clock)
    r.delete(seeded.keys.pending)
    r.set(seeded.keys.pending, "not a list")
    with pytest.raises(WrongKeyTypeError, match="wrong type where rq_sched keeps its data"):
        inspector.list_tasks("default", TaskState.PENDING)
