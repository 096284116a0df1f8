"""The upkeep and operator scripts: forward, trim, delete, run_now and set_paused."""

from __future__ import annotations

import pytest
import redis

from rq_sched import errors, ops
from rq_sched.keys import QueueKeys
from tests.script_support import NOW_MS, Store, enc


@pytest.fixture
def store(r: redis.Redis, namespace: str) -> Store:
    return Store(r, QueueKeys(namespace, "q"))


# --- forward ----------------------------------------------------------------------------------


def test_forward_moves_due_tasks_oldest_first_and_returns_next_due(store: Store) -> None:
    store.seed_zset("scheduled", "s1", NOW_MS - 5)
    store.seed_zset("scheduled", "s2", NOW_MS)
    store.seed_zset("scheduled", "later", NOW_MS + 700)
    store.seed_zset("retry", "r1", NOW_MS - 9)
    store.seed_zset("retry", "rlater", NOW_MS + 300)
    assert store.run(ops.forward(store.keys, NOW_MS)) == [3, NOW_MS + 300]
    state = store.snapshot()
    assert state["scheduled"] == {"later": NOW_MS + 700}
    assert state["retry"] == {"rlater": NOW_MS + 300}
    assert state["marker"] == {"r": 0, "d": NOW_MS + 300}
    assert store.r.rpop(store.keys.pending, 5) == [b"s1", b"s2", b"r1"]


def test_forward_is_bounded_per_call(store: Store) -> None:
    for i in range(4):
        store.seed_zset("scheduled", f"s{i}", NOW_MS - 10 + i)
    store.seed_zset("retry", "r", NOW_MS - 100)
    # the overdue retry task was left for the next call; its time says "call again"
    assert store.run(ops.forward(store.keys, NOW_MS, limit=3)) == [3, NOW_MS - 100]
    assert store.run(ops.forward(store.keys, NOW_MS, limit=3)) == [2, -1]
    assert store.r.rpop(store.keys.pending, 5) == [b"s0", b"s1", b"s2", b"s3", b"r"]


def test_forward_with_nothing_due_only_announces_next_due(store: Store) -> None:
    store.seed_zset("scheduled", "a", NOW_MS + 50)
    assert store.run(ops.forward(store.keys, NOW_MS)) == [0, NOW_MS + 50]
    assert store.snapshot()["marker"] == {"d": NOW_MS + 50}
    assert "pending" not in store.snapshot()


def test_forward_on_empty_queue_writes_nothing(store: Store) -> None:
    assert store.run(ops.forward(store.keys, NOW_MS)) == [0, -1]
    assert store.snapshot() == {}


# --- trim -------------------------------------------------------------------------------------


def test_trim_drops_completed_tasks_whose_retention_ended(store: Store) -> None:
    store.seed_zset("completed", "gone", NOW_MS)
    store.seed_zset("completed", "kept", NOW_MS + 1)
    store.r.hset(store.keys.result, mapping={"gone": b"1", "kept": b"2"})
    limits = ops.ArchiveLimits(max_size=10, max_age_s=60)
    assert store.run(ops.trim(store.keys, NOW_MS, limits)) == [1, 0]
    assert store.without(store.snapshot(), "limits") == {
        "msg": {"kept": enc("kept")},
        "completed": {"kept": NOW_MS + 1},
        "result": {"kept": b"2"},
    }


def test_trim_drops_archived_tasks_by_age_then_size(store: Store) -> None:
    store.seed_zset("archived", "ancient", NOW_MS - 61_000)
    for i in range(4):
        store.seed_zset("archived", f"a{i}", NOW_MS - 10 + i)
    limits = ops.ArchiveLimits(max_size=2, max_age_s=60)
    assert store.run(ops.trim(store.keys, NOW_MS, limits)) == [0, 3]
    assert store.without(store.snapshot(), "limits") == {
        "msg": {"a2": enc("a2"), "a3": enc("a3")},
        "archived": {"a2": NOW_MS - 8, "a3": NOW_MS - 7},
    }


def test_trim_is_bounded_per_call_and_per_kind(store: Store) -> None:
    for i in range(5):
        store.seed_zset("completed", f"c{i}", NOW_MS - i)
        store.seed_zset("archived", f"a{i}", NOW_MS - 120_000 - i)
    limits = ops.ArchiveLimits(max_size=10, max_age_s=60)
    assert store.run(ops.trim(store.keys, NOW_MS, limits, limit=3)) == [3, 3]
    assert store.run(ops.trim(store.keys, NOW_MS, limits, limit=3)) == [2, 2]
    assert store.run(ops.trim(store.keys, NOW_MS, limits, limit=3)) == [0, 0]
    assert store.without(store.snapshot(), "limits") == {}


def test_trim_stores_the_limits_it_applies_as_the_queues_own(store: Store) -> None:
    """Operator archive actions then trim by the limits the queue's workers run with."""
    limits = ops.ArchiveLimits(max_size=7, max_age_s=60)
    store.run(ops.trim(store.keys, NOW_MS, limits))
    assert store.snapshot() == {"limits": {"max_size": b"7", "max_age_ms": b"60000"}}


def test_trim_counts_the_archived_tasks_it_drops_in_the_queues_limits(store: Store) -> None:
    """A trim deletes by policy, and says so: a 45-minute soak lost 3,071 archived tasks to
    another server's smaller limits, and nothing in Redis counted them."""
    for i in range(4):
        store.seed_zset("archived", f"a{i}", NOW_MS - 10 + i)
    limits = ops.ArchiveLimits(max_size=1, max_age_s=60)
    assert store.run(ops.trim(store.keys, NOW_MS, limits)) == [0, 3]
    assert store.run(ops.trim(store.keys, NOW_MS, limits)) == [0, 0]
    assert store.snapshot()["limits"] == {
        "max_size": b"1",
        "max_age_ms": b"60000",
        "trimmed": b"3",
    }


# --- delete -----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["scheduled", "retry", "archived", "completed"])
def test_delete_removes_task_from_every_key(store: Store, state: str) -> None:
    store.seed_zset(state, "a", NOW_MS)
    store.seed_zset(state, "other", NOW_MS)
    store.r.hset(store.keys.result, "a", b"r")
    store.r.hset(store.keys.lost, "a", 1)
    store.r.set(store.keys.unique("dig"), "a")
    assert store.run(ops.delete(store.keys, "a", "dig")) == 1
    assert store.snapshot() == {"msg": {"other": enc("other")}, state: {"other": NOW_MS}}


def test_delete_takes_a_pending_task_out_of_the_list(store: Store) -> None:
    store.seed_pending("a", "b")
    assert store.run(ops.delete(store.keys, "a", None)) == 1
    assert store.snapshot() == {"msg": {"b": enc("b")}, "pending": ["b"]}


def test_delete_keeps_a_unique_lock_held_by_another_task(store: Store) -> None:
    store.seed_zset("scheduled", "a", NOW_MS)
    store.r.set(store.keys.unique("dig"), "b")
    store.run(ops.delete(store.keys, "a", "dig"))
    assert store.r.get(store.keys.unique("dig")) == b"b"


def test_delete_refuses_active_task_and_reports_unknown(store: Store) -> None:
    store.seed_active("a")
    before = store.snapshot()
    assert store.run(ops.delete(store.keys, "a", None)) == errors.TASK_ACTIVE
    assert store.run(ops.delete(store.keys, "zzz", None)) == errors.NOT_FOUND
    assert store.snapshot() == before


# --- run_now ----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["scheduled", "retry", "archived"])
def test_run_now_makes_task_ready_at_once(store: Store, state: str) -> None:
    store.seed_zset(state, "a", NOW_MS + 1000)
    assert store.run(ops.run_now(store.keys, "a")) == 1
    assert store.snapshot() == {"msg": {"a": enc("a")}, "pending": ["a"], "marker": {"r": 0}}


@pytest.mark.parametrize(
    ("state", "code"),
    [
        ("pending", errors.WRONG_STATE),
        ("completed", errors.WRONG_STATE),
        ("lease", errors.TASK_ACTIVE),
        ("missing", errors.NOT_FOUND),
    ],
)
def test_run_now_refuses_tasks_it_does_not_apply_to(store: Store, state: str, code: int) -> None:
    if state == "pending":
        store.seed_pending("a")
    elif state != "missing":
        store.seed_zset(state, "a", NOW_MS)
    before = store.snapshot()
    assert store.run(ops.run_now(store.keys, "a")) == code
    assert store.snapshot() == before


# --- set_paused -------------------------------------------------------------------------------


def test_pause_sets_flag_once(store: Store) -> None:
    assert store.run(ops.set_paused(store.keys, True)) == 1
    assert store.run(ops.set_paused(store.keys, True)) == 0
    assert store.snapshot() == {"paused": b"1"}


def test_unpause_clears_flag_and_wakes_workers(store: Store) -> None:
    store.run(ops.set_paused(store.keys, True))
    assert store.run(ops.set_paused(store.keys, False)) == 1
    assert store.snapshot() == {"marker": {"r": 0}}
    assert store.run(ops.set_paused(store.keys, False)) == 0
