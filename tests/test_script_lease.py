"""The scripts around leases: dequeue, extend, requeue (graceful hand-back) and recover."""

from __future__ import annotations

import pytest
import redis

from rq_sched import errors, ops
from rq_sched.keys import QueueKeys
from tests.script_support import NOW_MS, Store, enc

LEASE = NOW_MS + 30_000


@pytest.fixture
def store(r: redis.Redis, namespace: str) -> Store:
    return Store(r, QueueKeys(namespace, "q"))


def test_dequeue_leases_up_to_count_oldest_first(store: Store) -> None:
    store.seed_pending("a", "b", "c")
    store.r.delete(store.keys.marker)
    reply = store.run(ops.dequeue(store.keys, LEASE, 2))
    assert reply == [b"a", enc("a"), 0, b"b", enc("b"), 0]
    assert store.snapshot() == {
        "msg": {"a": enc("a"), "b": enc("b"), "c": enc("c")},
        "pending": ["c"],
        "lease": {"a": LEASE, "b": LEASE},
        "marker": {"r": 0},
    }


def test_dequeue_taking_everything_does_not_signal_ready(store: Store) -> None:
    store.seed_pending("a")
    assert store.run(ops.dequeue(store.keys, LEASE, 5)) == [b"a", enc("a"), 0]
    assert "marker" not in store.snapshot()


def test_dequeue_from_empty_queue_returns_nothing_and_writes_nothing(store: Store) -> None:
    assert store.run(ops.dequeue(store.keys, LEASE, 5)) == []
    assert store.snapshot() == {}


def test_dequeue_from_paused_queue_answers_paused_and_keeps_tasks(store: Store) -> None:
    store.seed_pending("a")
    store.r.set(store.keys.paused, "1")
    before = store.snapshot()
    assert store.run(ops.dequeue(store.keys, LEASE, 5)) == errors.PAUSED
    assert store.snapshot() == before


def test_dequeue_drops_ids_whose_message_is_gone(store: Store) -> None:
    store.seed_pending("a", "orphan", "b")
    store.r.hdel(store.keys.msg, "orphan")
    reply = store.run(ops.dequeue(store.keys, LEASE, 3))
    assert reply == [b"a", enc("a"), 0, b"b", enc("b"), 0]
    assert store.snapshot()["lease"] == {"a": LEASE, "b": LEASE}
    assert "pending" not in store.snapshot()


def test_dequeue_returns_how_often_each_task_was_lost(store: Store) -> None:
    store.seed_pending("a", "b")
    store.r.hset(store.keys.lost, "b", 2)
    reply = store.run(ops.dequeue(store.keys, LEASE, 2))
    assert reply == [b"a", enc("a"), 0, b"b", enc("b"), 2]


def test_extend_renews_leases_and_reports_gone_ids(store: Store) -> None:
    store.seed_zset("lease", "a", LEASE)
    store.seed_zset("lease", "b", LEASE)
    reply = store.run(ops.extend(store.keys, LEASE + 5000, ["a", "gone", "b"]))
    assert reply == [b"gone"]
    assert store.snapshot()["lease"] == {"a": LEASE + 5000, "b": LEASE + 5000}


def test_extend_to_the_same_expiry_is_not_reported_gone(store: Store) -> None:
    store.seed_zset("lease", "a", LEASE)
    assert store.run(ops.extend(store.keys, LEASE, ["a"])) == []


def test_extend_never_creates_a_lease(store: Store) -> None:
    store.seed_pending("a")
    assert store.run(ops.extend(store.keys, LEASE, ["a"])) == [b"a"]
    assert "lease" not in store.snapshot()


def test_requeue_hands_active_tasks_back_to_the_front(store: Store) -> None:
    store.seed_pending("waiting")
    store.seed_zset("lease", "a", LEASE)
    store.seed_zset("lease", "b", LEASE)
    store.r.delete(store.keys.marker)
    assert store.run(ops.requeue(store.keys, ["a", "not-active", "b"])) == 2
    state = store.snapshot()
    assert "lease" not in state
    assert state["marker"] == {"r": 0}
    assert store.r.rpop(store.keys.pending, 3) == [b"a", b"b", b"waiting"]


def test_requeue_of_no_active_task_changes_nothing(store: Store) -> None:
    store.seed_pending("a")
    before = store.snapshot()
    assert store.run(ops.requeue(store.keys, ["a", "zzz"])) == 0
    assert store.snapshot() == before


def test_recover_returns_expired_leases_to_the_front_and_counts_the_loss(store: Store) -> None:
    store.seed_pending("waiting")
    store.seed_zset("lease", "second", NOW_MS - 1)
    store.seed_zset("lease", "first", NOW_MS - 2)
    store.seed_zset("lease", "live", NOW_MS + 1)
    assert store.run(ops.recover(store.keys, NOW_MS)) == [b"first", b"second"]
    state = store.snapshot()
    assert state["lease"] == {"live": NOW_MS + 1}
    assert state["lost"] == {"first": b"1", "second": b"1"}
    assert state["marker"] == {"r": 0}
    assert store.r.rpop(store.keys.pending, 3) == [b"first", b"second", b"waiting"]


def test_recover_counts_every_loss_of_the_same_task(store: Store) -> None:
    store.seed_zset("lease", "a", NOW_MS - 1)
    store.run(ops.recover(store.keys, NOW_MS))
    store.run(ops.dequeue(store.keys, NOW_MS - 1, 1))
    store.run(ops.recover(store.keys, NOW_MS))
    assert store.snapshot()["lost"] == {"a": b"2"}


def test_recover_is_bounded_per_call(store: Store) -> None:
    for i in range(5):
        store.seed_zset("lease", f"t{i}", NOW_MS - 10 + i)
    assert store.run(ops.recover(store.keys, NOW_MS, limit=3)) == [b"t0", b"t1", b"t2"]
    assert store.run(ops.recover(store.keys, NOW_MS, limit=3)) == [b"t3", b"t4"]
    assert store.run(ops.recover(store.keys, NOW_MS, limit=3)) == []


def test_recover_with_nothing_expired_writes_nothing(store: Store) -> None:
    store.seed_zset("lease", "a", NOW_MS + 1)
    before = store.snapshot()
    assert store.run(ops.recover(store.keys, NOW_MS)) == []
    assert store.snapshot() == before
