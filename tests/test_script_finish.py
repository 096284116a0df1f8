"""The scripts that end an attempt: done (success), retry (failure, try again) and archive."""

from __future__ import annotations

import pytest
import redis

from rq_sched import errors, ops
from rq_sched.clock import utc_day
from rq_sched.keys import QueueKeys
from rq_sched.scripts import Call
from tests.script_support import NOW_MS, TOKEN, Store, enc

NOW_S = NOW_MS / 1000
DAY = utc_day(NOW_S)
LEASE = NOW_MS + 30_000
LIMITS = ops.ArchiveLimits(max_size=100, max_age_s=3600)


@pytest.fixture
def store(r: redis.Redis, namespace: str) -> Store:
    return Store(r, QueueKeys(namespace, "q"))


def archive_call(
    store: Store,
    task_id: str,
    *,
    unique: str | None = None,
    limits: ops.ArchiveLimits = LIMITS,
    now_ms: int = NOW_MS,
) -> Call:
    """An operator's archive."""
    return ops.archive(store.keys, task_id, unique=unique, now_s=now_ms / 1000, limits=limits)


def worker_archive_call(
    store: Store,
    task_id: str,
    *,
    encoded: bytes,
    unique: str | None = None,
    count_failure: bool = False,
    token: int = TOKEN,
) -> Call:
    """A worker's archive of the task it holds."""
    return ops.archive_active(
        store.keys,
        task_id,
        token,
        encoded=encoded,
        unique=unique,
        now_s=NOW_S,
        limits=LIMITS,
        count_failure=count_failure,
    )


# --- done -------------------------------------------------------------------------------------


def test_done_deletes_task_and_counts_it_processed(store: Store) -> None:
    store.seed_active("a")
    store.r.hset(store.keys.lost, "a", 1)
    assert store.run(ops.done(store.keys, [ops.Ack("a", TOKEN)], NOW_S)) == [1]
    assert store.snapshot() == {"processed": b"1", f"processed:{DAY}": b"1"}


def test_done_daily_counter_expires_after_the_retention_days(store: Store) -> None:
    store.seed_active("a")
    store.run(ops.done(store.keys, [ops.Ack("a", TOKEN)], NOW_S))
    assert store.r.expiretime(store.keys.processed_on(DAY)) == ops.day_expire_at(NOW_S)
    assert store.r.ttl(store.keys.processed) == -1
    assert ops.day_expire_at(NOW_S) - NOW_S > ops.DAILY_COUNTER_DAYS * 86400


def test_done_with_retention_keeps_task_completed_with_its_result(store: Store) -> None:
    store.seed_active("a")
    store.seed_active("b")
    acks = [
        ops.Ack("a", TOKEN, keep_until_ms=NOW_MS + 9000, result=b"42"),
        ops.Ack("b", TOKEN, NOW_MS + 5),
    ]
    assert store.run(ops.done(store.keys, acks, NOW_S)) == [2]
    assert store.snapshot() == {
        "msg": {"a": enc("a"), "b": enc("b")},
        "completed": {"a": NOW_MS + 9000, "b": NOW_MS + 5},
        "result": {"a": b"42"},
        "processed": b"2",
        f"processed:{DAY}": b"2",
    }


def test_done_releases_the_unique_lock_this_task_holds(store: Store) -> None:
    store.seed_active("a")
    store.r.set(store.keys.unique("dig"), "a", px=60_000)
    store.run(ops.done(store.keys, [ops.Ack("a", TOKEN, unique="dig")], NOW_S))
    assert store.r.exists(store.keys.unique("dig")) == 0


def test_done_keeps_a_unique_lock_held_by_another_task(store: Store) -> None:
    store.seed_active("a")
    store.r.set(store.keys.unique("dig"), "newer", px=60_000)
    store.run(ops.done(store.keys, [ops.Ack("a", TOKEN, unique="dig")], NOW_S))
    assert store.r.get(store.keys.unique("dig")) == b"newer"


def test_done_reports_ids_that_are_not_active_and_leaves_them(store: Store) -> None:
    store.seed_active("a")
    store.seed_pending("recovered")
    store.r.set(store.keys.unique("dig"), "recovered")
    acks = [ops.Ack("recovered", TOKEN, unique="dig"), ops.Ack("a", TOKEN), ops.Ack("nope", TOKEN)]
    assert store.run(ops.done(store.keys, acks, NOW_S)) == [1, b"recovered", b"nope"]
    state = store.snapshot()
    assert state["msg"] == {"recovered": enc("recovered")}
    assert state["pending"] == ["recovered"]
    assert state["unique:dig"] == b"recovered"
    assert state["processed"] == b"1"


def test_done_with_nothing_active_counts_nothing(store: Store) -> None:
    assert store.run(ops.done(store.keys, [ops.Ack("x", TOKEN)], NOW_S)) == [0, b"x"]
    assert store.snapshot() == {}


# --- retry ------------------------------------------------------------------------------------


def test_retry_later_waits_in_retry_and_counts_a_failure(store: Store) -> None:
    store.seed_active("a")
    due = NOW_MS + 4000
    assert (
        store.run(ops.retry(store.keys, "a", TOKEN, encoded=b"updated", due_ms=due, now_s=NOW_S))
        == 2
    )
    assert store.snapshot() == {
        "msg": {"a": b"updated"},
        "retry": {"a": due},
        "marker": {"d": due},
        "failed": b"1",
        f"failed:{DAY}": b"1",
    }
    assert store.r.expiretime(store.keys.failed_on(DAY)) == ops.day_expire_at(NOW_S)


def test_retry_only_lowers_the_announced_due_time(store: Store) -> None:
    store.seed_active("a")
    store.seed_active("b")
    store.r.zadd(store.keys.marker, {"d": NOW_MS + 1000})
    store.run(ops.retry(store.keys, "a", TOKEN, encoded=b"u", due_ms=NOW_MS + 5000, now_s=NOW_S))
    assert store.snapshot()["marker"] == {"d": NOW_MS + 1000}
    store.run(ops.retry(store.keys, "b", TOKEN, encoded=b"u", due_ms=NOW_MS + 500, now_s=NOW_S))
    assert store.snapshot()["marker"] == {"d": NOW_MS + 500}


def test_retry_now_makes_task_pending_at_once(store: Store) -> None:
    store.seed_active("a")
    assert (
        store.run(ops.retry(store.keys, "a", TOKEN, encoded=b"updated", due_ms=0, now_s=NOW_S)) == 1
    )
    state = store.snapshot()
    assert state["pending"] == ["a"]
    assert state["marker"] == {"r": 0}
    assert state["msg"] == {"a": b"updated"}
    assert "retry" not in state


def test_retry_of_a_task_without_lease_is_refused_and_writes_nothing(store: Store) -> None:
    store.seed_pending("a")
    before = store.snapshot()
    assert (
        store.run(ops.retry(store.keys, "a", TOKEN, encoded=b"u", due_ms=NOW_MS, now_s=NOW_S))
        == errors.NOT_ACTIVE
    )
    assert store.snapshot() == before


# --- archive ----------------------------------------------------------------------------------


def test_archive_from_worker_stores_update_counts_failure_and_frees_lock(store: Store) -> None:
    store.seed_active("a")
    store.r.hset(store.keys.lost, "a", 3)
    store.r.set(store.keys.unique("dig"), "a")
    call = worker_archive_call(store, "a", encoded=b"final", unique="dig", count_failure=True)
    assert store.run(call) == 1
    assert store.snapshot() == {
        "msg": {"a": b"final"},
        "archived": {"a": NOW_MS},
        "failed": b"1",
        f"failed:{DAY}": b"1",
    }


def test_archive_from_worker_counts_the_archived_tasks_its_trim_dropped(store: Store) -> None:
    for i in range(3):
        store.seed_zset("archived", f"old{i}", NOW_MS - 100 + i)
    store.r.hset(store.keys.limits, mapping={"max_size": 2, "max_age_ms": 3_600_000})
    store.seed_active("a")
    assert store.run(worker_archive_call(store, "a", encoded=b"final")) == 1
    assert store.snapshot()["archived"] == {"old2": NOW_MS - 98, "a": NOW_MS}
    assert store.snapshot()["limits"]["trimmed"] == b"2"


@pytest.mark.parametrize("corrupt", ["garbage", "1.5", "inf", "nan", "-5", "0x10", " 7"])
def test_archive_from_worker_is_not_blocked_by_a_corrupt_trim_count(
    store: Store, corrupt: str
) -> None:
    store.seed_zset("archived", "old", NOW_MS - 100)
    store.r.hset(store.keys.limits, mapping={"max_size": 1, "trimmed": corrupt})
    store.seed_active("a")
    assert store.run(worker_archive_call(store, "a", encoded=b"final")) == 1
    assert store.snapshot()["limits"]["trimmed"] == b"1"


def test_archive_from_worker_refuses_a_task_without_lease(store: Store) -> None:
    store.seed_pending("a")
    before = store.snapshot()
    assert store.run(worker_archive_call(store, "a", encoded=b"final")) == errors.NOT_ACTIVE
    assert store.snapshot() == before


@pytest.mark.parametrize("state", ["scheduled", "retry"])
def test_archive_by_operator_moves_waiting_task_without_counting_failure(
    store: Store, state: str
) -> None:
    store.seed_zset(state, "a", NOW_MS + 100)
    store.r.set(store.keys.unique("dig"), "a")
    assert store.run(archive_call(store, "a", unique="dig")) == [1, 0]
    assert store.snapshot() == {"msg": {"a": enc("a")}, "archived": {"a": NOW_MS}}


def test_archive_by_operator_takes_a_pending_task_out_of_the_list(store: Store) -> None:
    store.seed_pending("a", "b")
    assert store.run(archive_call(store, "a")) == [1, 0]
    assert store.snapshot() == {
        "msg": {"a": enc("a"), "b": enc("b")},
        "pending": ["b"],
        "archived": {"a": NOW_MS},
    }


@pytest.mark.parametrize(
    ("state", "code"),
    [("lease", errors.TASK_ACTIVE), ("archived", errors.WRONG_STATE), ("completed", -9)],
)
def test_archive_by_operator_refuses_active_and_finished_tasks(
    store: Store, state: str, code: int
) -> None:
    store.seed_zset(state, "a", NOW_MS)
    before = store.snapshot()
    assert store.run(archive_call(store, "a")) == code
    assert store.snapshot() == before


def test_archive_of_unknown_task_is_not_found(store: Store) -> None:
    assert store.run(archive_call(store, "nope")) == errors.NOT_FOUND
    assert store.run(worker_archive_call(store, "nope", encoded=b"x")) == errors.NOT_ACTIVE
    assert store.snapshot() == {}


def test_archive_drops_archived_tasks_older_than_max_age(store: Store) -> None:
    old = NOW_MS - 3600_000 - 1
    store.seed_zset("archived", "old", old)
    store.r.hset(store.keys.result, "old", b"r")
    store.seed_zset("archived", "edge", NOW_MS - 3600_000 + 1)
    store.seed_pending("a")
    store.run(archive_call(store, "a"))
    state = store.snapshot()
    assert state["archived"] == {"edge": NOW_MS - 3600_000 + 1, "a": NOW_MS}
    assert set(state["msg"]) == {"edge", "a"}
    assert "result" not in state


def test_archive_keeps_at_most_max_size_newest_tasks(store: Store) -> None:
    for i in range(5):
        store.seed_zset("archived", f"old{i}", NOW_MS - 100 + i)
    store.seed_pending("a")
    store.run(archive_call(store, "a", limits=ops.ArchiveLimits(max_size=3, max_age_s=3600)))
    state = store.snapshot()
    assert state["archived"] == {"old3": NOW_MS - 97, "old4": NOW_MS - 96, "a": NOW_MS}
    assert set(state["msg"]) == {"old3", "old4", "a"}


def test_archive_trims_a_bounded_number_per_call(store: Store) -> None:
    old = {f"o{i:03}": NOW_MS - 7200_000 - i for i in range(150)}
    store.r.zadd(store.keys.archived, old)
    store.r.hset(store.keys.msg, mapping=dict.fromkeys(old, b"m"))
    store.seed_pending("a")
    store.run(archive_call(store, "a"))
    assert store.r.zcard(store.keys.archived) == 51
    assert store.r.hlen(store.keys.msg) == 51
