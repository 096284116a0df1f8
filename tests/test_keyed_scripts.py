"""Keyed tasks in the scripts: round robin across keys, per-key concurrency and rate limits,
strict order per key across retries, and every script that makes a task ready, takes a ready
task out or ends a lease keeping the keyed structures right (``lua/includes/keyed.lua``).

Everything runs against a real Redis; the assertions read the scripts' replies and the keys
they leave behind.
"""

from __future__ import annotations

from collections import Counter

import pytest
import redis

from rq_sched import FlowLimits, Inspector, ops
from rq_sched.flow import Hold, dequeue_hold, set_flow
from rq_sched.keyed import read_keys
from rq_sched.keys import QueueKeys
from rq_sched.message import TaskMessage, decode
from rq_sched.options import Prepared
from tests.script_support import NOW_MS, Store, expire_lease

LEASE_MS = 30_000


@pytest.fixture
def store(r: redis.Redis, namespace: str) -> Store:
    return Store(r, QueueKeys(namespace, "q"))


def keyed(task_id: str, key: str | None, *, due_ms: int = 0, payload: object = None) -> Prepared:
    message = TaskMessage(
        type="t", payload=task_id if payload is None else payload, enqueued_at=NOW_MS, key=key
    )
    return Prepared(task_id, "q", message, message.encode(), due_ms, 0)


def put(store: Store, *tasks: tuple[str, str | None]) -> None:
    for task_id, key in tasks:
        assert store.run(ops.enqueue(store.keys, keyed(task_id, key))) == 1


def limit(store: Store, **options: object) -> None:
    store.run(set_flow(store.keys, FlowLimits(**options)))  # type: ignore[arg-type]


def take(store: Store, count: int = 1) -> tuple[list[ops.Leased], Hold | None]:
    reply = store.run(ops.dequeue(store.keys, LEASE_MS, count))
    return ops.parse_dequeue(reply), dequeue_hold(reply)


def ids(leased: list[ops.Leased]) -> list[str]:
    return [t.id for t in leased]


def done(store: Store, leased: ops.Leased) -> None:
    assert store.run(ops.done(store.keys, [ops.Ack(leased.id, leased.token)], 0))[0] == 1


def fail(store: Store, leased: ops.Leased, due_ms: int) -> int:
    message = decode(leased.data).failed("boom", NOW_MS)
    call = ops.retry(
        store.keys, leased.id, leased.token, encoded=message.encode(), due_ms=due_ms, now_s=0
    )
    return int(store.run(call))


def keyed_state(store: Store) -> dict[str, object]:
    kready, kring, kwait, kstate = store.keys.keyed
    raw: dict[bytes, bytes] = store.r.hgetall(kstate)  # type: ignore[assignment]
    state = {k.decode(): v.decode() for k, v in raw.items()}
    return {
        "ready": store.r.zcard(kready),
        "ring": store.r.zcard(kring),
        "wait": store.r.zcard(kwait),
        "state": {k: v for k, v in state.items() if k not in ("seq", "v", "u", "kt")},
    }


IDLE = {"ready": 0, "ring": 0, "wait": 0, "state": {}}


def test_keys_are_served_round_robin_whatever_their_backlogs(store: Store) -> None:
    put(store, *[(f"a{i}", "A") for i in range(20)])
    put(store, ("b0", "B"), ("b1", "B"), ("c0", "C"), ("c1", "C"))
    first, _ = take(store, 6)
    assert Counter(t.id[0] for t in first) == {"a": 2, "b": 2, "c": 2}
    rest, hold = take(store, 100)
    assert [t.id for t in rest] == [f"a{i}" for i in range(2, 20)]
    assert hold is None


def test_a_keys_tasks_start_in_the_order_they_were_enqueued(store: Store) -> None:
    put(store, *[(f"t{i}", "K") for i in range(10)])
    leased, _ = take(store, 10)
    assert ids(leased) == [f"t{i}" for i in range(10)]


def test_keyed_tasks_are_pending_and_carry_their_key(store: Store) -> None:
    put(store, ("a", "tenant:1"))
    leased, _ = take(store)
    assert decode(leased[0].data).key == "tenant:1"


def test_key_concurrency_holds_a_keys_next_task_until_its_running_one_ends(
    store: Store,
) -> None:
    limit(store, key_concurrency=1)
    put(store, ("a0", "A"), ("a1", "A"), ("b0", "B"))
    first, _ = take(store, 3)
    assert sorted(ids(first)) == ["a0", "b0"]
    again, hold = take(store, 3)
    assert again == []
    assert hold == Hold("cap", None)
    store.r.delete(store.keys.marker)
    done(store, next(t for t in first if t.id == "a0"))
    assert store.r.zscore(store.keys.marker, "r") == 0  # the freed key woke a worker
    after, _ = take(store, 3)
    assert ids(after) == ["a1"]


def test_an_unkeyed_backlog_takes_turns_with_the_keys(store: Store) -> None:
    put(store, *[(f"u{i}", None) for i in range(10)])
    put(store, ("a0", "A"), ("a1", "A"), ("b0", "B"))
    leased, _ = take(store, 6)
    # The unkeyed tasks are one more lane of the round robin: u, A, B, u, A, u.
    assert Counter(t.id[0] for t in leased) == {"u": 3, "a": 2, "b": 1}
    assert [t.id for t in leased if t.id[0] == "u"] == ["u0", "u1", "u2"]


def test_strict_order_holds_across_a_retry_with_key_hold_on_retry(store: Store) -> None:
    limit(store, key_concurrency=1, key_hold_on_retry=True)
    put(store, ("a0", "A"), ("a1", "A"), ("a2", "A"))
    (a0,), _ = take(store)
    assert fail(store, a0, due_ms=1) == 2  # waits in retry, keeping A's slot
    assert take(store, 5) == ([], Hold("cap", None))
    store.run(ops.forward(store.keys, NOW_MS))  # due: back through the pending list
    order = []
    for _ in range(3):
        (leased,), _ = take(store, 5)
        order.append(leased.id)
        done(store, leased)
    assert order == ["a0", "a1", "a2"]
    assert keyed_state(store) == IDLE


def test_without_the_hold_a_keys_next_task_runs_while_one_waits_for_its_retry(
    store: Store,
) -> None:
    limit(store, key_concurrency=1)
    put(store, ("a0", "A"), ("a1", "A"))
    (a0,), _ = take(store)
    fail(store, a0, due_ms=1)
    leased, _ = take(store)
    assert ids(leased) == ["a1"]


@pytest.mark.parametrize("how", ["retry_now", "requeue", "recover"])
def test_a_task_made_ready_again_goes_back_ahead_of_its_keys_later_tasks(
    store: Store, how: str
) -> None:
    limit(store, key_concurrency=1)
    put(store, ("a0", "A"), ("a1", "A"))
    (a0,), _ = take(store)
    if how == "retry_now":
        fail(store, a0, due_ms=0)
    elif how == "requeue":
        store.run(ops.requeue(store.keys, [(a0.id, a0.token)]))
    else:
        expire_lease(store, a0.id)
        store.run(ops.recover(store.keys, 10, lease_ms=LEASE_MS))
    leased, _ = take(store, 2)
    assert ids(leased) == ["a0"]  # the key's slot again, and a1 still waits
    done(store, leased[0])
    leased, _ = take(store, 2)
    assert ids(leased) == ["a1"]
    done(store, leased[0])
    assert keyed_state(store) == IDLE


@pytest.mark.parametrize("action", ["delete", "archive"])
def test_deleting_or_archiving_a_keyed_pending_task_takes_it_out_of_its_key(
    store: Store, action: str
) -> None:
    put(store, ("a0", "A"), ("a1", "A"))
    if action == "delete":
        assert store.run(ops.delete(store.keys, "a0", None)) == 1
    else:
        call = ops.archive(store.keys, "a0", unique=None, now_s=1, limits=ops.ArchiveLimits())
        assert store.run(call)[0] == 1
    leased, _ = take(store, 5)
    assert ids(leased) == ["a1"]
    done(store, leased[0])
    assert keyed_state(store) == IDLE


def test_deleting_a_task_that_holds_its_keys_slot_in_retry_frees_the_slot(
    store: Store,
) -> None:
    limit(store, key_concurrency=1, key_hold_on_retry=True)
    put(store, ("a0", "A"), ("a1", "A"))
    (a0,), _ = take(store)
    fail(store, a0, due_ms=NOW_MS * 2)
    assert take(store) == ([], Hold("cap", None))
    assert store.run(ops.delete(store.keys, "a0", None)) == 1
    leased, _ = take(store)
    assert ids(leased) == ["a1"]


def test_an_archived_keyed_task_run_again_is_served_under_its_key(store: Store) -> None:
    limit(store, key_concurrency=1)
    put(store, ("a0", "A"), ("a1", "A"))
    store.run(ops.archive(store.keys, "a0", unique=None, now_s=1, limits=ops.ArchiveLimits()))
    (a1,), _ = take(store)
    assert store.run(ops.run_now(store.keys, "a0")) == 1
    assert take(store) == ([], Hold("cap", None))  # A is at its cap: a0 waits for a1
    done(store, a1)
    leased, _ = take(store)
    assert ids(leased) == ["a0"]


PAYLOADS = [
    "text",
    b"\x00\xff" * 40,  # msgpack bin, which Redis's cmsgpack cannot decode
    {1: [b"x" * 300, 2.5, None, True, -(2**63), 2**64 - 1], "deep": [[[[["x"]]]]]},
    "é" * 70_000,  # str32
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=["str", "bin", "nested", "str32"])
def test_a_scheduled_keyed_task_is_served_under_its_key_once_due(
    store: Store, payload: object
) -> None:
    limit(store, key_concurrency=1)
    store.run(ops.enqueue(store.keys, keyed("a0", "A", due_ms=NOW_MS, payload=payload)))
    put(store, ("a1", "A"))
    (a1,), _ = take(store)
    store.run(ops.forward(store.keys, NOW_MS))
    assert take(store, 5)[0] == []
    done(store, a1)
    leased, _ = take(store)
    assert ids(leased) == ["a0"]


def test_key_rate_spaces_a_keys_starts_and_parks_it_meanwhile(store: Store) -> None:
    limit(store, key_rate="1/h")
    put(store, ("a0", "A"), ("a1", "A"), ("b0", "B"))
    leased, hold = take(store, 5)
    assert sorted(ids(leased)) == ["a0", "b0"]
    # a1 waits for A's next token; this caller is told to sleep until then.
    assert hold is not None and hold.reason == "rate"
    assert hold.wait_s is not None and 3500 < hold.wait_s <= 3600
    assert take(store, 5)[0] == []
    _, kring, kwait, _ = store.keys.keyed
    assert store.r.zcard(kring) == 0
    assert store.r.zcard(kwait) == 1


def test_a_looser_key_rate_applies_at_once_to_keys_waiting_for_a_token(store: Store) -> None:
    limit(store, key_rate="1/h")
    put(store, ("a0", "A"), ("a1", "A"), ("a2", "A"), ("b0", "B"), ("b1", "B"))
    assert sorted(ids(take(store, 5)[0])) == ["a0", "b0"]
    limit(store, key_rate="1000/s", key_burst=5)  # both keys wait an hour under the old rate
    leased, _ = take(store, 5)
    assert sorted(ids(leased)) == ["a1", "a2", "b1"]


def test_a_second_worker_held_by_a_keys_rate_sleeps_past_the_first_ones_timer(
    store: Store,
) -> None:
    limit(store, key_rate="1/h")
    put(store, ("a0", "A"), ("a1", "A"))
    take(store)
    _, first = take(store)
    _, second = take(store)
    assert first is not None and first.wait_s is not None
    assert second is not None and second.wait_s is not None
    assert second.wait_s >= first.wait_s + 1.9


def test_an_idle_key_keeps_no_state(store: Store) -> None:
    limit(store, key_concurrency=2)
    put(store, ("a0", "A"), ("b0", "B"))
    for leased in take(store, 5)[0]:
        done(store, leased)
    assert keyed_state(store) == IDLE


def test_keyed_state_is_unchanged_by_an_unkeyed_queues_dequeue(store: Store) -> None:
    put(store, ("u0", None))
    take(store)
    assert not store.r.exists(store.keys.keyed[3])


def test_a_key_that_went_idle_while_its_task_waited_for_a_retry_is_shown_by_name(
    store: Store,
) -> None:
    put(store, ("a0", "tenant:A"))
    (a0,), _ = take(store)
    fail(store, a0, due_ms=1)  # nothing of the key ready or running: its state is dropped
    store.run(ops.forward(store.keys, NOW_MS))
    assert ids(take(store)[0]) == ["a0"]  # back through the pending list, to its key
    shown = read_keys(store.r, store.keys)
    assert [(k.key, k.running) for k in shown.keys] == [("tenant:A", 1)]


def test_the_inspector_counts_each_keys_tokens_and_next_token(
    store: Store, inspector: Inspector
) -> None:
    limit(store, key_rate="1/h", key_burst=2)
    put(store, ("a0", "A"), ("a1", "A"), ("a2", "A"), ("b0", "B"))
    take(store, 10)  # a0, a1 and b0 start; a2 waits for A's next token
    shown = {k.key: k for k in inspector.flow_keys("q").keys}
    assert (shown["A"].pending, shown["A"].running, shown["A"].state) == (1, 2, "rate")
    assert shown["A"].tokens == 0
    assert shown["A"].next_token_at is not None
    assert (shown["B"].running, shown["B"].tokens) == (1, 1)
