"""One failover run: workers (processes) and producers (threads) on a topology, a fault in the
middle, then a drain; every task is counted from the producers' and the handlers' records.

- acknowledged: ``enqueue`` returned a TaskInfo (with ``replicas=N``: N replicas confirmed it);
- unconfirmed: ``ReplicationError`` (written on the master, fewer replicas confirmed it);
- refused: any other error (Redis unreachable mid-failover: may or may not be written);
- run: distinct tasks a handler ran; lost: acknowledged tasks that never ran;
- duplicated: tasks run more than once (at-least-once: a run whose ack the failover lost);
- resume: the longest pause between two handler runs on the affected queues around the fault,
  and the longest pause between two acknowledged enqueues (what producers saw).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from failover_lib.topology import Cluster, Sentinel, wait_until
from failover_lib.worker import TASK_TYPE
from rq_sched import Client, Inspector, ReplicationError, RqSchedError

SCENARIOS = {
    "sentinel-kill": ("sentinel", "kill"),
    "sentinel-failover": ("sentinel", "failover"),
    "cluster-kill": ("cluster", "kill"),
    "cluster-migrate": ("cluster", "migrate"),
}


@dataclass(frozen=True)
class Plan:
    scenario: str
    replicas: int = 0
    producers: int = 2
    workers: int = 2
    rate: float = 200.0
    """Enqueues per second per producer (paced, so that the two cores stay shared)."""
    before: float = 1.5
    """Seconds of load before the fault."""
    after: float = 1.5
    """Seconds of load after the topology settled again."""
    drain_timeout: float = 30.0


@dataclass
class Outcome:
    scenario: str
    replicas: int
    acknowledged: int = 0
    acknowledged_after_fault: int = 0
    """Of those, acknowledged after the fault was over (producers resumed)."""
    unconfirmed: int = 0
    refused: int = 0
    run: int = 0
    lost: int = 0
    duplicated: int = 0
    unacknowledged_run: int = 0
    worker_pause_s: float = 0.0
    producer_pause_s: float = 0.0
    fault_s: float = 0.0
    """How long the fault injection took (kill to new master named, or the migration)."""
    redirects: dict[str, int] = field(default_factory=dict)
    """MOVED / ASK / TRYAGAIN answers the cluster gave during the run."""
    lost_ids: list[str] = field(default_factory=list)


class Producer(threading.Thread):
    """Enqueues paced tasks with explicit ids until ``stop`` is set; records every outcome."""

    def __init__(self, index: int, plan: Plan, url: str, cluster: bool, namespace: str,
                 queues: list[str], stop: threading.Event) -> None:  # fmt: skip
        super().__init__(name=f"producer-{index}", daemon=True)
        self.index, self.plan, self.url, self.cluster = index, plan, url, cluster
        self.namespace, self.queues, self.stop_event = namespace, queues, stop
        self.acked: list[tuple[str, float]] = []
        self.unconfirmed: list[str] = []
        self.refused: list[str] = []

    def run(self) -> None:
        client = Client.from_url(
            self.url, cluster=self.cluster, namespace=self.namespace,
            replicas=self.plan.replicas, replica_timeout=0.5,
        )  # fmt: skip
        interval = 1.0 / self.plan.rate
        due = time.monotonic()
        n = 0
        try:
            while not self.stop_event.is_set():
                n += 1
                task_id = f"p{self.index}-{n}"
                queue = self.queues[n % len(self.queues)]
                try:
                    client.enqueue(TASK_TYPE, None, queue=queue, task_id=task_id)
                    self.acked.append((task_id, time.time()))
                except ReplicationError:
                    self.unconfirmed.append(task_id)
                except RqSchedError:
                    self.refused.append(task_id)
                due = max(due + interval, time.monotonic() - 1.0)
                self.stop_event.wait(max(0.0, due - time.monotonic()))
        finally:
            client.close()


def _start_workers(plan: Plan, topo: Sentinel | Cluster, namespace: str, directory: Path
                   ) -> tuple[list[subprocess.Popen[bytes]], list[Path]]:  # fmt: skip
    procs, logs = [], []
    for i in range(plan.workers):
        out = directory / f"worker{i}.log"
        command = [sys.executable, "-m", "failover_lib.worker", topo.url, namespace,
                   ",".join(topo.queues), str(out)]  # fmt: skip
        command += ["--cluster"] if topo.cluster else []
        err = (directory / f"worker{i}.err").open("wb")
        procs.append(subprocess.Popen(command, stdout=err, stderr=subprocess.STDOUT))
        logs.append(out)
    wait_until(
        lambda: all(p.exists() and b"ready" in p.read_bytes() for p in logs), "workers to start"
    )
    return procs, logs


def _runs(logs: list[Path]) -> list[tuple[str, str, float]]:
    found = []
    for path in logs:
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                found.append((parts[0], parts[1], float(parts[2])))
    return found


def _longest_pause(times: list[float], start: float, end: float) -> float:
    inside = sorted(t for t in times if start <= t <= end)
    points = [start, *inside, end]
    return max(b - a for a, b in itertools.pairwise(points))


def run(plan: Plan, directory: Path) -> Outcome:
    """Run one scenario in ``directory``; every process it started is stopped before return."""
    kind, fault = SCENARIOS[plan.scenario]
    namespace = f"fo{os.getpid()}{int(time.time() * 1000) % 100000}"
    directory.mkdir(parents=True, exist_ok=True)
    topo: Sentinel | Cluster = (
        Sentinel(directory / "redis")
        if kind == "sentinel"
        else Cluster(directory / "redis", namespace)
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # The dashboard's view: one Inspector made before the fault and used after it.
        inspector = Inspector.from_url(topo.url, cluster=topo.cluster, namespace=namespace)
        procs, logs = _start_workers(plan, topo, namespace, directory)
        stop = threading.Event()
        producers = [
            Producer(i, plan, topo.url, topo.cluster, namespace, topo.queues, stop)
            for i in range(plan.producers)
        ]
        for producer in producers:
            producer.start()
        stop.wait(plan.before)
        fault_at = time.time()
        topo.fault(fault, namespace)
        fault_done = time.time()
        topo.settled()
        with contextlib.suppress(TimeoutError):  # counted as acknowledged_after_fault == 0
            wait_until(
                lambda: any(p.acked and p.acked[-1][1] > fault_done for p in producers),
                "an enqueue acknowledged after the fault",
                plan.drain_timeout,
            )
        stop.wait(plan.after)
        stop.set()
        for producer in producers:
            producer.join(30)
        load_end = time.time()
        acked = {tid: at for p in producers for tid, at in p.acked}
        _drain(inspector, topo.queues, logs, set(acked), plan.drain_timeout)
        inspector.close()
        redirects = topo.redirects()
        runs = _runs(logs)
        counts = Counter(tid for tid, _, _ in runs)
        affected = set(topo.affected(namespace))
        lost = sorted(set(acked) - set(counts))
        return Outcome(
            scenario=plan.scenario,
            replicas=plan.replicas,
            acknowledged=len(acked),
            acknowledged_after_fault=sum(at > fault_done for at in acked.values()),
            unconfirmed=sum(len(p.unconfirmed) for p in producers),
            refused=sum(len(p.refused) for p in producers),
            run=len(counts),
            lost=len(lost),
            duplicated=sum(1 for c in counts.values() if c > 1),
            unacknowledged_run=len(set(counts) - set(acked)),
            worker_pause_s=round(_longest_pause(
                [t for _, q, t in runs if q in affected], fault_at - 0.5, load_end), 3),
            producer_pause_s=round(
                _longest_pause(list(acked.values()), fault_at - 0.5, load_end), 3),
            fault_s=round(fault_done - fault_at, 3),
            redirects=redirects,
            lost_ids=lost[:20],
        )  # fmt: skip
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        topo.stop()


def _drain(inspector: Inspector, queues: list[str], logs: list[Path], acked: set[str],
           timeout: float) -> None:  # fmt: skip
    """Wait until every acknowledged task ran, or the queues hold nothing more to run (the rest
    are lost), bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    empty_since: float | None = None
    while time.monotonic() < deadline:
        ran = {tid for tid, _, _ in _runs(logs)}
        if acked <= ran:
            return
        try:
            left = sum(inspector.queue_info(q).size for q in queues)
        except RqSchedError:
            left = -1
        if left == 0:
            empty_since = empty_since or time.monotonic()
            if time.monotonic() - empty_since > 1.0:
                return
        else:
            empty_since = None
        time.sleep(0.1)


def measure_rate(scenario: str, replicas: int, seconds: float, directory: Path) -> float:
    """Enqueues per second of one unpaced producer on a healthy topology (no workers)."""
    kind, _ = SCENARIOS[scenario]
    namespace = "rate"
    topo: Sentinel | Cluster = (
        Sentinel(directory) if kind == "sentinel" else Cluster(directory, namespace)
    )
    try:
        with Client.from_url(topo.url, cluster=topo.cluster, namespace=namespace,
                             replicas=replicas) as client:  # fmt: skip
            for _ in range(200):  # warm up: connections, script cache
                client.enqueue(TASK_TYPE, None, queue=topo.queues[0])
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                client.enqueue(TASK_TYPE, None, queue=topo.queues[n % len(topo.queues)])
                n += 1
            return n / (time.perf_counter() - start)
    finally:
        topo.stop()


def to_json(outcomes: list[Outcome], rates: dict[str, float]) -> str:
    data: dict[str, Any] = {"outcomes": [asdict(o) for o in outcomes], "rates": rates}
    return json.dumps(data, indent=2)
