"""Failovers with real processes (``tools/failover``): producers and worker processes run while
a Sentinel master is killed or failed over by hand, a cluster master is killed, or a cluster
slot migrates; every task is counted from the producers' acknowledgements and the handlers'
own records. With ``replicas=1`` no acknowledged enqueue may be lost; without it the loss is a
figure to report (docs/scaling.md), so those runs assert only that the books balance.

Each run is CI-sized: about 1 s of load on each side of the fault.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # 10-20 s each: a topology, worker processes, a real failover


def failover(tmp_path: Path, scenario: str, replicas: int) -> dict[str, Any]:
    """Run one scenario of tools/failover; its outcome (see ``failover_lib.run.Outcome``)."""
    paths = [str(ROOT / "tools"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    out = tmp_path / "outcome.json"
    command = [sys.executable, "-m", "failover_lib", "--only", scenario, "--replicas",
               str(replicas), "--before", "1", "--after", "1", "--rate-seconds", "0",
               "--dir", str(tmp_path / "run"), "--json", str(out)]  # fmt: skip
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=110, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [outcome] = json.loads(out.read_text())["outcomes"]
    print(outcome)  # the figures, for whoever reads the test log
    return dict(outcome)


def books_balance(outcome: dict[str, Any]) -> None:
    """Every acknowledged task ran or is counted lost; workers ran tasks after the fault."""
    assert outcome["acknowledged"] > 0
    assert outcome["run"] + outcome["lost"] == (
        outcome["acknowledged"] + outcome["unacknowledged_run"]
    )
    assert outcome["acknowledged_after_fault"] > 0, "producers never got going again"


@pytest.mark.sentinel
@pytest.mark.timeout(120)
def test_a_killed_sentinel_master_loses_no_replica_confirmed_task(tmp_path: Path) -> None:
    outcome = failover(tmp_path, "sentinel-kill", replicas=1)
    books_balance(outcome)
    assert outcome["lost"] == 0, outcome["lost_ids"]


@pytest.mark.sentinel
@pytest.mark.timeout(120)
def test_a_manual_sentinel_failover_loses_no_replica_confirmed_task(tmp_path: Path) -> None:
    outcome = failover(tmp_path, "sentinel-failover", replicas=1)
    books_balance(outcome)
    assert outcome["lost"] == 0, outcome["lost_ids"]


@pytest.mark.sentinel
@pytest.mark.timeout(120)
def test_a_killed_sentinel_master_without_replica_confirmation_is_counted(
    tmp_path: Path,
) -> None:
    books_balance(failover(tmp_path, "sentinel-kill", replicas=0))


@pytest.mark.cluster
@pytest.mark.timeout(120)
def test_a_killed_cluster_master_loses_no_replica_confirmed_task(tmp_path: Path) -> None:
    outcome = failover(tmp_path, "cluster-kill", replicas=1)
    books_balance(outcome)
    assert outcome["lost"] == 0, outcome["lost_ids"]


@pytest.mark.cluster
@pytest.mark.timeout(120)
def test_a_slot_migration_under_load_loses_nothing(tmp_path: Path) -> None:
    outcome = failover(tmp_path, "cluster-migrate", replicas=0)
    books_balance(outcome)
    assert outcome["lost"] == 0, outcome["lost_ids"]
    redirects = outcome["redirects"]
    assert redirects["ASK"] + redirects["MOVED"] > 0, "the clients never saw the slot move"


@pytest.mark.cluster
@pytest.mark.timeout(120)
def test_a_slot_migration_under_load_with_replica_confirmation(tmp_path: Path) -> None:
    outcome = failover(tmp_path, "cluster-migrate", replicas=1)
    books_balance(outcome)
    assert outcome["lost"] == 0, outcome["lost_ids"]
    assert outcome["redirects"]["ASK"] + outcome["redirects"]["MOVED"] > 0
