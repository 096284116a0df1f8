"""Per-task-type limits with several real worker processes on a real Redis: a type's cap never
exceeded (by a ledger of starts and ends) even across a kill -9 of a worker holding its slots, a
type's rate held in every 1 s window, and the queue's other tasks running meanwhile unhindered.

Longer run of the rate test for the report:
``RQ_SCHED_FLOW_SECONDS=60 pytest -s tests/test_type_limits_workers.py -k rate``.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

import redis

from rq_sched import Client, FlowLimits, NewTask, TypeLimits
from rq_sched.keys import QueueKeys
from tests.test_flow_workers import entries
from tests.worker_support import (
    assert_one_start_per_token,
    cli_worker,
    starts_under_a_rate,
    stop_process,
    wait_until,
    worker_processes,
)

SECONDS = int(os.environ.get("RQ_SCHED_FLOW_SECONDS", "10"))


def enqueue(client: Client, task_type: str, count: int, payload: dict[str, object]) -> None:
    for start in range(0, count, 1000):
        n = min(1000, count - start)
        client.enqueue_many(NewTask(type=task_type, payload=payload) for _ in range(n))


def idle(r: redis.Redis, keys: QueueKeys) -> bool:
    kready, kring, _, kstate = keys.keyed
    fields = {f.decode() for f in r.hkeys(kstate)}  # type: ignore[union-attr]
    left = {f for f in fields - {"seq", "v", "u", "kt"} if not f.startswith("r:")}
    return not r.zcard(kready) and not r.zcard(kring) and not left and not r.zcard(keys.lease)


def test_a_types_cap_is_never_exceeded_across_kill_9_and_other_types_run_meanwhile(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    cap, tasks, others = 3, 45, 300
    ledger, other_ledger = f"{namespace}:ledger", f"{namespace}:others"
    keys = QueueKeys(namespace, "default")
    client = Client(r, namespace=namespace)
    client.set_flow("default", FlowLimits(types={"flow:ledger": TypeLimits(concurrency=cap)}))
    enqueue(client, "flow:ledger", tasks, {"url": redis_url, "ledger": ledger, "sleep": 0.4})
    # Behind the capped type's backlog, in the same queue: tasks of another type.
    enqueue(client, "flow:ledger:free", others, {"url": redis_url, "ledger": other_ledger})
    victim = cli_worker(redis_url, namespace, "--concurrency", "8", "--lease", "1")
    killed_at = 0
    try:
        wait_until(lambda: len(entries(r, ledger)) >= cap, timeout=30, what="the cap reached")
        with worker_processes(redis_url, namespace, 2, "--concurrency", "8", "--lease", "1"):
            wait_until(
                lambda: any(e[0] == "s" and e[3] == victim.pid for e in entries(r, ledger)),
                timeout=30,
                what="the victim running a capped task",
            )
            victim.send_signal(signal.SIGKILL)
            stop_process(victim)
            killed_at = int(r.llen(ledger))
            wait_until(
                lambda: len({e[1] for e in entries(r, ledger) if e[0] == "e"}) >= tasks,
                timeout=90,
                what="every capped task done",
            )
            wait_until(lambda: idle(r, keys), timeout=10, what="the type's lane idle")
    finally:
        if victim.poll() is None:
            stop_process(victim, signal.SIGKILL)
    events = entries(r, ledger)
    running: set[str] = set()
    most = most_after = 0
    for i, (kind, task_id, _, _) in enumerate(events):
        if kind == "s":
            running.add(task_id)  # a restart of a task the killed worker held replaces it
        else:
            running.discard(task_id)
        most = max(most, len(running))
        if i >= killed_at:
            most_after = max(most_after, len(running))
    other_done = {i: at for kind, i, at, _ in entries(r, other_ledger) if kind == "e"}
    other_ends = sorted(other_done.values())  # a task the killed worker ran may run again
    capped_ends = sorted(at for kind, _, at, _ in events if kind == "e")
    print(
        f"\ntype cap {cap}: most running by the ledger {most}, after the kill {most_after}; "
        f"{len(other_ends)} other tasks done {other_ends[-1] - other_ends[0]:.2f} s after the "
        f"first, the capped type's {tasks} tasks took {capped_ends[-1] - capped_ends[0]:.2f} s"
    )
    assert most <= cap
    assert most_after == cap  # the killed worker's slots came back (none leaked)
    assert len(other_ends) == others
    # The other type was not paced by the capped one: every task of it started before half
    # the capped ones ended (a task the killed worker held ends later, when run again).
    first_starts: dict[str, float] = {}
    for kind, task_id, at, _ in entries(r, other_ledger):
        if kind == "s":
            first_starts.setdefault(task_id, at)
    assert max(first_starts.values()) < capped_ends[len(capped_ends) // 2]


def test_a_types_rate_over_three_worker_processes_holds_in_every_second(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    rate = 50
    ledger, other_ledger = f"{namespace}:ledger", f"{namespace}:others"
    client = Client(r, namespace=namespace)
    client.set_flow("default", FlowLimits(types={"flow:ledger": TypeLimits(rate=f"{rate}/s")}))
    enqueue(client, "flow:ledger", rate * (SECONDS + 3), {"url": redis_url, "ledger": ledger})
    enqueue(client, "flow:ledger:free", 500, {"url": redis_url, "ledger": other_ledger})
    need = rate * (SECONDS + 2)
    with worker_processes(redis_url, namespace, 3, "--concurrency", "4"):
        wait_until(lambda: r.llen(ledger) >= 2 * need, timeout=SECONDS + 60, what="tasks run")
    starts = sorted(at for kind, _, at, _ in entries(r, ledger) if kind == "s")
    begin = starts[0] + 1.0  # the first second: workers still starting up
    per_window = Counter(int(at - begin) for at in starts if at >= begin)
    windows = [per_window[k] for k in range(SECONDS)]
    other_done = {i: at for kind, i, at, _ in entries(r, other_ledger) if kind == "e"}
    other_ends = sorted(other_done.values())
    print(
        f"\ntype rate {rate}/s over 3 worker processes, {SECONDS} windows of 1 s: min "
        f"{min(windows)}, max {max(windows)}; windows {windows}; 500 other tasks done in "
        f"{other_ends[-1] - starts[0]:.2f} s"
    )
    assert max(windows) <= rate * 1.03 + 1, windows
    assert sum(windows) >= rate * SECONDS * 0.9, windows
    assert len(other_ends) == 500
    assert other_ends[-1] < starts[0] + SECONDS / 2  # not paced by the limited type


def test_a_worker_held_by_a_types_rate_sleeps_until_the_types_next_token(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    limits = FlowLimits(types={"rate:one": TypeLimits(rate="5/s")})
    seen, holds = starts_under_a_rate(redis_url, r, namespace, limits)
    assert_one_start_per_token("type 5/s", seen, holds)
