"""Per-task-type limits in the scripts (``FlowLimits(types={...})``): a limited type's tasks are
served in a lane of their own with the type's rate and cap, without holding up the queue's other
tasks, whatever path made them ready; and the limits' validation, storage and status.

Everything runs against a real Redis; the assertions read the scripts' replies and the keys
they leave behind.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import redis

from rq_sched import FlowLimits, Inspector, TypeLimits, ops
from rq_sched.errors import ValidationError
from rq_sched.flow import MAX_TYPE_LIMITS, Hold, dequeue_hold, set_flow, type_lane_digest
from rq_sched.keys import QueueKeys
from rq_sched.message import TaskMessage, decode
from rq_sched.options import Prepared
from tests.script_support import NOW_MS, Store, expire_lease

LEASE_MS = 30_000


@pytest.fixture
def store(r: redis.Redis, namespace: str) -> Store:
    return Store(r, QueueKeys(namespace, "q"))


def put(store: Store, *tasks: str, task_type: str = "api", key: str | None = None) -> None:
    for task_id in tasks:
        message = TaskMessage(type=task_type, payload=task_id, enqueued_at=NOW_MS, key=key)
        prepared = Prepared(task_id, "q", message, message.encode(), 0, 0)
        assert store.run(ops.enqueue(store.keys, prepared)) == 1


def limit(store: Store, limits: FlowLimits) -> int:
    return int(store.run(set_flow(store.keys, limits)))


def types(**by_type: TypeLimits) -> FlowLimits:
    return FlowLimits(types={name.replace("_", ":"): v for name, v in by_type.items()})


def take(store: Store, count: int = 1) -> tuple[list[ops.Leased], Hold | None]:
    reply = store.run(ops.dequeue(store.keys, LEASE_MS, count))
    return ops.parse_dequeue(reply), dequeue_hold(reply)


def ids(leased: list[ops.Leased]) -> list[str]:
    return [t.id for t in leased]


def done(store: Store, *leased: ops.Leased) -> None:
    acks = [ops.Ack(t.id, t.token) for t in leased]
    assert store.run(ops.done(store.keys, acks, 0)) == [len(acks)]


def lane(store: Store, task_type: str = "api") -> dict[str, str]:
    """The per-lane counters of ``task_type``'s lane: n (ready), a (running), p (parked)."""
    d = type_lane_digest(task_type)
    raw: list[bytes | None] = store.r.hmget(store.keys.keyed[3], f"n:{d}", f"a:{d}", f"p:{d}")  # type: ignore[assignment]
    return {k: v.decode() for k, v in zip("nap", raw, strict=True) if v is not None}


def idle(store: Store) -> bool:
    """No keyed or lane state is left (the counters of the round robin aside)."""
    kready, kring, _, kstate = store.keys.keyed
    raw: list[bytes] = store.r.hkeys(kstate)  # type: ignore[assignment]
    fields = {f.decode() for f in raw}
    left = {f for f in fields if f not in ("seq", "v", "u", "kt") and not f.startswith("r:")}
    return store.r.zcard(kready) == 0 and store.r.zcard(kring) == 0 and not left


def test_a_types_cap_holds_its_tasks_and_lets_the_others_run(store: Store) -> None:
    limit(store, types(api=TypeLimits(concurrency=2)))
    for i in range(5):
        put(store, f"a{i}")
        put(store, f"o{i}", task_type="other")
    leased, hold = take(store, 10)
    assert Counter(t.id[0] for t in leased) == {"a": 2, "o": 5}
    assert [t.id for t in leased if t.id[0] == "a"] == ["a0", "a1"]
    assert hold == Hold("cap", None)  # only the capped type is left: sleep until a lease ends
    assert lane(store) == {"n": "3", "a": "2", "p": "c"}
    done(store, leased[0] if leased[0].id == "a0" else next(t for t in leased if t.id == "a0"))
    more, _ = take(store, 10)
    assert ids(more) == ["a2"]  # one slot freed, one start, in order


def test_a_types_rate_spaces_its_starts_and_says_how_long_to_sleep(store: Store) -> None:
    limit(store, types(api=TypeLimits(rate="1/h", burst=2)))
    put(store, "a0", "a1", "a2")
    put(store, "o0", task_type="other")
    leased, hold = take(store, 10)
    assert sorted(ids(leased)) == ["a0", "a1", "o0"]
    assert hold is not None and hold.reason == "rate"
    assert hold.wait_s is not None and 3500 < hold.wait_s <= 3600
    status = Inspector(store.r, namespace=store.keys.namespace).flow("q")
    (api,) = status.types
    assert (api.type, api.rate, api.burst, api.concurrency) == ("api", "1/h", 2, None)
    assert (api.pending, api.running, api.state, api.tokens) == (1, 2, "rate", 0)
    assert api.next_token_at is not None


def test_a_backlog_of_a_limited_type_does_not_hold_up_the_tasks_behind_it(
    store: Store,
) -> None:
    limit(store, types(api=TypeLimits(rate="1/h")))
    put(store, *[f"a{i}" for i in range(500)])
    put(store, "o0", "o1", task_type="other")
    started: list[str] = []
    for _ in range(5):  # each dequeue sorts a bounded batch (200) of the pending list
        leased, hold = take(store, 4)
        started += ids(leased)
        if "o1" in started:
            break
        assert hold is None or store.r.llen(store.keys.pending) == 0
    assert started == ["a0", "o0", "o1"]
    assert store.r.llen(store.keys.pending) == 0
    assert lane(store)["n"] == "499"


def test_keyed_tasks_of_a_limited_type_obey_the_types_cap(store: Store) -> None:
    limit(store, types(api=TypeLimits(concurrency=1)))
    put(store, "a0", "a1", key="tenant-1")
    put(store, "b0", key="tenant-2")
    put(store, "o0", task_type="other", key="tenant-2")
    order = []
    for i in range(3):
        leased, hold = take(store, 5)
        api = [t for t in leased if t.id != "o0"]
        assert len(api) == 1  # one at a time, whichever key it has
        assert hold == (Hold("cap", None) if i < 2 else None)
        order.append(api[0].id)
        assert decode(api[0].data).key == ("tenant-2" if api[0].id == "b0" else "tenant-1")
        done(store, *leased)
    assert order.index("a0") < order.index("a1")
    assert idle(store)


def test_keyed_tasks_already_in_their_keys_lane_move_to_the_types_lane(store: Store) -> None:
    put(store, "a0", "a1", "a2", key="tenant-1")  # no limits yet: in tenant-1's lane
    limit(store, types(api=TypeLimits(concurrency=1)))
    leased, hold = take(store, 5)
    assert ids(leased) == ["a0"]
    assert hold == Hold("cap", None)
    assert lane(store)["n"] == "2"
    done(store, *leased)
    order = []
    for _ in range(2):
        (one,), _ = take(store, 5)
        order.append(one.id)
        done(store, one)
    assert order == ["a1", "a2"]
    assert idle(store)


@pytest.mark.parametrize("how", ["retry_now", "requeue", "recover"])
def test_a_task_made_ready_again_goes_back_to_its_types_lane_ahead_of_the_later_ones(
    store: Store, how: str
) -> None:
    limit(store, types(api=TypeLimits(concurrency=1)))
    put(store, "a0", "a1")
    (a0,), _ = take(store, 5)
    if how == "retry_now":
        message = decode(a0.data).failed("boom", NOW_MS)
        call = ops.retry(store.keys, a0.id, a0.token, encoded=message.encode(), due_ms=0, now_s=0)
        store.run(call)
    elif how == "requeue":
        store.run(ops.requeue(store.keys, [(a0.id, a0.token)]))
    else:
        expire_lease(store, a0.id)
        store.run(ops.recover(store.keys, 10, lease_ms=LEASE_MS))
    leased, _ = take(store, 5)
    assert ids(leased) == ["a0"]  # its slot back, and a1 still waits for it
    assert lane(store) == {"n": "1", "a": "1", "p": "c"}
    done(store, *leased)
    leased, _ = take(store, 5)
    assert ids(leased) == ["a1"]
    done(store, *leased)
    assert idle(store)


def test_deleting_a_task_in_a_types_lane_frees_nothing_it_did_not_hold(store: Store) -> None:
    limit(store, types(api=TypeLimits(concurrency=1)))
    put(store, "a0", "a1", "a2")
    (a0,), _ = take(store, 5)
    assert store.run(ops.delete(store.keys, "a1", None)) == 1
    done(store, a0)
    leased, _ = take(store, 5)
    assert ids(leased) == ["a2"]
    done(store, *leased)
    assert idle(store)


def test_lifting_a_types_limits_lets_its_lane_drain(store: Store) -> None:
    limit(store, types(api=TypeLimits(concurrency=1)))
    put(store, "a0", "a1", "a2")
    (a0,), _ = take(store, 5)
    assert limit(store, FlowLimits()) == 1
    assert take(store, 5)[0] == []  # its lane waits at the old cap until a0 ends
    done(store, a0)
    leased, hold = take(store, 5)
    assert ids(leased) == ["a1", "a2"]
    assert hold is None
    done(store, *leased)
    assert idle(store)


def test_a_looser_type_rate_applies_at_once(store: Store) -> None:
    limit(store, types(api=TypeLimits(rate="1/h")))
    put(store, "a0", "a1", "a2")
    leased, hold = take(store, 5)
    assert ids(leased) == ["a0"]
    assert hold is not None and hold.reason == "rate"
    limit(store, types(api=TypeLimits(rate="1000/s", burst=5)))
    leased, hold = take(store, 5)
    assert ids(leased) == ["a1", "a2"]


def test_storing_the_same_type_limits_again_changes_nothing(store: Store) -> None:
    limits = types(api=TypeLimits(rate="10/s", concurrency=3), sync_crm=TypeLimits(rate="1/s"))
    assert limit(store, limits) == 1
    assert limit(store, limits) == 0
    assert limit(store, types(api=TypeLimits(rate="10/s", concurrency=3))) == 1
    assert limit(store, FlowLimits(rate="10/s")) == 1
    assert store.r.hget(store.keys.flow, "types") is None
    assert not [f for f in store.r.hkeys(store.keys.flow) if f[:2] in (b"T:", b"D:")]


def test_the_status_lists_each_limited_type_even_when_idle(store: Store) -> None:
    limit(store, types(api=TypeLimits(concurrency=2), sync_crm=TypeLimits(rate="5/s")))
    status = Inspector(store.r, namespace=store.keys.namespace).flow("q")
    assert [(t.type, t.concurrency, t.rate, t.state) for t in status.types] == [
        ("api", 2, None, "idle"),
        ("sync:crm", None, "5/s", "idle"),
    ]
    assert status.types[1].interval_ms == 200.0
    assert status.types[1].tokens == 1


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (TypeLimits, "needs a rate or a concurrency"),
        (lambda: TypeLimits(rate="0/s"), "at least 1"),
        (lambda: TypeLimits(concurrency=0), "concurrency must be an int"),
        (lambda: TypeLimits(rate="10/s", burst=math.nan), "burst must be an int"),  # type: ignore[arg-type]
        (lambda: FlowLimits(types=[("api", TypeLimits(concurrency=1))]), "must map task types"),  # type: ignore[arg-type]
        (lambda: FlowLimits(types={"api": 3}), "must be rq_sched.TypeLimits"),  # type: ignore[dict-item]
        (lambda: FlowLimits(types={"": TypeLimits(concurrency=1)}), "task type"),
        (lambda: FlowLimits(types={"a\x00b": TypeLimits(concurrency=1)}), "task type"),
        (
            lambda: FlowLimits(types={f"t{i}": TypeLimits(concurrency=1) for i in range(257)}),
            f"at most {MAX_TYPE_LIMITS}",
        ),
        (
            lambda: FlowLimits(key_concurrency=1, types={"api": TypeLimits(concurrency=1)}),
            "cannot both be set",
        ),
    ],
)
def test_bad_type_limits_are_refused_with_what_to_write(make: object, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        make()  # type: ignore[operator]


def test_an_empty_types_mapping_is_no_limit(store: Store) -> None:
    assert FlowLimits(types={}).unlimited
    put(store, "a0")
    limit(store, FlowLimits(types={}))
    leased, _ = take(store, 5)
    assert ids(leased) == ["a0"]
    assert not store.r.exists(store.keys.keyed[3])  # the queue stayed unkeyed


def test_a_types_lane_is_not_listed_among_the_queues_keys(store: Store) -> None:
    limit(store, types(api=TypeLimits(concurrency=1)))
    put(store, "a0", "a1")
    put(store, "k0", task_type="other", key="tenant-1")
    take(store, 1)
    shown = Inspector(store.r, namespace=store.keys.namespace).flow_keys("q")
    assert [k.key for k in shown.keys] == ["tenant-1"]
    assert shown.total == 1
