"""Fenced leases (issue #10, cases 5, 6, 17, 18): every lease has a token that settling,
extending and handing back must present; lease time is Redis TIME; a cancel is recorded with
the task so it holds whoever holds the task."""

from __future__ import annotations

import msgpack
import pytest
import redis

from rq_sched import errors, ops
from rq_sched.keys import QueueKeys
from tests.script_support import NOW_MS, Store, enc, expire_lease, redis_ms

NOW_S = NOW_MS / 1000
LEASE_MS = 30_000
LIMITS = ops.ArchiveLimits(max_size=100, max_age_s=3600)


@pytest.fixture
def store(r: redis.Redis, namespace: str) -> Store:
    return Store(r, QueueKeys(namespace, "q"))


def lease_one(store: Store, lease_ms: int = LEASE_MS) -> ops.Leased:
    [leased] = ops.parse_dequeue(store.run(ops.dequeue(store.keys, lease_ms, 1)))
    return leased


def stale_and_fresh(store: Store) -> tuple[ops.Leased, ops.Leased]:
    """Worker A leases "a", stalls past its lease; the recoverer returns it; B leases it."""
    store.seed_pending("a")
    first = lease_one(store)
    expire_lease(store, "a")
    assert store.run(ops.recover(store.keys)) == [[b"a"], []]
    second = lease_one(store)
    return first, second


def archive_active(store: Store, leased: ops.Leased, unique: str | None = None) -> object:
    return store.run(
        ops.archive_active(
            store.keys,
            leased.id,
            leased.token,
            encoded=b"failed",
            unique=unique,
            now_s=NOW_S,
            limits=LIMITS,
            count_failure=True,
        )
    )


# --- case 5: fencing tokens -------------------------------------------------------------------


def test_every_lease_gets_a_new_token(store: Store) -> None:
    first, second = stale_and_fresh(store)
    assert first.token != second.token
    assert store.r.hget(store.keys.token, "a") == str(second.token).encode()


def test_a_stale_failure_is_refused_and_the_new_holder_succeeds(store: Store) -> None:
    stale, fresh = stale_and_fresh(store)
    retry = ops.retry(store.keys, "a", stale.token, encoded=b"by A", due_ms=0, now_s=NOW_S)
    assert store.run(retry) == errors.NOT_ACTIVE
    assert store.r.hget(store.keys.msg, "a") == enc("a")
    assert store.run(ops.done(store.keys, [ops.Ack("a", fresh.token)], NOW_S)) == [1]
    assert store.r.hget(store.keys.msg, "a") is None


def test_a_stale_ack_is_reported_not_settled_and_moves_nothing(store: Store) -> None:
    stale, _ = stale_and_fresh(store)
    before = store.snapshot()
    assert store.run(ops.done(store.keys, [ops.Ack("a", stale.token)], NOW_S)) == [0, b"a"]
    assert store.snapshot() == before


def test_a_stale_archive_is_refused(store: Store) -> None:
    stale, _ = stale_and_fresh(store)
    before = store.snapshot()
    assert archive_active(store, stale) == errors.NOT_ACTIVE
    assert store.snapshot() == before


def test_a_stale_extend_does_not_renew_and_reports_the_lease_gone(store: Store) -> None:
    stale, fresh = stale_and_fresh(store)
    store.r.zadd(store.keys.lease, {"a": 5})
    reply = store.run(ops.extend(store.keys, LEASE_MS, [("a", stale.token)]))
    assert reply == [[b"a"], []]
    assert store.r.zscore(store.keys.lease, "a") == 5
    store.run(ops.extend(store.keys, LEASE_MS, [("a", fresh.token)]))
    assert store.r.zscore(store.keys.lease, "a") != 5


def test_a_stale_requeue_does_not_hand_back_the_new_holders_task(store: Store) -> None:
    stale, fresh = stale_and_fresh(store)
    assert store.run(ops.requeue(store.keys, [("a", stale.token)])) == 0
    assert store.r.zscore(store.keys.lease, "a") is not None
    assert store.run(ops.requeue(store.keys, [("a", fresh.token)])) == 1
    assert store.snapshot()["pending"] == ["a"]
    assert "token" not in store.snapshot()


def test_settling_ends_the_lease_and_its_token(store: Store) -> None:
    store.seed_pending("a")
    leased = lease_one(store)
    store.run(ops.done(store.keys, [ops.Ack("a", leased.token)], NOW_S))
    assert {"lease", "token"}.isdisjoint(store.snapshot())


# --- case 6: Redis TIME ---------------------------------------------------------------------


def test_lease_expiry_is_redis_time_plus_the_duration(store: Store) -> None:
    store.seed_pending("a")
    before = redis_ms(store.r)
    lease_one(store)
    after = redis_ms(store.r)
    expiry = store.r.zscore(store.keys.lease, "a")
    assert expiry is not None and before + LEASE_MS <= expiry <= after + LEASE_MS


def test_recover_leaves_a_lease_that_redis_time_says_is_live(store: Store) -> None:
    """No host clock is an input: a host far ahead cannot recover a healthy task."""
    store.seed_pending("a")
    lease_one(store, lease_ms=2_000)
    assert store.run(ops.recover(store.keys)) == [[], []]
    assert store.r.zscore(store.keys.lease, "a") is not None


def test_extend_renews_from_redis_time(store: Store) -> None:
    store.seed_pending("a")
    leased = lease_one(store, lease_ms=1_000)
    before = redis_ms(store.r)
    store.run(ops.extend(store.keys, 60_000, [("a", leased.token)]))
    expiry = store.r.zscore(store.keys.lease, "a")
    assert expiry is not None and expiry >= before + 60_000


# --- case 17: cancel recorded in Redis -------------------------------------------------------


def test_cancel_is_recorded_only_for_an_active_task(store: Store) -> None:
    store.seed_pending("a", "b")
    lease_one(store)
    assert store.run(ops.cancel(store.keys, "a", "dig")) == 1
    assert store.run(ops.cancel(store.keys, "b", None)) == errors.WRONG_STATE
    assert store.run(ops.cancel(store.keys, "zzz", None)) == errors.NOT_FOUND
    assert store.snapshot()["cancel"] == {"a": b"dig"}


def test_recover_leases_a_cancelled_task_to_the_caller_to_archive_instead_of_requeuing(
    store: Store,
) -> None:
    store.seed_pending("a", "b")
    [dead, _] = ops.parse_dequeue(store.run(ops.dequeue(store.keys, LEASE_MS, 2)))
    store.run(ops.cancel(store.keys, "a", "dig"))
    expire_lease(store, "a")
    expire_lease(store, "b")
    requeued, leased = store.run(ops.recover(store.keys, lease_ms=LEASE_MS))
    assert requeued == [b"b"]
    assert leased[0::3] == [b"a"] and leased[1] == store.r.hget(store.keys.msg, "a")
    token = int(leased[2])
    assert token != dead.token and store.snapshot()["pending"] == ["b"]
    # The recoverer died before archiving: its lease expires, the next recover hands it on.
    expire_lease(store, "a")
    [_, again] = store.run(ops.recover(store.keys, lease_ms=LEASE_MS))
    assert again[0::3] == [b"a"]
    stale = archive_cancelled(store, "a", token)
    assert stale == errors.NOT_ACTIVE
    assert archive_cancelled(store, "a", int(again[2])) == 1
    state = store.snapshot()
    assert set(state["archived"]) == {"a"}
    stored = store.r.hget(store.keys.msg, "a")
    assert isinstance(stored, bytes) and b"TaskCancelledError" in stored
    assert {"cancel", "lease", "token"}.isdisjoint(state)


def archive_cancelled(store: Store, task_id: str, token: int) -> object:
    """What the Recoverer does with a cancelled task the recover script leased to it."""
    message = msgpack.packb([1, "t", None, 0, 25, 1, 0, 0, 0, None, None, "TaskCancelledError"])
    return store.run(
        ops.archive_active(
            store.keys, task_id, token, encoded=message, unique=None, now_s=NOW_S,
            limits=LIMITS, count_failure=False,
        )
    )  # fmt: skip


def test_dequeue_reports_a_cancel_recorded_before_the_task_was_handed_back(store: Store) -> None:
    store.seed_pending("a")
    first = lease_one(store)
    store.run(ops.cancel(store.keys, "a", None))
    store.run(ops.requeue(store.keys, [("a", first.token)]))
    again = lease_one(store)
    assert again.cancelled
    assert archive_active(store, again) == 1
    assert "cancel" not in store.snapshot()


def test_extend_tells_the_holder_about_a_recorded_cancel(store: Store) -> None:
    store.seed_pending("a", "b")
    leases = [(t.id, t.token) for t in ops.parse_dequeue(store.run(ops.dequeue(store.keys, 1, 2)))]
    store.run(ops.cancel(store.keys, "b", None))
    assert store.run(ops.extend(store.keys, LEASE_MS, leases)) == [[], [b"b"]]


def test_settling_clears_the_cancel_record(store: Store) -> None:
    store.seed_pending("a")
    leased = lease_one(store)
    store.run(ops.cancel(store.keys, "a", None))
    store.run(ops.done(store.keys, [ops.Ack("a", leased.token)], NOW_S))
    assert "cancel" not in store.snapshot()


def test_deleting_a_task_clears_its_cancel_record(store: Store) -> None:
    store.seed_pending("a")
    leased = lease_one(store)
    store.run(ops.cancel(store.keys, "a", None))
    store.run(ops.requeue(store.keys, [("a", leased.token)]))
    assert store.run(ops.delete(store.keys, "a", None)) == 1
    assert "cancel" not in store.snapshot()


# --- case 18 ----------------------------------------------------------------------------------


def test_same_task_leased_twice_to_one_worker_settles_once(store: Store) -> None:
    """One worker holds "a", stalls; it is recovered and leased again to the same worker: the
    two attempts differ by token, so only the current one settles."""
    old, new = stale_and_fresh(store)
    acks = [ops.Ack("a", old.token), ops.Ack("a", new.token)]
    assert store.run(ops.done(store.keys, acks, NOW_S)) == [1, b"a"]
    assert store.snapshot()["processed"] == b"1"


def test_redis_down_longer_than_a_lease_the_late_settle_is_refused(store: Store) -> None:
    """The worker's settle could not reach Redis for longer than the lease: the recoverer
    returned the task, another worker took it; the late settle arrives and changes nothing."""
    late, _ = stale_and_fresh(store)
    before = store.snapshot()
    assert store.run(ops.done(store.keys, [ops.Ack("a", late.token)], NOW_S)) == [0, b"a"]
    assert (
        store.run(ops.retry(store.keys, "a", late.token, encoded=b"x", due_ms=0, now_s=NOW_S))
        == errors.NOT_ACTIVE
    )
    assert store.snapshot() == before


# --- case 16 ----------------------------------------------------------------------------------


def test_a_corrupt_unique_task_archived_by_a_worker_releases_its_lock(store: Store) -> None:
    # A message with a wrong field type (a string for max_retry) but a readable lock digest.
    raw = msgpack.packb([1, "t", b"p", NOW_MS, "three", 0, 0, 0, 0, "dig", None, None, None])
    store.r.hset(store.keys.msg, "a", raw)
    store.r.lpush(store.keys.pending, "a")
    store.r.set(store.keys.unique("dig"), "a")
    leased = lease_one(store)
    call = ops.archive_corrupt(
        store.keys, "a", leased.token, raw=raw, error="bad", now_s=NOW_S, limits=LIMITS
    )
    assert store.run(call) == 1
    assert store.r.get(store.keys.unique("dig")) is None
    assert store.r.zscore(store.keys.archived, "a") == NOW_MS
