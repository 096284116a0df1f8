"""Inspector actions: single-task run / delete / archive / cancel, bulk actions per state,
pause, and deleting a queue — each checked against the Redis state it leaves."""

from __future__ import annotations

from typing import Any, cast

import pytest
import redis

from rq_sched import (
    Client,
    Inspector,
    ManualClock,
    TaskNotFoundError,
    TaskState,
    TaskStateError,
    ValidationError,
    ops,
)
from rq_sched.inspector import actions as inspector_actions
from rq_sched.keys import GlobalKeys, QueueKeys
from rq_sched.models import NewTask, decode_cancel
from tests.seeding import seed_queue


def members(r: redis.Redis, key: str) -> set[str]:
    raw: list[bytes] = r.zrange(key, 0, -1)  # type: ignore[assignment]
    return {m.decode() for m in raw}


def pending(r: redis.Redis, keys: QueueKeys) -> list[str]:
    raw: list[bytes] = r.lrange(keys.pending, 0, -1)  # type: ignore[assignment]
    return [m.decode() for m in raw]


def test_run_task_moves_an_archived_task_to_pending(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    keys = seed_queue(r, namespace, clock).keys
    inspector.run_task("default", "archived-0")
    assert "archived-0" not in members(r, keys.archived)
    assert pending(r, keys)[0] == "archived-0"  # LPUSH: newest end


def test_run_task_refuses_a_pending_task(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    seed_queue(r, namespace, clock)
    with pytest.raises(TaskStateError):
        inspector.run_task("default", "pending-0")


def test_archive_and_delete_single_tasks(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    keys = seed_queue(r, namespace, clock).keys
    inspector.archive_task("default", "pending-1")
    assert "pending-1" in members(r, keys.archived) and "pending-1" not in pending(r, keys)
    inspector.delete_task("default", "scheduled-0")
    assert r.hexists(keys.msg, "scheduled-0") == 0
    with pytest.raises(TaskStateError):
        inspector.delete_task("default", "active-0")
    with pytest.raises(TaskNotFoundError):
        inspector.delete_task("default", "nope")


def test_cancel_announces_an_active_task_to_listening_servers(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    seed_queue(r, namespace, clock)
    sub = cast(Any, r).pubsub()  # typed from redis-py 8.2 on, untyped before
    sub.subscribe(GlobalKeys(namespace).cancel_channel)
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    try:
        assert inspector.cancel_task("default", "active-1") == 1
        message = sub.get_message(timeout=5)
    finally:
        sub.close()
    assert message is not None
    assert decode_cancel(message["data"]) == ("default", "active-1")
    assert inspector.get_task("default", "active-1").state is TaskState.ACTIVE  # the worker acts


def test_cancel_refuses_tasks_that_are_not_active(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    seed_queue(r, namespace, clock)
    with pytest.raises(TaskStateError, match="not active"):
        inspector.cancel_task("default", "pending-0")
    with pytest.raises(TaskNotFoundError):
        inspector.cancel_task("default", "missing")


def test_bulk_run_archived_makes_every_one_pending(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    keys = seed_queue(r, namespace, clock, counts={"archived": 7, "pending": 0}).keys
    result = inspector.bulk("default", "archived", "run")
    assert (result.done, result.skipped) == (7, 0)
    assert r.zcard(keys.archived) == 0
    assert sorted(pending(r, keys)) == [f"archived-{i}" for i in range(7)]


def test_bulk_pages_through_in_bounded_batches(
    r: redis.Redis, namespace: str, clock: ManualClock
) -> None:
    keys = seed_queue(r, namespace, clock, counts={"pending": 11}).keys
    result = inspector_actions.bulk(
        r,
        keys,
        TaskState.PENDING,
        "archive",
        now_s=clock.now(),
        limits=ops.ArchiveLimits(),
        batch=3,
    )
    assert (result.done, result.skipped) == (11, 0)
    assert pending(r, keys) == []
    assert {f"pending-{i}" for i in range(11)} <= members(r, keys.archived)


def test_bulk_skips_tasks_it_cannot_act_on_and_still_finishes(
    r: redis.Redis, namespace: str, clock: ManualClock
) -> None:
    keys = seed_queue(r, namespace, clock, counts={"pending": 5}).keys
    # Ids whose message vanished (deleted meanwhile) sit among the pending ones.
    r.lpush(keys.pending, "ghost-a")
    r.rpush(keys.pending, "ghost-b")
    result = inspector_actions.bulk(
        r,
        keys,
        TaskState.PENDING,
        "delete",
        now_s=clock.now(),
        limits=ops.ArchiveLimits(),
        batch=2,
    )
    assert (result.done, result.skipped) == (5, 2)
    assert sorted(pending(r, keys)) == ["ghost-a", "ghost-b"]
    assert not any(r.hexists(keys.msg, f"pending-{i}") for i in range(5))


def test_bulk_delete_releases_uniqueness_locks(
    namespace: str, client: Client, inspector: Inspector
) -> None:
    for n in range(3):
        client.enqueue("t", n, unique=3600, process_in=60)
    assert inspector.bulk("default", "scheduled", "delete").done == 3
    again = client.enqueue("t", 1, unique=3600)  # would be a duplicate if a lock were left
    assert again.state is TaskState.PENDING


@pytest.mark.parametrize(
    ("state", "action", "message"),
    [
        ("pending", "run", "run does not apply to pending tasks"),
        ("active", "delete", "delete does not apply to active tasks"),
        ("completed", "archive", "archive does not apply to completed tasks"),
        ("pending", "explode", "unknown bulk action"),
        ("lost", "delete", "unknown task state"),
    ],
)
def test_bulk_refuses_actions_that_do_not_apply(
    inspector: Inspector, state: str, action: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        inspector.bulk("default", state, action)


def test_pause_shows_in_stats_and_unpause_clears_it(client: Client, inspector: Inspector) -> None:
    client.enqueue("t")
    assert inspector.pause("default") is True
    assert inspector.pause("default") is False
    assert inspector.queue_stats("default").info.paused
    assert inspector.unpause("default") is True
    assert not inspector.queue_stats("default").info.paused


def test_delete_queue_refuses_while_tasks_are_active(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    keys = seed_queue(r, namespace, clock).keys
    with pytest.raises(TaskStateError, match="2 active task"):
        inspector.delete_queue("default")
    assert r.exists(keys.msg) and inspector.queues() == ["default"]


def test_delete_queue_with_force_removes_every_key(
    r: redis.Redis, namespace: str, clock: ManualClock, client: Client, inspector: Inspector
) -> None:
    keys = seed_queue(r, namespace, clock).keys
    client.enqueue("u", 1, unique=3600, task_id="unique-one")
    seed_queue(r, namespace, clock, "other", counts={"pending": 1})
    deleted = inspector.delete_queue("default", force=True)
    assert deleted >= 8
    assert list(r.scan_iter(match=keys.pattern())) == []
    assert inspector.queues() == ["other"]
    assert inspector.queue_stats("other").info.pending == 1


def test_bulk_moves_more_tasks_than_one_batch(client: Client, inspector: Inspector) -> None:
    count = inspector_actions.BULK_BATCH * 2 + 50
    client.enqueue_many(NewTask(type="t", payload=i, process_in=60) for i in range(count))
    result = inspector.bulk("default", "scheduled", "run")
    assert (result.done, result.skipped) == (count, 0)
    info = inspector.queue_stats("default").info
    assert (info.pending, info.scheduled) == (count, 0)


# --- issue #10: operator archive never silently deletes (12), corrupt tasks (16), cancel (17)


def _fill(client: Client, count: int) -> None:
    for start in range(0, count, 1000):
        client.enqueue_many([NewTask(type="t", payload=i) for i in range(start, start + 1000)])


def test_archive_all_reports_what_the_queues_own_limits_trimmed(
    r: redis.Redis, namespace: str, client: Client, inspector: Inspector
) -> None:
    keys = QueueKeys(namespace, "default")
    # The queue's workers run with a small archive (their janitor stores the limits).
    r.hset(keys.limits, mapping={"max_size": 10, "max_age_ms": 3_600_000})
    client.enqueue_many([NewTask(type="t", payload=i) for i in range(15)])
    assert inspector.archive_limits_of("default") == ops.ArchiveLimits(10, 3600)
    result = inspector.bulk("default", "pending", "archive")
    assert (result.done, result.skipped, result.trimmed) == (15, 0, 5)
    info = inspector.queue_info("default")
    assert (info.archived, info.trimmed) == (10, 5)


@pytest.mark.slow
def test_archive_all_of_15000_pending_tasks_with_default_limits_reports_exactly(
    client: Client, inspector: Inspector
) -> None:
    """The issue's reproduction: 15,000 archived, 10,000 kept, 5,000 trimmed and said so."""
    _fill(client, 15_000)
    result = inspector.bulk("default", "pending", "archive")
    assert (result.done, result.skipped, result.trimmed) == (15_000, 0, 5_000)
    assert inspector.queue_info("default").archived == 10_000


def test_a_single_archive_reports_what_it_trimmed(
    r: redis.Redis, namespace: str, client: Client, inspector: Inspector
) -> None:
    r.hset(QueueKeys(namespace, "default").limits, mapping={"max_size": 1, "max_age_ms": 10**9})
    first, second = (client.enqueue("t", i).id for i in range(2))
    assert inspector.archive_task("default", first) == 0
    assert inspector.archive_task("default", second) == 1
    assert inspector.queue_info("default").trimmed == 1


def test_a_corrupt_task_can_be_deleted_or_archived_on_its_own(
    r: redis.Redis, namespace: str, client: Client, inspector: Inspector
) -> None:
    keys = QueueKeys(namespace, "default")
    for task_id in ("bad-1", "bad-2"):
        client.enqueue("t", 1, task_id=task_id)
        r.hset(keys.msg, task_id, b"\xc1 not msgpack")
    inspector.delete_task("default", "bad-1")
    inspector.archive_task("default", "bad-2")
    assert r.hexists(keys.msg, "bad-1") == 0
    assert members(r, keys.archived) == {"bad-2"}


def test_cancel_is_recorded_with_the_task_in_redis(
    r: redis.Redis, namespace: str, clock: ManualClock, inspector: Inspector
) -> None:
    """Nobody may be listening (the worker died): the record still holds the cancel."""
    seed_queue(r, namespace, clock)
    assert inspector.cancel_task("default", "active-1") == 0
    assert r.hexists(QueueKeys(namespace, "default").cancel, "active-1") == 1
