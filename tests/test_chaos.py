"""The chaos soak cannot rot, and its audit stays clean with every fault kind.

Each test runs ``tools/chaos`` (as ``python -m chaos_lib``, the interpreter already set up) for
a CI-sized soak on a private redis-server, and reads the audit's JSON summary. The seeds are
fixed so a failure here replays with ``tools/chaos --seed N`` and the same options.

The first test runs the fault kinds the first landing already survived; the second the kinds
it did not (issue 10: poison messages, bad outcomes, stale leases after loop stalls, clock
skew, stalled and blackholed connections, cancels with dead workers), all together. Both take
every operator action, cancels included, and both make debounce and throttle calls, audited by
their own rules (docs/chaos.md, "Debounce and throttle"; tested in test_chaos_windows.py).
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
SURVIVED_OPS = "cancel,delete,archive,run,pause,bulk,flow"
"""Operator actions whose outcome today's code keeps (all of them, since cancels are recorded
in Redis: issue 10 case 17; flow limits changed at run time since issue 18)."""


def soak(tmp_path: Path, *options: str, timeout: float) -> tuple[dict[str, Any], str]:
    """Run one soak; return the audit summary and the tail of its output."""
    paths = [str(ROOT / "tools"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    summary = tmp_path / "audit.json"
    command = [sys.executable, "-m", "chaos_lib", "--quick", "--dir", str(tmp_path / "run")]
    command += ["--json", str(summary), *options]
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the soak stops every process it started on SIGTERM
        try:
            out, _ = proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    output = out[-8000:]
    assert summary.exists(), f"the soak wrote no audit (exit {proc.returncode}):\n{output}"
    result: dict[str, Any] = json.loads(summary.read_text())
    assert (proc.returncode == 0) == result["clean"], output
    return result, output


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_soak_with_basic_faults_audits_clean(tmp_path: Path) -> None:
    # kill -9 / SIGTERM of workers and schedulers, CLIENT PAUSE, Redis kill + AOF restart,
    # dropped and slowed connections, undecodable bytes in the store; with operator actions.
    result, output = soak(
        tmp_path,
        "--seed", "11", "--faults", "basic", "--ops", SURVIVED_OPS,
        timeout=280,
    )  # fmt: skip
    assert result["clean"], output
    assert sum(result["faults"].values()) >= 10, result["faults"]
    assert result["outcomes"].get("done", 0) >= 200, result["outcomes"]
    assert result["outcomes"].get("archived (failed)", 0) > 0  # failures were part of the mix
    # Debounce and throttle calls collided in their windows, and were audited.
    windows = result["windows"]
    assert windows.get("debounce: replaced the waiting task's message", 0) > 0, windows
    assert windows.get("throttle: dropped", 0) > 0, windows
    assert windows.get("runs checked for their payload", 0) > 0, windows


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_soak_with_the_faults_issue_10_fixed_audits_clean(tmp_path: Path) -> None:
    # Each kind of ISSUE10 is injected at least once (faults come in shuffled decks): poison
    # messages, bad outcomes, loop stalls past the lease, clock skew, stalled and blackholed
    # connections, a cancel storm after a kill -9; and the operator cancels too.
    result, output = soak(
        tmp_path,
        "--seed", "7", "--faults", "issue10", "--ops", SURVIVED_OPS,
        "--duration", "30", "--settle", "40",
        timeout=280,
    )  # fmt: skip
    assert result["clean"], output
    assert set(result["faults"]) >= {"loop_stall", "clock_skew", "cancel_storm"}, result
