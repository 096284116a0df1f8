"""The enqueue and enqueue_batch scripts: where a new task lands, and what refuses it."""

from __future__ import annotations

import pytest
import redis

from rq_sched import errors, ops
from rq_sched.keys import QueueKeys
from tests.script_support import NOW_MS, Store, enc, task


@pytest.fixture
def store(r: redis.Redis, namespace: str) -> Store:
    return Store(r, QueueKeys(namespace, "q"))


def test_enqueue_now_lists_task_pending_and_marks_queue_ready(store: Store) -> None:
    assert store.run(ops.enqueue(store.keys, task("a"))) == 1
    assert store.snapshot() == {
        "msg": {"a": enc("a")},
        "pending": ["a"],
        "marker": {"r": 0},
    }


def test_enqueue_keeps_fifo_order_for_rpop(store: Store) -> None:
    for task_id in ("a", "b", "c"):
        store.run(ops.enqueue(store.keys, task(task_id)))
    assert store.r.rpop(store.keys.pending, 3) == [b"a", b"b", b"c"]


def test_enqueue_later_schedules_task_and_announces_due_time(store: Store) -> None:
    due = NOW_MS + 5000
    assert store.run(ops.enqueue(store.keys, task("a", due_ms=due))) == 2
    assert store.snapshot() == {
        "msg": {"a": enc("a", due_ms=due)},
        "scheduled": {"a": due},
        "marker": {"d": due},
    }


def test_enqueue_later_only_lowers_announced_due_time(store: Store) -> None:
    store.run(ops.enqueue(store.keys, task("a", due_ms=NOW_MS + 5000)))
    store.run(ops.enqueue(store.keys, task("b", due_ms=NOW_MS + 9000)))
    assert store.snapshot()["marker"] == {"d": NOW_MS + 5000}
    store.run(ops.enqueue(store.keys, task("c", due_ms=NOW_MS + 1000)))
    assert store.snapshot()["marker"] == {"d": NOW_MS + 1000}


def test_enqueue_unique_sets_lock_held_by_task_id_with_ttl(store: Store) -> None:
    new = task("a", unique="dig", unique_ttl_ms=60_000)
    assert store.run(ops.enqueue(store.keys, new)) == 1
    assert store.snapshot() == {
        "msg": {"a": new.encoded},
        "pending": ["a"],
        "marker": {"r": 0},
        "unique:dig": b"a",
    }
    assert 59_000 < store.r.pttl(store.keys.unique("dig")) <= 60_000


def test_enqueue_unique_refused_while_lock_held_writes_nothing(store: Store) -> None:
    store.run(ops.enqueue(store.keys, task("a", unique="dig", unique_ttl_ms=60_000)))
    before = store.snapshot()
    code = store.run(ops.enqueue(store.keys, task("b", unique="dig", unique_ttl_ms=60_000)))
    assert code == errors.DUPLICATE
    assert store.snapshot() == before


def test_enqueue_without_unique_never_touches_the_placeholder_lock(store: Store) -> None:
    store.run(ops.enqueue(store.keys, task("a")))
    assert store.r.exists(store.keys.unique(None)) == 0


@pytest.mark.parametrize("state", ["pending", "lease", "scheduled", "retry"])
def test_enqueue_with_id_of_live_task_is_conflict_and_writes_nothing(
    store: Store, state: str
) -> None:
    if state == "pending":
        store.seed_pending("a")
    else:
        store.seed_zset(state, "a", NOW_MS + 1000)
    before = store.snapshot()
    assert store.run(ops.enqueue(store.keys, task("a", payload=b"new"))) == errors.CONFLICT
    later = task("a", payload=b"new", due_ms=NOW_MS + 1)
    assert store.run(ops.enqueue(store.keys, later)) == errors.CONFLICT
    assert store.snapshot() == before


def test_enqueue_with_id_of_an_archived_task_replaces_its_record(store: Store) -> None:
    store.seed_zset("archived", "a", NOW_MS)
    store.r.hset(store.keys.result, "a", b"old result")
    assert store.run(ops.enqueue(store.keys, task("a", payload=b"new"))) == 1
    assert store.snapshot() == {
        "msg": {"a": enc("a", payload=b"new")},
        "pending": ["a"],
        "marker": {"r": 0},
    }


def test_enqueue_guard_claims_tick_once(store: Store) -> None:
    guard = ("entry1", NOW_MS)
    assert store.run(ops.enqueue(store.keys, task("a"), guard)) == 1
    assert store.r.get(store.keys.guard("entry1")) == str(NOW_MS).encode()
    before = store.snapshot()
    assert store.run(ops.enqueue(store.keys, task("b"), guard)) == errors.TICK_TAKEN
    assert store.run(ops.enqueue(store.keys, task("c"), ("entry1", NOW_MS - 1))) == -3
    assert store.snapshot() == before


def test_enqueue_guard_accepts_a_later_tick(store: Store) -> None:
    store.run(ops.enqueue(store.keys, task("a"), ("entry1", NOW_MS)))
    assert store.run(ops.enqueue(store.keys, task("b"), ("entry1", NOW_MS + 1000))) == 1
    assert store.r.get(store.keys.guard("entry1")) == str(NOW_MS + 1000).encode()


def test_enqueue_guard_not_advanced_when_unique_lock_refuses(store: Store) -> None:
    store.r.set(store.keys.unique("dig"), "other")
    new = task("a", unique="dig", unique_ttl_ms=1000)
    assert store.run(ops.enqueue(store.keys, new, ("e", NOW_MS))) == errors.DUPLICATE
    assert store.r.exists(store.keys.guard("e")) == 0


def test_enqueue_without_guard_leaves_guard_keys_alone(store: Store) -> None:
    store.run(ops.enqueue(store.keys, task("a")))
    assert not [k for k in store.snapshot() if k.startswith("guard")]


def test_batch_enqueues_ready_and_scheduled_tasks_in_one_call(store: Store) -> None:
    due = NOW_MS + 7000
    tasks = [task("a"), task("b", due_ms=due), task("c")]
    assert store.run(ops.enqueue_batch(store.keys, tasks)) == [1, 2, 1]
    assert store.snapshot() == {
        "msg": {t.id: t.encoded for t in tasks},
        "pending": ["c", "a"],
        "scheduled": {"b": due},
        "marker": {"r": 0, "d": due},
    }


def test_batch_announces_earliest_due_time_only_if_earlier(store: Store) -> None:
    store.r.zadd(store.keys.marker, {"d": NOW_MS + 100})
    tasks = [task("a", due_ms=NOW_MS + 900), task("b", due_ms=NOW_MS + 500)]
    store.run(ops.enqueue_batch(store.keys, tasks))
    assert store.snapshot()["marker"] == {"d": NOW_MS + 100}
    store.r.zadd(store.keys.marker, {"d": NOW_MS + 9999})
    store.run(ops.enqueue_batch(store.keys, [task("c", due_ms=NOW_MS + 700), task("d")]))
    assert store.snapshot()["marker"] == {"d": NOW_MS + 700, "r": 0}


def test_batch_refuses_live_ids_one_by_one(store: Store) -> None:
    store.seed_pending("live")
    store.seed_zset("archived", "dead", NOW_MS)
    tasks = [task("x"), task("live", payload=b"new"), task("dead", payload=b"new")]
    assert store.run(ops.enqueue_batch(store.keys, tasks)) == [1, errors.CONFLICT, 1]
    state = store.snapshot()
    assert state["msg"] == {"x": enc("x"), "live": enc("live"), "dead": enc("dead", payload=b"new")}
    assert state["pending"] == ["dead", "x", "live"]
    assert "archived" not in state


def test_batch_refuses_an_id_repeated_within_the_batch(store: Store) -> None:
    tasks = [task("a"), task("a", payload=b"second")]
    assert store.run(ops.enqueue_batch(store.keys, tasks)) == [1, errors.CONFLICT]
    assert store.snapshot()["msg"] == {"a": enc("a")}
    assert store.snapshot()["pending"] == ["a"]


def test_batch_of_only_refused_tasks_does_not_touch_marker(store: Store) -> None:
    store.seed_pending("a")
    assert store.run(ops.enqueue_batch(store.keys, [task("a", payload=b"new")])) == [
        errors.CONFLICT
    ]
    assert "marker" not in store.snapshot()


# --- idempotency window (issue #10, cases 9 and 10) ------------------------------------------


def test_enqueue_with_id_of_a_retained_completed_task_is_a_conflict(store: Store) -> None:
    """The id stays idempotent while its completed record is kept: the task does not run
    again. Replacing it is explicit: delete it first (Inspector.delete_task)."""
    store.seed_zset("completed", "a", NOW_MS + 60_000)
    store.r.hset(store.keys.result, "a", b"old result")
    before = store.snapshot()
    assert store.run(ops.enqueue(store.keys, task("a", payload=b"new"))) == errors.CONFLICT
    assert store.run(ops.enqueue_batch(store.keys, [task("a", payload=b"new")])) == [
        errors.CONFLICT
    ]
    assert store.snapshot() == before
    assert store.run(ops.delete(store.keys, "a", None)) == 1
    assert store.run(ops.enqueue(store.keys, task("a", payload=b"new"))) == 1


@pytest.mark.parametrize("due_ms", [0, NOW_MS + 5000])
def test_a_resent_enqueue_of_the_same_message_is_recognised_as_success(
    store: Store, due_ms: int
) -> None:
    """redis-py resends a script after a timeout; the first call had already stored the task."""
    call = ops.enqueue(store.keys, task("a", due_ms=due_ms, unique="dig", unique_ttl_ms=60_000))
    first = store.run(call)
    after_first = store.snapshot()
    assert store.run(call) == first
    assert store.snapshot() == after_first


def test_a_resent_batch_is_recognised_task_by_task(store: Store) -> None:
    call = ops.enqueue_batch(store.keys, [task("a"), task("b", due_ms=NOW_MS + 5)])
    assert store.run(call) == [1, 2]
    after_first = store.snapshot()
    assert store.run(call) == [1, 2]
    assert store.snapshot() == after_first


def test_a_resend_after_the_task_was_leased_is_still_success(store: Store) -> None:
    call = ops.enqueue(store.keys, task("a"))
    store.run(call)
    store.run(ops.dequeue(store.keys, 30_000, 1))
    assert store.run(call) == 1
    assert store.snapshot()["lease"].keys() == {"a"}
    assert "pending" not in store.snapshot()
