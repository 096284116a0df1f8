"""The Redis topologies a failover run uses, and the faults it injects into them.

- ``sentinel``: 1 master, 1 replica, 3 sentinels. ``kill``: SIGKILL the master, wait until the
  sentinels name the replica, restart the dead server as a replica of the new master.
  ``failover``: ``SENTINEL FAILOVER`` (the old master is demoted, no process dies).
- ``cluster``: 3 masters with a replica each. ``kill``: SIGKILL the master of the first queue,
  wait until its replica serves the slot, restart the dead node (it rejoins as a replica).
  ``migrate``: move the first queue's slot to another master, key batch by key batch, with the
  ``IMPORTING`` / ``MIGRATING`` states that make clients see ``ASK`` and then ``MOVED``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster as ClusterClient

from rq_sched.keys import QueueKeys
from rq_sched.local_redis import RedisCluster, RedisServer, SentinelGroup

BOUND = 60.0
"""Longest wait for any topology change, in seconds."""


def wait_until(check: Callable[[], bool], what: str, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout}s waiting for {what}")
        time.sleep(0.05)


def _ask(port: int, *args: Any) -> Any:
    with redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2) as conn:
        return conn.execute_command(*args)


def _replica_online(port: int) -> bool:
    try:
        info = redis.Redis(port=port, socket_timeout=2).info("replication")
    except redis.RedisError:
        return False
    return bool(info.get("slave0", {}).get("state") == "online")


class Sentinel:
    """A :class:`SentinelGroup` and its faults."""

    cluster = False

    def __init__(self, directory: Path) -> None:
        self.group = SentinelGroup(directory)
        self.queues = ["fq"]
        try:
            self.group.start()
            wait_until(lambda: _replica_online(self.group.master().port), "the replica in sync")
        except BaseException:
            self.group.stop()  # whatever had started
            raise

    @property
    def url(self) -> str:
        return self.group.url

    def affected(self, namespace: str) -> list[str]:
        return self.queues

    def fault(self, kind: str, namespace: str) -> None:
        old = self.group.master()
        if kind == "kill":
            old.stop(kill=True)
            new_port = self.group.wait_for_new_master(old.port, BOUND)
            # Back as a replica of the new master, as its rewritten config would say (a
            # returning master left to the sentinels is converted only after about 10 s).
            old.extra_args = [*old.extra_args, "--replicaof", "127.0.0.1", str(new_port)]
            old.start()
        elif kind == "failover":
            self.group.sentinel_command(0, "sentinel", "failover", "mymaster")
            self.group.wait_for_new_master(old.port, BOUND)
        else:
            raise ValueError(f"sentinel has no fault {kind!r} (kill, failover)")

    def settled(self) -> None:
        """Wait until the new master has a replica in sync again."""
        wait_until(lambda: _replica_online(self.group.master().port), "a replica in sync again")

    def redirects(self) -> dict[str, int]:
        return {}

    def stop(self) -> None:
        self.group.stop()


class Cluster:
    """A 3+3 :class:`RedisCluster` and its faults."""

    cluster = True

    def __init__(self, directory: Path, namespace: str) -> None:
        self.nodes = RedisCluster(directory, replicas=1)
        try:
            self.nodes.start()
            with ClusterClient.from_url(self.nodes.url) as rc:
                self.queues = _spread(rc, namespace)
        except BaseException:
            self.nodes.stop()
            raise
        self.victim: RedisServer | None = None

    @property
    def url(self) -> str:
        return self.nodes.url

    def affected(self, namespace: str) -> list[str]:
        return self.queues[:1]

    def _owner_port(self, namespace: str, queue: str) -> int:
        slot = _slot(self.nodes.nodes[0].port, namespace, queue)
        for node in self._alive():
            for start, end, master, *_ in _ask(node.port, "CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return int(master[1])
        raise RuntimeError(f"no node serves the slot of {queue!r}")

    def _alive(self) -> list[RedisServer]:
        return [n for n in self.nodes.nodes if n.proc is not None and n.proc.poll() is None]

    def fault(self, kind: str, namespace: str) -> None:
        queue = self.queues[0]
        port = self._owner_port(namespace, queue)
        victim = next(n for n in self.nodes.nodes if n.port == port)
        if kind == "kill":
            victim.stop(kill=True)
            wait_until(
                lambda: (
                    self._owner_port(namespace, queue) != port
                    and all(
                        b"cluster_state:ok" in _ask(n.port, "CLUSTER", "INFO")
                        for n in self._alive()
                    )
                ),
                "a replica to take over the killed master's slots",
            )
            victim.start()  # nodes.conf kept: it rejoins as a replica of its replacement
            self.victim = victim
        elif kind == "migrate":
            target = next(
                n.port
                for n in self.nodes.nodes
                if n.port != port and _ask(n.port, "ROLE")[0] == b"master"
            )
            _migrate_slot(_slot(port, namespace, queue), port, target)
        else:
            raise ValueError(f"cluster has no fault {kind!r} (kill, migrate)")

    def settled(self) -> None:
        if self.victim is not None:
            port = self.victim.port
            wait_until(
                lambda: (
                    _ask(port, "ROLE")[0] == b"slave"
                    and _ask(port, "INFO", "replication").get("master_link_status") == "up"
                ),
                "the restarted node back as a replica",
            )

    def redirects(self) -> dict[str, int]:
        """MOVED / ASK / TRYAGAIN answers the nodes gave so far (INFO errorstats)."""
        found = {"MOVED": 0, "ASK": 0, "TRYAGAIN": 0}
        for node in self._alive():
            stats = _ask(node.port, "INFO", "errorstats")
            for name in found:
                found[name] += int(stats.get(f"errorstat_{name}", {}).get("count", 0))
        return found

    def stop(self) -> None:
        self.nodes.stop()


def _slot(port: int, namespace: str, queue: str) -> int:
    return int(_ask(port, "CLUSTER", "KEYSLOT", QueueKeys(namespace, queue).msg))


def _spread(rc: ClusterClient, namespace: str) -> list[str]:
    """Three queue names whose slots sit on three different masters."""
    found: dict[int, str] = {}
    for i in range(1000):
        node = rc.get_node_from_key(QueueKeys(namespace, f"fq{i}").msg)  # type: ignore[no-untyped-call]
        found.setdefault(node.port, f"fq{i}")
        if len(found) == 3:
            return list(found.values())
    raise RuntimeError("no three queues on three masters")


def _migrate_slot(slot: int, source: int, target: int, batch: int = 1) -> None:
    """Move ``slot`` from the master on ``source`` to the one on ``target`` (redis-cli
    --cluster reshard does the same steps), a few keys at a time so clients see ASK."""
    source_id = _ask(source, "CLUSTER", "MYID").decode()
    target_id = _ask(target, "CLUSTER", "MYID").decode()
    _ask(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    _ask(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    while keys := _ask(source, "CLUSTER", "GETKEYSINSLOT", slot, batch):
        _ask(source, "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
        time.sleep(0.05)  # let clients run between batches: this is what "under load" means
    for port in (target, source):
        _ask(port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
