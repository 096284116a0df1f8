"""Adversarial review of per-task-type limits (``FlowLimits(types={...})``): the paths where a
promise of docs/flow.md ("Per-task-type limits") did not hold, each pinned by a test that
failed before its fix. Script-level tests against a real Redis, with the helpers of
tests/test_type_limits.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from rq_sched import Client, FlowLimits, Inspector, TypeLimits, ValidationError, ops
from rq_sched.flow import Hold
from rq_sched.message import decode
from tests.script_support import NOW_MS, Store
from tests.test_flow_cli import cli
from tests.test_type_limits import done, idle, ids, lane, limit, put, store, take, types

__all__ = ["cli", "store"]  # fixtures shared with tests/test_flow_cli.py, test_type_limits.py


def test_a_looser_type_rate_applies_at_once_while_all_its_tasks_run(store: Store) -> None:
    # The lane's rate debt under the old limit sits in kstate while its only task runs (the
    # lane is neither in the ring nor in kwait): changing the limits must drop it too.
    limit(store, types(api=TypeLimits(rate="1/h")))
    put(store, "a0")
    (a0,), _ = take(store, 5)
    assert limit(store, types(api=TypeLimits(rate="1000/s", burst=5))) == 1
    put(store, "a1", "a2")
    leased, hold = take(store, 5)
    assert ids(leased) == ["a1", "a2"]  # a full burst of the new rate, not the old hour
    assert hold is None
    done(store, a0, *leased)


def test_a_lane_waiting_at_its_cap_starts_afresh_under_a_looser_rate(store: Store) -> None:
    limit(store, types(api=TypeLimits(rate="1/h", concurrency=1)))
    put(store, "a0", "a1")
    (a0,), _ = take(store, 5)
    assert lane(store)["p"] == "c"  # a1 waits for a0's slot, with the hour's debt recorded
    limit(store, types(api=TypeLimits(rate="1000/s", concurrency=1)))
    done(store, a0)  # "starts afresh when one of its running tasks ends" (docs/flow.md)
    leased, hold = take(store, 5)
    assert ids(leased) == ["a1"]
    assert hold is None
    done(store, *leased)


def test_a_looser_key_rate_applies_at_once_while_the_keys_tasks_all_run(store: Store) -> None:
    # The same promise for keys ("starts every type's and key's rate afresh"): a key whose only
    # task runs is in neither the ring nor kwait, and must not wait out the old rate's hour.
    limit(store, FlowLimits(key_rate="1/h"))
    put(store, "k0", key="tenant-1")
    (k0,), _ = take(store, 5)
    assert limit(store, FlowLimits(key_rate="1000/s", key_burst=5)) == 1
    put(store, "k1", "k2", key="tenant-1")
    leased, hold = take(store, 5)
    assert ids(leased) == ["k1", "k2"]
    assert hold is None
    done(store, k0, *leased)


# -- attacks that held (kept as regression tests) ---------------------------------------------


def test_a_retry_hold_of_per_key_limits_is_given_back_when_types_replace_them(
    store: Store,
) -> None:
    limit(store, FlowLimits(key_concurrency=1, key_hold_on_retry=True))
    put(store, "k0", "k1", key="tenant-1")
    (k0,), _ = take(store, 5)
    message = decode(k0.data).failed("boom", NOW_MS)
    call = ops.retry(store.keys, k0.id, k0.token, encoded=message.encode(), due_ms=1, now_s=0)
    assert store.run(call) == 2  # waits for its retry, holding tenant-1's slot
    assert take(store, 5)[0] == []
    limit(store, types(api=TypeLimits(concurrency=1)))
    store.run(ops.forward(store.keys, NOW_MS * 2))
    started = []
    for _ in range(3):
        leased, _ = take(store, 5)
        assert len(leased) <= 1  # the type's cap
        started += ids(leased)
        done(store, *leased)
    assert sorted(started) == ["k0", "k1"]
    assert idle(store)


@pytest.mark.parametrize("name", ["é" * 40, "x" * 255, "é" * 200, "日本:sync", "a|b", "T:x"])
def test_odd_type_names_get_their_lane(store: Store, name: str) -> None:
    # str8 and str16 type headers, multi-byte UTF-8, the flow hash's own separators.
    limit(store, FlowLimits(types={name: TypeLimits(concurrency=1)}))
    put(store, "a0", "a1", task_type=name)
    leased, hold = take(store, 5)
    assert ids(leased) == ["a0"]
    assert hold == Hold("cap", None)
    done(store, *leased)
    leased, _ = take(store, 5)
    assert ids(leased) == ["a1"]
    done(store, *leased)
    assert idle(store)


@pytest.mark.parametrize("action", ["delete", "archive"])
def test_bulk_actions_over_pending_reach_a_types_lane(store: Store, action: str) -> None:
    limit(store, types(api=TypeLimits(concurrency=1)))
    put(store, "a0", "a1", "a2")
    (a0,), _ = take(store, 1)
    put(store, "a3")  # still in the pending list
    inspector = Inspector(store.r, namespace=store.keys.namespace)
    page = inspector.list_tasks("q", "pending", size=50, task_type="api")
    assert [t.id for t in page.tasks] == ["a3", "a1", "a2"]
    assert inspector.bulk("q", "pending", action).done == 3
    done(store, a0)
    assert idle(store)
    assert take(store, 5) == ([], None)


def test_a_task_archived_from_a_types_lane_and_run_again_rejoins_it(store: Store) -> None:
    limit(store, types(api=TypeLimits(concurrency=1)))
    put(store, "a0", "a1", "a2")
    (a0,), _ = take(store, 5)
    inspector = Inspector(store.r, namespace=store.keys.namespace)
    inspector.archive_task("q", "a1")
    assert lane(store) == {"n": "1", "a": "1", "p": "c"}
    inspector.run_task("q", "a1")
    done(store, a0)
    started = []
    for _ in range(3):
        leased, _ = take(store, 5)
        assert len(leased) <= 1
        started += ids(leased)
        done(store, *leased)
    assert started == ["a2", "a1"]  # run again: at the end of its type's lane
    assert idle(store)


def test_the_queues_cap_and_a_types_cap_hold_together(store: Store) -> None:
    limit(store, FlowLimits(concurrency=1, types={"api": TypeLimits(concurrency=1)}))
    put(store, "a0", "a1")
    put(store, "o0", task_type="other")
    started = []
    for _ in range(3):
        leased, hold = take(store, 5)
        assert len(leased) == 1
        started += ids(leased)
        assert hold == (Hold("cap", None) if len(started) < 3 else None)
        done(store, *leased)
    assert sorted(started) == ["a0", "a1", "o0"]
    assert idle(store)


def test_a_message_corrupt_after_its_type_is_started_from_its_lane(store: Store) -> None:
    # Its type reads, the rest does not: it is served under its type's cap, and the worker
    # archives it as corrupt (archive_active gives the lane's slot back).
    limit(store, types(api=TypeLimits(concurrency=1)))
    put(store, "a0", "a1")
    raw = store.r.hget(store.keys.msg, "a0")
    assert isinstance(raw, bytes)
    store.r.hset(store.keys.msg, "a0", raw[:6] + b"\xc1\xc1")
    leased, hold = take(store, 5)
    assert ids(leased) == ["a0"]
    assert hold == Hold("cap", None)
    assert lane(store) == {"n": "1", "a": "1", "p": "c"}


def test_a_types_lane_is_not_counted_among_the_queues_keys(store: Store) -> None:
    # FlowStatus.keyed_pending / keys_ready / keys_waiting (CLI, metrics) count keys' tasks.
    limit(store, types(api=TypeLimits(concurrency=1), pdf=TypeLimits(rate="1/h")))
    put(store, "a0", "a1", "a2")
    put(store, "p0", "p1", task_type="pdf")
    put(store, "k0", "k1", task_type="other", key="tenant-1")
    take(store, 10)
    status = Inspector(store.r, namespace=store.keys.namespace).flow("q")
    assert [(t.type, t.pending, t.state) for t in status.types] == [
        ("api", 2, "capped"),
        ("pdf", 1, "rate"),
    ]
    assert status.pending == 3
    assert (status.keyed_pending, status.keys_ready, status.keys_waiting) == (0, 0, 0)


def test_a_keyed_retry_coming_back_to_its_types_lane_keeps_the_lane_out_of_the_keys(
    store: Store,
) -> None:
    # The lane went idle while the retry waited (its text dropped); the retry comes back
    # through the pending list to its old place in the lane, and the lane must not take the
    # task's own key's name (flow_keys would list the type's backlog as that key's).
    limit(store, types(api=TypeLimits(concurrency=1)))
    put(store, "a0", "a1", key="tenant-1")
    (a0,), _ = take(store, 5)
    message = decode(a0.data).failed("boom", NOW_MS)
    call = ops.retry(store.keys, a0.id, a0.token, encoded=message.encode(), due_ms=1, now_s=0)
    assert store.run(call) == 2
    (a1,), _ = take(store, 5)
    done(store, a1)  # the lane is idle now
    store.run(ops.forward(store.keys, NOW_MS * 2))
    leased, _ = take(store, 1)  # the intake puts a0 back in its lane, and starts it
    assert ids(leased) == ["a0"]
    inspector = Inspector(store.r, namespace=store.keys.namespace)
    assert [(k.key, k.running) for k in inspector.flow_keys("q").keys] == []
    assert [(t.type, t.running) for t in inspector.flow("q").types] == [("api", 1)]


def test_per_key_limits_that_replace_type_limits_hold_for_tasks_left_in_a_types_lane(
    store: Store,
) -> None:
    limit(store, types(api=TypeLimits(concurrency=2)))
    put(store, "a0", "a1")
    running, _ = take(store, 5)  # the type at its cap
    put(store, "k0", "k1", key="tenant-1")
    assert take(store, 5)[0] == []
    put(store, "a2", "a3")
    assert take(store, 5)[0] == []
    assert lane(store)["n"] == "4"  # k0, k1 moved out of tenant-1's lane into the type's
    limit(store, FlowLimits(key_concurrency=1))
    done(store, *running)
    put(store, "k2", task_type="other", key="tenant-1")
    leased, _ = take(store, 10)
    tenant = [t.id for t in leased if t.id.startswith("k")]
    assert len(tenant) == 1, tenant  # key_concurrency=1: one task of tenant-1 at a time
    assert {"a2", "a3"} <= set(ids(leased))  # no type limit left on api: not one at a time


def test_type_limits_cannot_be_changed_after_they_were_checked() -> None:
    limits = FlowLimits(types={"api": TypeLimits(concurrency=1)})
    assert limits.types is not None
    with pytest.raises(TypeError):
        limits.types["bad\x00type"] = 3  # type: ignore[index]
    assert limits == FlowLimits(types={"api": TypeLimits(concurrency=1)})


def test_type_limits_on_a_sharded_queue_are_refused_and_nothing_is_written(
    inspector: Inspector, client: Client, cli: Any, r: redis.Redis, namespace: str
) -> None:
    inspector.set_shards("orders", 3)
    limits = FlowLimits(types={"api": TypeLimits(concurrency=1)})
    with pytest.raises(ValidationError, match="sharded"):
        inspector.set_flow("orders", limits)
    with pytest.raises(ValidationError, match="sharded"):
        client.set_flow("orders", limits)
    code, _, err = cli("flow", "orders", "--type", "api", "--type-concurrency", "1")
    assert code == 2 and "sharded" in err
    assert not [k for k in r.scan_iter(f"{namespace}:*") if b":flow" in k]
