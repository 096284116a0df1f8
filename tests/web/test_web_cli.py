"""``rq-sched web`` start-up rules (issue 13, holes 2 and 3): a dashboard reachable from other
hosts needs a token unless the operator says otherwise, the Host check stays on for every bind
(against DNS rebinding), and an empty token is refused instead of silently disabling auth."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.web.test_browser import start_web, stop

TOKEN = "cli-token"


def run_web(redis_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``rq-sched web`` expected to refuse to start (a bounded wait, then it is killed)."""
    argv = [sys.executable, "-m", "rq_sched.cli", "web", "--url", redis_url, "--port", "9", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def test_a_network_bind_without_a_token_refuses_to_start(redis_url: str) -> None:
    done = run_web(redis_url, "--host", "0.0.0.0")
    assert done.returncode == 2
    assert "--auth-token" in done.stderr and "--allow-no-auth" in done.stderr


@pytest.mark.parametrize("token", ["", "  "])
def test_an_empty_token_refuses_to_start(redis_url: str, token: str) -> None:
    done = run_web(redis_url, "--auth-token", token)
    assert done.returncode == 2 and "empty" in done.stderr


def test_an_empty_token_from_the_environment_refuses_to_start(redis_url: str) -> None:
    argv = [sys.executable, "-m", "rq_sched.cli", "web", "--url", redis_url, "--port", "9"]
    env = {**__import__("os").environ, "RQ_SCHED_AUTH_TOKEN": ""}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env, check=False)
    assert done.returncode == 2 and "empty" in done.stderr


def test_a_network_bind_keeps_the_host_check(redis_url: str, tmp_path: Path) -> None:
    proc, url = start_web(
        redis_url,
        "hostcheck",
        tmp_path / "web.log",
        "--host",
        "0.0.0.0",
        "--auth-token",
        TOKEN,
        "--allowed-host",
        "dash.example",
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with httpx.Client(base_url=url, timeout=10, headers=auth) as http:
            rebound = http.get("/api/config", headers={"Host": "attacker.example"})
            assert rebound.status_code == 400 and "Host" in rebound.json()["error"]
            assert "attacker" not in rebound.headers.get("location", "")
            assert http.get("/api/config", headers={"Host": "dash.example:8080"}).is_success
            assert http.get("/api/config", headers={"Host": "10.1.2.3:8080"}).is_success
            assert http.get("/api/config").is_success  # 127.0.0.1
    finally:
        stop(proc)


def test_allow_no_auth_starts_but_still_checks_hosts(redis_url: str, tmp_path: Path) -> None:
    proc, url = start_web(
        redis_url, "noauth", tmp_path / "web.log", "--host", "0.0.0.0", "--allow-no-auth"
    )
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/api/config").is_success
            rebound = http.post(
                "/api/queues/q/pause",
                headers={"Host": "attacker.example", "X-Requested-With": "x"},
            )
            assert rebound.status_code == 400
    finally:
        stop(proc)
