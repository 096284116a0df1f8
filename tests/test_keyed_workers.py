"""Keyed tasks with several real worker processes on a real Redis: keys with skewed backlogs
served evenly, strict order per key (one at a time, across a retry), and a per-key cap never
exceeded by a ledger of starts and ends, even across a kill -9 of a worker running keyed tasks;
and a worker held by a key's limit sleeps until it may start the key's next task, woken through
the marker, without polling.

The fairness figure for the report is printed: ``pytest -s tests/test_keyed_workers.py -k
skewed`` (``RQ_SCHED_KEYED_BACKLOG=40`` for a longer run: 40 tasks per small key).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections import Counter, defaultdict

import redis

from rq_sched import Client, FlowLimits, KeyLimits, NewTask, Router, Task
from rq_sched.keys import QueueKeys
from tests.worker_support import (
    Recorder,
    assert_one_start_per_token,
    cli_worker,
    running_server,
    starts_under_a_rate,
    stop_process,
    texts,
    wait_until,
    worker_processes,
)

Entry = tuple[str, str, float, int, str, int]
SMALL_BACKLOG = int(os.environ.get("RQ_SCHED_KEYED_BACKLOG", "12"))
"""Tasks of each small key in the fairness test; the big key has 100 times as many."""


def entries(r: redis.Redis, ledger: str) -> list[Entry]:
    """(kind "s", "e" or "f", id, time, pid, key, attempt), in the order Redis got them."""
    out = []
    for line in texts(r.lrange(ledger, 0, -1)):
        kind, task_id, at, pid, key, attempt = line.split()
        out.append((kind, task_id, float(at), int(pid), key, int(attempt)))
    return out


def enqueue(client: Client, tasks: list[tuple[str, str]], payload: dict[str, object]) -> None:
    """Enqueue (id, key) pairs in order, as keyed ledger tasks."""
    for start in range(0, len(tasks), 1000):
        client.enqueue_many(
            NewTask(type="keyed:ledger", payload=payload, task_id=task_id, key=key)
            for task_id, key in tasks[start : start + 1000]
        )


def idle(r: redis.Redis, keys: QueueKeys) -> bool:
    kready, kring, kwait, kstate = keys.keyed
    fields = {f.decode() for f in r.hkeys(kstate)}  # type: ignore[union-attr]
    return (
        not r.zcard(kready)
        and not r.zcard(kring)
        and not r.zcard(kwait)
        and not fields - {"seq", "v", "u", "kt"}
        and not r.zcard(keys.lease)
    )


def test_fifty_keys_with_skewed_backlogs_are_served_evenly_over_three_workers(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    small = SMALL_BACKLOG
    big = 100 * small
    ledger = f"{namespace}:ledger"
    client = Client(r, namespace=namespace)
    # The big key's backlog first: a FIFO queue would run all of it before any other key.
    tasks = [(f"k0-{i}", "k0") for i in range(big)]
    tasks += [(f"k{k}-{i}", f"k{k}") for i in range(small) for k in range(1, 50)]
    enqueue(client, tasks, {"url": redis_url, "ledger": ledger})
    with worker_processes(redis_url, namespace, 3, "--concurrency", "4"):
        wait_until(lambda: r.llen(ledger) >= 2 * len(tasks), timeout=120, what="every task run")
    starts = [(e[2], e[4]) for e in entries(r, ledger) if e[0] == "s"]
    starts.sort()
    # While every key is backlogged: until the first small key has started its last task.
    last_start = {key: at for at, key in starts}
    until = min(at for key, at in last_start.items() if key != "k0")
    served = Counter(key for at, key in starts if at < until)
    counts = [served[f"k{k}"] for k in range(50)]
    ratio = max(counts) / min(counts)
    print(
        f"\n50 keys, k0 with {big} tasks and 49 with {small}, 3 workers x 4 slots: while all "
        f"were backlogged each key started {min(counts)}..{max(counts)} tasks (k0: "
        f"{served['k0']}), max/min ratio {ratio:.2f}"
    )
    assert ratio <= 1.5, counts
    assert idle(r, QueueKeys(namespace, "default"))


def test_weighted_keys_are_served_in_proportion_to_their_weights_over_two_workers(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    ledger = f"{namespace}:ledger"
    client = Client(r, namespace=namespace)
    client.set_flow(
        "default",
        FlowLimits(key_concurrency=2, keys={"gold": KeyLimits(weight=3, concurrency=6)}),
    )
    tasks = [(f"{key}-{i}", key) for key in ("gold", "basic", "plain") for i in range(240)]
    enqueue(client, tasks, {"url": redis_url, "ledger": ledger})
    with worker_processes(redis_url, namespace, 2, "--concurrency", "4"):
        wait_until(lambda: r.llen(ledger) >= 2 * len(tasks), timeout=120, what="every task run")
    starts = sorted((e[2], e[4]) for e in entries(r, ledger) if e[0] == "s")
    # While every key was backlogged: until gold started its last task.
    until = max(at for at, key in starts if key == "gold")
    served = Counter(key for at, key in starts if at < until)
    share = served["gold"] / ((served["basic"] + served["plain"]) / 2)
    print(f"\nweights 3 / 1 / 1 over 2 workers x 4 slots: starts {dict(served)}, share {share:.2f}")
    assert 2.5 <= share <= 3.5, served
    assert idle(r, QueueKeys(namespace, "default"))


def test_key_concurrency_one_runs_each_keys_tasks_one_at_a_time_in_order_across_a_retry(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    ledger = f"{namespace}:ledger"
    client = Client(r, namespace=namespace)
    client.set_flow("default", FlowLimits(key_concurrency=1, key_hold_on_retry=True))
    keys, per_key = 6, 8
    tasks = [(f"{k}-{i}", k) for i in range(per_key) for k in "abcdef"[:keys]]
    payload = {"url": redis_url, "ledger": ledger, "sleep": 0.02, "fail_first": True}
    # Only each key's first task fails once: the others run right after it, in order.
    enqueue(client, [t for t in tasks if t[0].endswith("-0")], payload)
    enqueue(client, [t for t in tasks if not t[0].endswith("-0")], {**payload, "fail_first": 0})
    with worker_processes(redis_url, namespace, 3, "--concurrency", "4"):
        wait_until(
            lambda: sum(1 for e in entries(r, ledger) if e[0] == "e") >= len(tasks),
            timeout=60,
            what="every task done",
        )
    by_key: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries(r, ledger):
        by_key[entry[4]].append(entry)
    for key, lines in by_key.items():
        # One at a time: every start follows the end (or failure) of the one before.
        kinds = [line[0] for line in lines]
        assert kinds == ["s", "f"] + ["s", "e"] * per_key, (key, kinds)
        started = [(line[1], line[5]) for line in lines if line[0] == "s"]
        expected = [(f"{key}-0", 0)] + [(f"{key}-{i}", int(i == 0)) for i in range(per_key)]
        assert started == expected, (key, started)
    assert idle(r, QueueKeys(namespace, "default"))


def test_key_concurrency_never_exceeded_even_across_kill_9_of_a_worker(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    cap, per_key = 2, 12
    ledger = f"{namespace}:ledger"
    client = Client(r, namespace=namespace)
    client.set_flow("default", FlowLimits(key_concurrency=cap))
    tasks = [(f"{k}-{i}", k) for i in range(per_key) for k in "wxyz"]
    enqueue(client, tasks, {"url": redis_url, "ledger": ledger, "sleep": 0.3})
    victim = cli_worker(redis_url, namespace, "--concurrency", "8", "--lease", "1")
    try:
        with worker_processes(redis_url, namespace, 2, "--concurrency", "8", "--lease", "1"):
            wait_until(
                lambda: (
                    len({e[3] for e in entries(r, ledger)}) >= 2
                    and any(e[3] == victim.pid and e[0] == "s" for e in entries(r, ledger)[-4:])
                ),
                timeout=30,
                what="another worker running tasks while the victim runs one",
            )
            victim.send_signal(signal.SIGKILL)
            stop_process(victim)
            wait_until(
                lambda: len({e[1] for e in entries(r, ledger) if e[0] == "e"}) >= len(tasks),
                timeout=60,
                what="every task done",
            )
    finally:
        if victim.poll() is None:
            stop_process(victim, signal.SIGKILL)
    running: dict[str, set[str]] = defaultdict(set)
    most: Counter[str] = Counter()
    restarted = 0
    for kind, task_id, _, _, key, _ in entries(r, ledger):
        if kind == "s":
            # A start of a task the killed worker ran: its slot was held until the lease was
            # recovered and the task started again, so that run ends here.
            restarted += task_id in running[key]
            running[key].add(task_id)
        else:
            running[key].discard(task_id)
        most[key] = max(most[key], len(running[key]))
    print(f"\nper-key cap {cap}: most running per key {dict(most)}; {restarted} task(s) rerun")
    assert max(most.values()) <= cap
    assert restarted >= 1
    wait_until(lambda: idle(r, QueueKeys(namespace, "default")), timeout=10, what="idle keys")


def test_a_worker_held_by_a_keys_cap_is_woken_when_the_keys_task_ends(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    """key_concurrency 1, 4 tasks of one key of 0.2 s, a server with 10 free slots: each
    starts as the one before ends (the ending script wakes a worker through the marker);
    without the wake-up the held worker would sleep until its idle timeout (30 s)."""
    spans = Recorder()
    router = Router()

    @router.task("key:one")
    async def one(task: Task) -> None:
        began = time.monotonic()
        await asyncio.sleep(0.2)
        spans.add((began, time.monotonic()))

    client = Client(r, namespace=namespace)
    client.set_flow("default", FlowLimits(key_concurrency=1))
    with running_server(redis_url, router, namespace=namespace, concurrency=10):
        client.enqueue_many(NewTask(type="key:one", key="tenant") for _ in range(4))
        done = sorted(spans.wait_for(4, timeout=10))
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(done)]
    print(f"\nkey cap 1: next start after the previous end: {[round(g * 1000) for g in gaps]} ms")
    assert all(-0.01 <= g < 1.0 for g in gaps), gaps


def test_a_worker_held_by_a_keys_rate_sleeps_until_the_keys_next_token(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    limits = FlowLimits(key_rate="5/s")
    seen, holds = starts_under_a_rate(redis_url, r, namespace, limits, key="tenant")
    assert_one_start_per_token("key 5/s", seen, holds)
