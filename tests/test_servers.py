"""The server harness itself: private redis-server processes and the local Redis Cluster."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from rq_sched.local_redis import (
    MissingBinaryError,
    RedisCluster,
    RedisServer,
    free_port,
    process_alive,
    require_binary,
    wait_for_port,
)


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_missing_binary_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(MissingBinaryError, match=r"beanstalkd not found on PATH.*apt-get install"):
        require_binary("beanstalkd")
    with pytest.raises(MissingBinaryError, match="install no-such-tool"):
        require_binary("no-such-tool")


def test_server_starts_on_loopback_in_its_directory_and_stops_by_pid(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "r").start()
    try:
        with redis.Redis(port=server.port) as conn:
            assert conn.ping() is True
            assert conn.config_get("bind")["bind"] == "127.0.0.1"
            assert conn.config_get("dir")["dir"] == str(tmp_path / "r")
        assert process_alive(server.pid)
    finally:
        server.stop()
    assert not process_alive(server.pid)
    assert not accepts(server.port)
    server.stop()  # stopping twice is harmless


def test_restart_keeps_data_written_to_the_aof(fresh_redis: RedisServer) -> None:
    with redis.Redis(port=fresh_redis.port) as conn:
        conn.config_set("appendfsync", "always")
        conn.set("k", "v")
    old_pid = fresh_redis.pid
    fresh_redis.restart(kill=True)
    assert fresh_redis.pid != old_pid
    with redis.Redis(port=fresh_redis.port) as conn:
        assert conn.get("k") == b"v"


def test_wait_for_port_gives_up_after_its_timeout() -> None:
    with pytest.raises(TimeoutError, match="nothing listening"):
        wait_for_port(free_port(), timeout=0.2)


def test_wait_for_port_notices_a_server_that_exited() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait(10)
    with pytest.raises(RuntimeError, match="exited with code 3"):
        wait_for_port(free_port(), timeout=5, proc=proc)


@pytest.mark.cluster
def test_cluster_has_three_masters_covering_every_slot(cluster: RedisCluster) -> None:
    assert len(cluster.nodes) == 3
    with redis.Redis(port=cluster.nodes[0].port, decode_responses=True) as conn:
        info = conn.cluster("INFO")
        nodes = conn.cluster("NODES")
    assert (info["cluster_state"], info["cluster_size"]) == ("ok", "3")
    assert info["cluster_slots_assigned"] == "16384"
    assert sorted(nodes) == sorted(f"127.0.0.1:{n.port}" for n in cluster.nodes)
    assert all("master" in node["flags"] for node in nodes.values())
