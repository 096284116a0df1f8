"""The scripts around leases: dequeue, extend, requeue (graceful hand-back) and recover.

Lease expiry is Redis TIME + the lease duration (the scripts read TIME themselves), so these
tests seed expired leases relative to Redis TIME; fencing tokens have their own tests in
``test_script_fencing.py``.
"""

from __future__ import annotations

import pytest
import redis

from rq_sched import errors, ops
from rq_sched.keys import QueueKeys
from tests.script_support import TOKEN, Store, enc, expire_lease, redis_ms

LEASE_MS = 30_000


@pytest.fixture
def store(r: redis.Redis, namespace: str) -> Store:
    return Store(r, QueueKeys(namespace, "q"))


def test_dequeue_leases_up_to_count_oldest_first(store: Store) -> None:
    store.seed_pending("a", "b", "c")
    store.r.delete(store.keys.marker)
    before = redis_ms(store.r)
    reply = store.run(ops.dequeue(store.keys, LEASE_MS, 2))
    assert reply == [b"a", enc("a"), 0, 1, 0, b"b", enc("b"), 0, 2, 0]
    state = store.snapshot()
    assert set(state["lease"]) == {"a", "b"}
    assert all(
        before + LEASE_MS <= expiry <= before + LEASE_MS + 1000
        for expiry in state["lease"].values()
    )
    assert store.without(state, "lease") == {
        "msg": {"a": enc("a"), "b": enc("b"), "c": enc("c")},
        "pending": ["c"],
        "token": {"a": b"1", "b": b"2"},
        "seq": b"2",
        "marker": {"r": 0},
    }


def test_dequeue_taking_everything_does_not_signal_ready(store: Store) -> None:
    store.seed_pending("a")
    assert store.run(ops.dequeue(store.keys, LEASE_MS, 5)) == [b"a", enc("a"), 0, 1, 0]
    assert "marker" not in store.snapshot()


def test_dequeue_from_empty_queue_returns_nothing_and_writes_nothing(store: Store) -> None:
    assert store.run(ops.dequeue(store.keys, LEASE_MS, 5)) == []
    assert store.snapshot() == {}


def test_dequeue_from_paused_queue_answers_paused_and_keeps_tasks(store: Store) -> None:
    store.seed_pending("a")
    store.r.set(store.keys.paused, "1")
    before = store.snapshot()
    assert store.run(ops.dequeue(store.keys, LEASE_MS, 5)) == errors.PAUSED
    assert ops.parse_dequeue(errors.PAUSED) == []  # type: ignore[arg-type]
    assert store.snapshot() == before


def test_dequeue_drops_ids_whose_message_is_gone(store: Store) -> None:
    store.seed_pending("a", "orphan", "b")
    store.r.hdel(store.keys.msg, "orphan")
    leased = ops.parse_dequeue(store.run(ops.dequeue(store.keys, LEASE_MS, 3)))
    assert [(t.id, t.data) for t in leased] == [("a", enc("a")), ("b", enc("b"))]
    assert set(store.snapshot()["lease"]) == {"a", "b"}
    assert "pending" not in store.snapshot()


def test_dequeue_returns_how_often_each_task_was_lost(store: Store) -> None:
    store.seed_pending("a", "b")
    store.r.hset(store.keys.lost, "b", 2)
    leased = ops.parse_dequeue(store.run(ops.dequeue(store.keys, LEASE_MS, 2)))
    assert [(t.id, t.lost) for t in leased] == [("a", 0), ("b", 2)]


def test_extend_renews_leases_and_reports_gone_ids(store: Store) -> None:
    store.seed_active("a", 5)
    store.seed_active("b", 5)
    before = redis_ms(store.r)
    leases = [("a", TOKEN), ("gone", TOKEN), ("b", TOKEN)]
    assert store.run(ops.extend(store.keys, LEASE_MS, leases)) == [[b"gone"], []]
    expiries = store.snapshot()["lease"]
    assert set(expiries) == {"a", "b"}
    assert all(e >= before + LEASE_MS for e in expiries.values())


def test_extend_never_creates_a_lease(store: Store) -> None:
    store.seed_pending("a")
    assert store.run(ops.extend(store.keys, LEASE_MS, [("a", TOKEN)])) == [[b"a"], []]
    assert "lease" not in store.snapshot()


def test_requeue_hands_active_tasks_back_to_the_front(store: Store) -> None:
    store.seed_pending("waiting")
    store.seed_active("a")
    store.seed_active("b")
    store.r.delete(store.keys.marker)
    leases = [("a", TOKEN), ("not-active", TOKEN), ("b", TOKEN)]
    assert store.run(ops.requeue(store.keys, leases)) == 2
    state = store.snapshot()
    assert {"lease", "token"}.isdisjoint(state)
    assert state["marker"] == {"r": 0}
    assert store.r.rpop(store.keys.pending, 3) == [b"a", b"b", b"waiting"]


def test_requeue_of_no_active_task_changes_nothing(store: Store) -> None:
    store.seed_pending("a")
    before = store.snapshot()
    assert store.run(ops.requeue(store.keys, [("a", TOKEN), ("zzz", TOKEN)])) == 0
    assert store.snapshot() == before


def test_recover_returns_expired_leases_to_the_front_and_counts_the_loss(store: Store) -> None:
    now = redis_ms(store.r)
    store.seed_pending("waiting")
    store.seed_active("second", now - 1)
    store.seed_active("first", now - 2)
    store.seed_active("live", now + 60_000)
    assert store.run(ops.recover(store.keys)) == [[b"first", b"second"], []]
    state = store.snapshot()
    assert state["lease"] == {"live": now + 60_000}
    assert state["token"] == {"live": str(TOKEN).encode()}
    assert state["lost"] == {"first": b"1", "second": b"1"}
    assert state["marker"] == {"r": 0}
    assert store.r.rpop(store.keys.pending, 3) == [b"first", b"second", b"waiting"]


def test_recover_counts_every_loss_of_the_same_task(store: Store) -> None:
    store.seed_pending("a")
    for _ in range(2):
        store.run(ops.dequeue(store.keys, LEASE_MS, 1))
        expire_lease(store, "a")
        store.run(ops.recover(store.keys))
    assert store.snapshot()["lost"] == {"a": b"2"}


def test_recover_is_bounded_per_call(store: Store) -> None:
    now = redis_ms(store.r)
    for i in range(5):
        store.seed_active(f"t{i}", now - 10 + i)
    assert store.run(ops.recover(store.keys, limit=3)) == [[b"t0", b"t1", b"t2"], []]
    assert store.run(ops.recover(store.keys, limit=3)) == [[b"t3", b"t4"], []]
    assert store.run(ops.recover(store.keys, limit=3)) == [[], []]


def test_recover_with_nothing_expired_writes_nothing(store: Store) -> None:
    store.seed_active("a", redis_ms(store.r) + 60_000)
    before = store.snapshot()
    assert store.run(ops.recover(store.keys)) == [[], []]
    assert store.snapshot() == before
