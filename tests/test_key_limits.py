"""Keys with limits of their own (``FlowLimits(keys={key: KeyLimits(...)})``): a weight that
gives a key that many turns of the round robin, and a rate, burst and cap instead of the
queue's per-key defaults; their validation, storage and status. Real Redis throughout.
"""

from __future__ import annotations

from collections import Counter

import pytest
import redis

from rq_sched import FlowLimits, Inspector, KeyLimits, TypeLimits, ops
from rq_sched.errors import ValidationError
from rq_sched.flow import MAX_KEY_LIMITS, Hold, set_flow
from rq_sched.keys import QueueKeys
from rq_sched.message import TaskMessage
from rq_sched.options import Prepared
from tests.script_support import NOW_MS, Store
from tests.test_keyed_scripts import IDLE, done, ids, keyed_state, put, take


@pytest.fixture
def store(r: redis.Redis, namespace: str) -> Store:
    return Store(r, QueueKeys(namespace, "q"))


def limit(store: Store, limits: FlowLimits) -> int:
    return int(store.run(set_flow(store.keys, limits)))


def test_a_heavier_key_takes_as_many_turns_as_its_weight(store: Store) -> None:
    limit(store, FlowLimits(keys={"gold": KeyLimits(weight=3)}))
    put(store, *[(f"g{i}", "gold") for i in range(60)], *[(f"b{i}", "basic") for i in range(60)])
    put(store, *[(f"s{i}", "silver") for i in range(60)])
    leased, _ = take(store, 50)
    served = Counter(t.id[0] for t in leased)
    assert served["g"] == 30 and served["b"] == 10 and served["s"] == 10, served
    assert [t.id for t in leased if t.id[0] == "g"] == [f"g{i}" for i in range(30)]


def test_a_keys_own_cap_replaces_the_default_cap(store: Store) -> None:
    limit(store, FlowLimits(key_concurrency=1, keys={"vip": KeyLimits(concurrency=3)}))
    put(store, *[(f"v{i}", "vip") for i in range(5)], *[(f"o{i}", "other") for i in range(5)])
    leased, hold = take(store, 10)
    assert sorted(ids(leased)) == ["o0", "v0", "v1", "v2"]
    assert hold == Hold("cap", None)
    for t in leased:
        done(store, t)
    leased, _ = take(store, 10)
    assert sorted(ids(leased)) == ["o1", "v3", "v4"]


def test_a_key_with_empty_limits_is_exempt_from_the_defaults(store: Store) -> None:
    limit(store, FlowLimits(key_concurrency=1, key_rate="1/h", keys={"ops": KeyLimits()}))
    put(store, *[(f"p{i}", "ops") for i in range(4)], ("o0", "other"), ("o1", "other"))
    leased, _ = take(store, 10)
    assert sorted(ids(leased)) == ["o0", "p0", "p1", "p2", "p3"]


def test_a_keys_own_rate_parks_it_while_the_others_run(store: Store) -> None:
    limit(store, FlowLimits(keys={"slow": KeyLimits(rate="1/h", burst=2)}))
    put(store, *[(f"s{i}", "slow") for i in range(4)], *[(f"f{i}", "fast") for i in range(4)])
    leased, hold = take(store, 10)
    assert sorted(ids(leased)) == ["f0", "f1", "f2", "f3", "s0", "s1"]
    assert hold is not None and hold.reason == "rate"
    assert hold.wait_s is not None and 3500 < hold.wait_s <= 3600
    limit(store, FlowLimits())  # lifted: the parked key comes back at once
    leased, _ = take(store, 10)
    assert ids(leased) == ["s2", "s3"]
    for t in leased:
        done(store, t)


def test_an_idle_key_with_limits_of_its_own_keeps_no_state(store: Store) -> None:
    limit(store, FlowLimits(keys={"vip": KeyLimits(concurrency=2, weight=2)}))
    put(store, ("v0", "vip"), ("v1", "vip"), ("o0", "other"))
    for t in take(store, 5)[0]:
        done(store, t)
    assert keyed_state(store) == IDLE


def test_the_status_lists_the_keys_with_limits_of_their_own(store: Store) -> None:
    own = {
        "tenant:vip": KeyLimits(rate="50/s", burst=5, concurrency=10, weight=4),
        "tenant:ops": KeyLimits(),
    }
    limits = FlowLimits(key_concurrency=2, keys=own)
    assert limit(store, limits) == 1
    assert limit(store, limits) == 0  # the same again changes nothing
    status = Inspector(store.r, namespace=store.keys.namespace).flow("q")
    assert status.keys == dict(sorted(own.items()))
    assert status.key_concurrency == 2
    assert limit(store, FlowLimits(key_concurrency=2)) == 1
    assert Inspector(store.r, namespace=store.keys.namespace).flow("q").keys is None
    assert not [f for f in store.r.hkeys(store.keys.flow) if f[:2] in (b"K:", b"D:")]


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda: KeyLimits(weight=0), "weight must be an int from 1 to 1000"),
        (lambda: KeyLimits(weight=1001), "weight must be an int"),
        (lambda: KeyLimits(weight=True), "weight must be an int"),
        (lambda: KeyLimits(weight=2.5), "weight must be an int"),  # type: ignore[arg-type]
        (lambda: KeyLimits(rate="fast"), "is not a rate"),
        (lambda: KeyLimits(concurrency=0), "concurrency must be an int"),
        (lambda: TypeLimits(concurrency=1, weight=0), "weight must be an int"),
        (lambda: FlowLimits(keys=["vip"]), "keys must map fairness keys"),  # type: ignore[arg-type]
        (lambda: FlowLimits(keys={"vip": 3}), "must be rq_sched.KeyLimits"),  # type: ignore[dict-item]
        (lambda: FlowLimits(keys={"": KeyLimits()}), "key"),
        (lambda: FlowLimits(keys={"a\nb": KeyLimits()}), "key"),
        (
            lambda: FlowLimits(keys={f"k{i}": KeyLimits() for i in range(MAX_KEY_LIMITS + 1)}),
            f"at most {MAX_KEY_LIMITS}",
        ),
        (
            lambda: FlowLimits(keys={"vip": KeyLimits()}, types={"api": TypeLimits(concurrency=1)}),
            "cannot both be set",
        ),
    ],
)
def test_bad_key_limits_are_refused_with_what_to_write(make: object, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        make()  # type: ignore[operator]


def test_a_types_weight_gives_its_lane_more_turns(store: Store) -> None:
    limit(store, FlowLimits(types={"big": TypeLimits(concurrency=1000, weight=2)}))
    for task_type in ("big", "small"):
        for i in range(40):
            message = TaskMessage(type=task_type, payload=i, enqueued_at=NOW_MS)
            prepared = Prepared(f"{task_type}{i}", "q", message, message.encode(), 0, 0)
            assert store.run(ops.enqueue(store.keys, prepared)) == 1
    first, _ = take(store, 1)  # sorts the limited type's tasks into its lane on the way
    assert ids(first) == ["small0"]
    leased, _ = take(store, 30)
    served = Counter(t.id.rstrip("0123456789") for t in leased)
    # Its lane takes two turns per turn of the unkeyed tasks.
    assert served == {"big": 20, "small": 10}, served


def test_the_busiest_keys_show_tokens_by_each_keys_own_rate(store: Store) -> None:
    own = {"fast": KeyLimits(rate="1000/s", burst=50), "free": KeyLimits()}
    limit(store, FlowLimits(key_rate="1/h", keys=own))
    put(store, ("f0", "fast"), ("f1", "fast"), ("x0", "free"), ("x1", "free"))
    put(store, ("s0", "slow"), ("s1", "slow"))
    take(store, 3)  # one of each: the slow key is out of tokens for an hour
    shown = Inspector(store.r, namespace=store.keys.namespace).flow_keys("q")
    tokens = {k.key: k.tokens for k in shown.keys}
    assert tokens["slow"] == 0
    assert tokens["fast"] is not None and tokens["fast"] >= 48
    assert tokens["free"] is None  # no rate for it
