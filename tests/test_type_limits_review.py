"""Adversarial review of per-task-type limits (``FlowLimits(types={...})``): the paths where a
promise of docs/flow.md ("Per-task-type limits") did not hold, each pinned by a test that
failed before its fix. Script-level tests against a real Redis, with the helpers of
tests/test_type_limits.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from rq_sched import FlowLimits, Inspector, TypeLimits
from rq_sched.cli import main
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


@pytest.fixture
def cli(redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*argv: str) -> tuple[int, str, str]:
        code = main([argv[0], "--url", redis_url, "--namespace", namespace, *argv[1:]])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_the_flow_command_keeps_the_type_limits_it_does_not_name(
    cli: Any, inspector: Inspector
) -> None:
    # "Options given change only what they name; the rest of the stored limits stay."
    inspector.set_flow("q", FlowLimits(types={"api": TypeLimits(rate="10/s", concurrency=2)}))
    code, _, err = cli("flow", "q", "--rate", "100/s")
    assert code == 0, err
    status = inspector.flow("q")
    assert status.rate == "100/s"
    assert [(t.type, t.rate, t.concurrency) for t in status.types] == [("api", "10/s", 2)]


def test_the_flow_command_sets_and_lifts_a_types_limits(cli: Any, inspector: Inspector) -> None:
    # docs/flow.md: `rq-sched flow q --type T --type-rate 10/s --type-concurrency 2` (`--no-type T`)
    code, out, err = cli(
        "flow", "q", "--type", "sync:crm", "--type-rate", "10/s", "--type-concurrency", "2"
    )
    assert code == 0, err
    assert "sync:crm" in out
    code, out, err = cli("flow", "q", "--type", "pdf", "--type-concurrency", "1")
    assert code == 0, err
    status = inspector.flow("q")
    assert [(t.type, t.rate, t.concurrency) for t in status.types] == [
        ("pdf", None, 1),
        ("sync:crm", "10/s", 2),
    ]
    code, out, err = cli("flow", "q", "--type", "sync:crm", "--type-burst", "3")
    assert code == 0, err
    assert inspector.flow("q").types[1].burst == 3
    code, out, err = cli("flow", "q", "--no-type", "sync:crm")
    assert code == 0, err
    assert [t.type for t in inspector.flow("q").types] == ["pdf"]
    code, _, err = cli("flow", "q", "--type-rate", "10/s")
    assert code == 2 and "--type" in err


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
