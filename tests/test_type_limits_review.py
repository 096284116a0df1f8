"""Adversarial review of per-task-type limits (``FlowLimits(types={...})``): the paths where a
promise of docs/flow.md ("Per-task-type limits") did not hold, each pinned by a test that
failed before its fix. Script-level tests against a real Redis, with the helpers of
tests/test_type_limits.py.
"""

from __future__ import annotations

from rq_sched import TypeLimits
from tests.script_support import Store
from tests.test_type_limits import done, ids, lane, limit, put, store, take, types

__all__ = ["store"]  # the fixture, shared with tests/test_type_limits.py


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
