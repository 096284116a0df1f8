"""The kill -9 audit of workflows: chains and groups run by real worker processes that are
SIGKILLed at random moments (mid-task, between a member's settle and its delivery, ...), then
every workflow is audited from what the handlers recorded:

- every group callback ran, after all its members were final (never early), and more than once
  only where a worker was killed while running it (at-least-once, counted);
- every chain link ran, in order, with the previous link's result, none skipped; repeats only
  where a crash re-ran a link (counted);
- nothing is left held, undelivered or leased.

Figures are printed (run with ``-s``) and recorded in docs/workflows.md.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter
from typing import Any

import pytest
import redis

from rq_sched import Client, NewTask
from rq_sched.keys import QueueKeys
from tests.worker_support import cli_worker, stop_process, wait_until

CHAINS = 80
CHAIN_LENGTH = 4
GROUPS = 80
GROUP_SIZE = 5
QUEUES = ("wa", "wb")
ROUNDS_S = 25.0
"""How long workers are killed and restarted before the last workflows may finish."""


def _payload(url: str, namespace: str, runs: str, tag: str) -> dict[str, Any]:
    return {
        "url": url,
        "ns": namespace,
        "runs": runs,
        "tag": tag,
        "sleep": random.uniform(0.02, 0.2),
    }


@pytest.mark.slow
def test_workflows_survive_random_kill_9_of_their_workers(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    rng = random.Random(17)
    runs = f"{namespace}:runs"
    client = Client(r, namespace=namespace)
    chains = []
    for c in range(CHAINS):
        links = [
            NewTask(
                type="wf:audit",
                payload=_payload(redis_url, namespace, runs, f"{c}.{k};"),
                queue=QUEUES[(c + k) % 2],
                max_retry=50,
            )
            for k in range(CHAIN_LENGTH)
        ]
        chains.append(client.chain(links))
    groups = []
    for g in range(GROUPS):
        members = [
            NewTask(
                type="wf:audit",
                payload=_payload(redis_url, namespace, runs, f"g{g}m{m};"),
                queue=QUEUES[m % 2],
                max_retry=50,
            )
            for m in range(GROUP_SIZE)
        ]
        callback = NewTask(
            type="wf:audit",
            payload=_payload(redis_url, namespace, runs, f"g{g}cb;"),
            queue=QUEUES[g % 2],
            max_retry=50,
        )
        groups.append(client.group(members, callback, on_member_failure="cancel"))
    args = ("--lease", "1", "--concurrency", "4", "--queues", "wa=1,wb=1")
    workers: list[subprocess.Popen[str]] = [
        cli_worker(redis_url, namespace, *args) for _ in range(3)
    ]
    killed: set[int] = set()
    kills = 0
    errors: list[str] = []
    expected_runs = CHAINS * CHAIN_LENGTH + GROUPS * (GROUP_SIZE + 1)
    started = time.monotonic()
    try:
        while time.monotonic() - started < ROUNDS_S:
            time.sleep(rng.uniform(0.1, 0.8))
            victim = rng.randrange(len(workers))
            proc = workers[victim]
            proc.send_signal(signal.SIGKILL)
            _, err = stop_process(proc)
            errors.append(err)
            killed.add(proc.pid)
            kills += 1
            workers[victim] = cli_worker(redis_url, namespace, *args)
            if _distinct_ids(r, runs) >= expected_runs:
                break
        wait_until(
            lambda: _distinct_ids(r, runs) >= expected_runs,
            timeout=90,
            what="every chain link and group callback to run",
        )
        # Let the last acknowledgements and deliveries land before stopping.
        wait_until(lambda: _all_settled(r, namespace), timeout=60, what="every task settled")
    finally:
        for proc in workers:
            _, err = stop_process(proc)
            errors.append(err)
    records = [json.loads(x) for x in r.lrange(runs, 0, -1)]
    figures = _audit(records, chains, groups, killed)
    swept = sum(err.count("delivering its outcome to its dependants") for err in errors)
    print(
        f"\nworkflow audit: {CHAINS} chains x {CHAIN_LENGTH} links, {GROUPS} groups x "
        f"{GROUP_SIZE} members + callback; {kills} kill -9 in "
        f"{time.monotonic() - started:.1f}s; {figures}; outcomes delivered by the sweep "
        f"after a crash: {swept}"
    )


def _distinct_ids(r: redis.Redis, runs: str) -> int:
    return len({json.loads(x)["id"] for x in r.lrange(runs, 0, -1)})


def _all_settled(r: redis.Redis, namespace: str) -> bool:
    for queue in QUEUES:
        keys = QueueKeys(namespace, queue)
        for key in (keys.msg, keys.held, keys.deps, keys.reports, keys.outbox, keys.children):
            if r.hlen(key):
                return False
        if r.llen(keys.pending) or r.zcard(keys.lease) or r.zcard(keys.retry):
            return False
    return True


def _audit(
    records: list[dict[str, Any]], chains: list[Any], groups: list[Any], killed: set[int]
) -> dict[str, int]:
    by_id: dict[str, list[dict[str, Any]]] = {}
    for n, record in enumerate(records):
        record["n"] = n
        by_id.setdefault(record["id"], []).append(record)
    extra = Counter[str]()

    def repeats(task_id: str, what: str) -> None:
        seen = by_id.get(task_id, [])
        assert seen, f"{what} {task_id} never ran"
        for run in seen[:-1]:
            # every run but the last was cut short by a kill -9 of its worker
            assert run["pid"] in killed, f"{what} {task_id} ran twice without a crash: {seen}"
            extra[f"{what} re-run after its worker was killed"] += 1

    for group in groups:
        callback = group.callback.id
        repeats(callback, "callback")
        for run in by_id[callback]:
            assert run["early"] == [], f"callback {callback} started before {run['early']}"
        first = by_id[callback][0]
        members = [m.id for m in group.members]
        assert all(min(r_["n"] for r_ in by_id[m]) < first["n"] for m in members)
        # results in member order: each member returns its own tag
        assert [x.rsplit("m", 1)[1] for x in first["received"]] == [
            f"{i};" for i in range(GROUP_SIZE)
        ], first["received"]
        for member in members:
            repeats(member, "group member")
    for c, chain in enumerate(chains):
        ids = [link.id for link in chain.links]
        for k, task_id in enumerate(ids):
            repeats(task_id, "chain link")
            if k:
                before = by_id[ids[k - 1]]
                for run in by_id[task_id]:
                    assert run["early"] == []
                    assert run["n"] > min(b["n"] for b in before), "a link ran before its previous"
                    assert run["received"] == ["".join(f"{c}.{i};" for i in range(k))]
    return {
        "callbacks run once": sum(1 for g in groups if len(by_id[g.callback.id]) == 1),
        "runs": len(records),
        **dict(extra),
    }
