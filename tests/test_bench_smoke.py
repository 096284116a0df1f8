"""tools/bench cannot rot: a quick rq_sched-only run produces every scenario's figures.

No speed is asserted (tests never judge wall-clock speed); the run must complete every
scenario on a private redis-server the bench starts itself, and its figures must be sane.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ["enqueue", "drain", "drain_call", "pickup", "delayed", "memory", "idle", "scale",
             "backlog", "fleet", "flow"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_bench_of_rq_sched_writes_every_scenario(tmp_path: Path) -> None:
    env = {**os.environ, "BENCH_PYTHON": sys.executable}
    proc = subprocess.run(
        [str(ROOT / "tools" / "bench"), "--quick", "--only", "rq_sched", "--no-chart",
         "--no-install", "--out", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=290, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    [json_file] = tmp_path.glob("bench-*.json")
    doc = json.loads(json_file.read_text())
    ours = doc["results"]["rq_sched"]

    assert sorted(ours) == sorted(SCENARIOS)
    errors = {name: res["error"] for name, res in ours.items() if "error" in res}
    assert not errors
    sizes = doc["meta"]["sizes"]
    assert ours["enqueue"]["single_per_s"] > 0 and ours["enqueue"]["bulk_per_s"] > 0
    assert ours["enqueue"]["concurrent_per_s"] > 0
    assert ours["drain"]["worker_cpu_us"] > 0 and ours["drain"]["redis_cpu_us"] > 0
    assert doc["meta"]["ping_per_s"] > 0
    assert ours["drain"]["done"] == sizes["drain"]  # every pre-enqueued task ran
    call = ours["drain_call"]
    assert call["done"] == sizes["drain"] and call["calls"] == sizes["drain"]  # the handler ran
    assert call["ceiling_per_s"] > 0 and call["pct_of_ceiling"] > 0
    for handler in ("noop", "call"):
        runs = ours["fleet"][handler]
        assert set(runs) == {str(n) for n in sizes["fleet"]}
        assert all(run["done"] == sizes["fleet_n"] for run in runs.values())
        assert runs["1"]["speedup"] == 1.0 and all(run["redis_cpu_us"] > 0 for run in runs.values())
    assert all(run["calls"] == sizes["fleet_n"] for run in ours["fleet"]["call"].values())
    assert set(ours["flow"]) == {"none", "rate", "cap", "rate+cap", "type rate+cap"}
    assert all(kind["done"] == sizes["drain"] for kind in ours["flow"].values())
    assert ours["flow"]["none"]["per_s_ratio"] == 1.0
    assert "rq-sched worker --workers N" in proc.stdout and "flow-limit overhead" in proc.stdout
    assert ours["pickup"]["n"] == sizes["pickup"]
    assert ours["delayed"]["n"] == sizes["delayed"]  # every delayed task ran
    assert 0 < ours["memory"]["bytes_per_task"] < 10_000
    assert ours["idle"]["per_s"] >= 0 and ours["idle"]["seconds"] > 0
    assert all(run["done"] == sizes["drain"] for run in ours["scale"].values())
    assert {str(n) for n in sizes["backlogs"]} == set(ours["backlog"])
    assert "Server(" in doc["settings"]["rq_sched"]["worker"]
    assert "== targets" in proc.stdout
