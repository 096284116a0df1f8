"""Flow control in the scripts: the rate limit (GCRA) and the concurrency cap decided by dequeue,
slots freed by every script that ends a lease, and the wake-ups that go with them.

Everything runs against a real Redis; times are Redis TIME (the scripts' only clock), so the
assertions on waits allow for the milliseconds a call takes.
"""

from __future__ import annotations

import math

import pytest
import redis

from rq_sched import FlowLimits, Inspector, ValidationError, ops
from rq_sched.flow import Hold, dequeue_hold, parse_rate, set_flow
from rq_sched.keys import QueueKeys
from rq_sched.worker.config import ServerConfig
from tests.script_support import Store, enc, expire_lease

LEASE_MS = 30_000


@pytest.fixture
def store(r: redis.Redis, namespace: str) -> Store:
    return Store(r, QueueKeys(namespace, "q"))


def limit(store: Store, **options: object) -> None:
    store.run(set_flow(store.keys, FlowLimits(**options)))  # type: ignore[arg-type]
    store.r.delete(store.keys.marker)


def take(store: Store, count: int) -> tuple[list[ops.Leased], Hold | None]:
    reply = store.run(ops.dequeue(store.keys, LEASE_MS, count))
    return ops.parse_dequeue(reply), dequeue_hold(reply)


def marker(store: Store) -> dict[str, int]:
    return store.value(store.keys.marker) if store.r.exists(store.keys.marker) else {}


# -- parsing and validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100/s", (100, 1000)),
        ("5000/min", (5000, 60_000)),
        ("2/h", (2, 3_600_000)),
        ("1/day", (1, 86_400_000)),
        ("10/30s", (10, 30_000)),
        (" 7 / seconds ", (7, 1000)),
        ("3/1m30s", (3, 90_000)),
        ("1000000/s", (1_000_000, 1000)),
    ],
)
def test_parse_rate_reads_a_count_per_period(text: str, expected: tuple[int, int]) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("100", "not a rate"),
        ("0/s", "at least 1"),
        ("-5/s", "not a rate"),
        ("nan/s", "not a rate"),
        ("1.5/s", "not a rate"),
        ("10/fortnight", "unknown period"),
        ("10/0s", "from 1 ms to a year"),
        ("1/400d", "from 1 ms to a year"),
        ("1000001/s", "faster than the limit"),
        ("99999999999999999999999/ms", "faster than the limit"),
        ("", "not a rate"),
        (100, "must be a string"),
        (None, "must be a string"),
    ],
)
def test_bad_rates_are_refused_with_what_to_write(text: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_rate(text)


@pytest.mark.parametrize(
    "options",
    [
        {"concurrency": 0},
        {"concurrency": -1},
        {"concurrency": 1.5},
        {"concurrency": math.nan},
        {"concurrency": True},
        {"concurrency": 10**7},
        {"burst": 0},
        {"burst": "3"},
        {"burst": math.inf},
        {"rate": "fast"},
    ],
)
def test_bad_limits_are_refused_and_nothing_is_written(
    options: dict[str, object], inspector: Inspector, store: Store
) -> None:
    with pytest.raises(ValidationError):
        FlowLimits(**options)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="FlowLimits"):
        inspector.set_flow("q", options)  # type: ignore[arg-type]
    assert not store.r.exists(store.keys.flow)


def test_server_config_checks_its_flow_limits() -> None:
    ServerConfig(queues={"api": 1}, flow={"api": FlowLimits(rate="10/s")})
    with pytest.raises(ValidationError, match="does not serve"):
        ServerConfig(queues={"api": 1}, flow={"other": FlowLimits(rate="10/s")})
    with pytest.raises(ValidationError, match="FlowLimits"):
        ServerConfig(queues={"api": 1}, flow={"api": "10/s"})  # type: ignore[dict-item]


# -- the rate limit --------------------------------------------------------------------------


def test_without_limits_dequeue_writes_no_flow_state(store: Store) -> None:
    store.seed_pending("a", "b")
    leased, hold = take(store, 1)
    assert [t.id for t in leased] == ["a"]
    assert hold is None
    assert "flow" not in store.snapshot()


def test_rate_limit_lets_a_burst_start_then_holds_the_rest_in_place(store: Store) -> None:
    store.seed_pending("a", "b", "c", "d", "e")
    limit(store, rate="10/s", burst=3)
    leased, hold = take(store, 5)
    assert [t.id for t in leased] == ["a", "b", "c"]
    assert hold is not None and hold.reason == "rate"
    # This caller had room for more: it holds the timer, due when the next token is (100 ms).
    assert hold.wait_s is not None and 0.08 <= hold.wait_s <= 0.1
    # The rest stay pending, in order, not failed; no other worker is woken for them.
    assert store.value(store.keys.pending) == ["e", "d"]
    assert marker(store) == {}
    again, hold2 = take(store, 5)
    assert again == []
    assert hold2 is not None and hold2.reason == "rate"
    # Another caller is not given the timer: it only looks again past the holder's time.
    assert hold2.wait_s is not None and 2.0 <= hold2.wait_s <= 2.1


def test_a_caller_with_no_room_left_wakes_one_other_worker_for_the_next_token(
    store: Store,
) -> None:
    store.seed_pending("a", "b")
    limit(store, rate="10/s")
    leased, hold = take(store, 1)
    assert [t.id for t in leased] == ["a"]
    assert hold is not None and hold.reason == "rate"
    assert marker(store) == {"r": 0}
    assert not store.r.hexists(store.keys.flow, "timer")


def test_tokens_come_back_at_the_rate(store: Store, inspector: Inspector) -> None:
    store.seed_pending(*"abcdef")
    limit(store, rate="20/s", burst=2)
    status = inspector.flow("q")
    assert (status.rate, status.tokens, status.burst, status.pending) == ("20/s", 2, 2, 6)
    assert len(take(store, 6)[0]) == 2
    status = inspector.flow("q")
    assert status.tokens == 0 and status.next_token_at is not None
    assert status.active == 2 and status.concurrency is None


def test_changing_the_limits_wakes_a_worker_and_removing_them_lifts_the_hold(
    store: Store, inspector: Inspector
) -> None:
    store.seed_pending("a", "b", "c")
    limit(store, rate="1/h")
    assert len(take(store, 3)[0]) == 1
    status = inspector.set_flow("q", None)
    assert not status.limited
    assert marker(store) == {"r": 0}
    leased, hold = take(store, 3)
    assert [t.id for t in leased] == ["b", "c"] and hold is None
    assert not store.r.exists(store.keys.flow)


# -- the concurrency cap ---------------------------------------------------------------------


def test_cap_limits_leases_across_callers_and_marks_the_queue_held(store: Store) -> None:
    store.seed_pending(*"abcde")
    limit(store, concurrency=2)
    first, _ = take(store, 1)
    assert marker(store) == {"r": 0}  # room left: the wake-up is handed on
    store.r.delete(store.keys.marker)
    second, hold = take(store, 5)
    assert [t.id for t in first + second] == ["a", "b"]
    assert hold == Hold("cap", None)
    assert store.r.hget(store.keys.flow, "held") == b"1"
    assert take(store, 5) == ([], Hold("cap", None))
    assert store.r.zcard(store.keys.lease) == 2
    assert marker(store) == {}


def _done(store: Store, leased: ops.Leased) -> None:
    store.run(ops.done(store.keys, [ops.Ack(leased.id, leased.token)], 0))


def _retry(store: Store, leased: ops.Leased) -> None:
    call = ops.retry(store.keys, leased.id, leased.token, encoded=enc(leased.id), due_ms=1, now_s=0)
    store.run(call)


def _archive(store: Store, leased: ops.Leased) -> None:
    call = ops.archive_active(
        store.keys,
        leased.id,
        leased.token,
        encoded=enc(leased.id),
        unique=None,
        now_s=0,
        limits=ops.ArchiveLimits(),
        count_failure=True,
    )
    store.run(call)


def _requeue(store: Store, leased: ops.Leased) -> None:
    store.run(ops.requeue(store.keys, [(leased.id, leased.token)]))


def _recover(store: Store, leased: ops.Leased) -> None:
    expire_lease(store, leased.id)
    store.run(ops.recover(store.keys, 10, lease_ms=LEASE_MS))


@pytest.mark.parametrize("end", [_done, _retry, _archive, _requeue, _recover])
def test_every_end_of_a_lease_frees_its_slot_and_wakes_one_worker(
    store: Store, end: object
) -> None:
    store.seed_pending(*"abcd")
    limit(store, concurrency=2)
    leased, hold = take(store, 4)
    assert len(leased) == 2 and hold == Hold("cap", None)
    assert marker(store) == {}
    end(store, leased[0])  # type: ignore[operator]
    assert store.r.zcard(store.keys.lease) == 1
    # One wake-up ("r" is popped by one blocked worker): requeue and recover give it since
    # they make tasks ready; the settling scripts because the queue was held.
    assert marker(store).get("r") == 0
    more, _ = take(store, 4)
    assert len(more) == 1
    assert store.r.zcard(store.keys.lease) == 2


def test_ending_a_lease_of_a_queue_not_held_wakes_nobody(store: Store) -> None:
    store.seed_pending("a")
    limit(store, concurrency=2)
    [leased], hold = take(store, 1)
    assert hold is None
    store.r.delete(store.keys.marker)
    _done(store, leased)
    assert marker(store) == {}


def test_rate_and_cap_together_the_tighter_one_holds(store: Store) -> None:
    store.seed_pending(*"abcdef")
    limit(store, rate="100/s", burst=5, concurrency=3)
    leased, hold = take(store, 6)
    assert len(leased) == 3 and hold == Hold("cap", None)
    _done(store, leased[0])
    leased, hold = take(store, 6)
    assert len(leased) == 1 and hold == Hold("cap", None)
    assert store.r.zcard(store.keys.lease) == 3


def test_storing_the_same_limits_again_keeps_the_rate_state(store: Store) -> None:
    store.seed_pending("a", "b")
    limit(store, rate="1/h", concurrency=3)
    assert len(take(store, 2)[0]) == 1
    state = store.value(store.keys.flow)
    assert store.run(set_flow(store.keys, FlowLimits(rate="1/h", concurrency=3))) == 0
    assert store.value(store.keys.flow) == state  # no fresh burst for a restarting server
    assert marker(store) == {}
    assert store.run(set_flow(store.keys, FlowLimits(rate="1/h", concurrency=4))) == 1
    assert take(store, 2)[0][0].id == "b"
