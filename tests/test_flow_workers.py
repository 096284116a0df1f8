"""Flow control with several real worker processes on a real Redis: a rate limit held in every
1 s window, a concurrency cap never exceeded (by a ledger of starts and ends) even across a
kill -9 of a worker holding slots, and the Redis commands idle workers send while held back.

The rate figure for the report comes from a longer run of the same code:
``RQ_SCHED_FLOW_SECONDS=60 pytest -s tests/test_flow_workers.py -k rate_limit_over``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import threading
import time
from collections import Counter

import redis

from rq_sched import Client, FlowLimits, NewTask, Router, Task
from rq_sched.keys import GlobalKeys, QueueKeys
from tests.worker_support import (
    Recorder,
    assert_one_start_per_token,
    cli_worker,
    monitored,
    running_server,
    starts_under_a_rate,
    stop_process,
    texts,
    wait_until,
    worker_processes,
)

RATE = 100
TASKS = 100
"""Tasks of 0.5 s in the concurrency test: 10 s of work at the cap."""
SECONDS = int(os.environ.get("RQ_SCHED_FLOW_SECONDS", "10"))


def ledger_tasks(client: Client, url: str, ledger: str, count: int, sleep: float = 0) -> None:
    payload = {"url": url, "ledger": ledger, "sleep": sleep}
    for start in range(0, count, 1000):
        n = min(1000, count - start)
        client.enqueue_many(NewTask(type="flow:ledger", payload=payload) for _ in range(n))


def entries(r: redis.Redis, ledger: str) -> list[tuple[str, str, float, int]]:
    """The ledger: (kind "s" or "e", task id, time, worker pid), in the order Redis got them."""
    out = []
    for line in texts(r.lrange(ledger, 0, -1)):
        kind, task_id, at, pid = line.split()
        out.append((kind, task_id, float(at), int(pid)))
    return out


def test_rate_limit_over_four_worker_processes_holds_in_every_second(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    ledger = f"{namespace}:ledger"
    client = Client(r, namespace=namespace)
    client.set_flow("default", FlowLimits(rate=f"{RATE}/s"))
    ledger_tasks(client, redis_url, ledger, RATE * (SECONDS + 8))
    need = RATE * (SECONDS + 6)
    with worker_processes(redis_url, namespace, 4, "--concurrency", "4"):
        wait_until(
            lambda: r.llen(ledger) >= 2 * need,
            timeout=SECONDS + 60,
            what=f"{need} tasks run",
        )
    events = entries(r, ledger)
    starts = sorted(at for kind, _, at, _ in events if kind == "s")
    # Skip the start-up (worker processes coming up one after another, 2.5 s): a timer hand-off
    # taken then can be served late, up to the 2 s backstop (seen once in CI, right after the
    # first start). The steady state is what the limit is judged on.
    begin = starts[0] + 2.5
    assert starts[-1] >= begin + SECONDS, "too few tasks after the start-up"
    per_window = Counter(int(at - begin) for at in starts if at >= begin)
    windows = [per_window[k] for k in range(SECONDS)]
    worst = max(windows, key=lambda n: abs(n - RATE))
    pids = Counter(pid for kind, _, _, pid in events if kind == "s")
    ordered = sorted((at, pid) for kind, _, at, pid in events if kind == "s")
    gaps = [
        (round(b[0] - a[0], 3), a[1], b[1])
        for a, b in itertools.pairwise(ordered)
        if b[0] - a[0] > 0.05
    ]
    print(f"\nwindows: {windows}; gaps over 50 ms (s, pid before, pid after): {gaps}")
    print(
        f"\nrate {RATE}/s over 4 worker processes, {SECONDS} windows of 1 s: "
        f"min {min(windows)}, max {max(windows)}, worst {worst} "
        f"({(worst - RATE) / RATE:+.1%}); starts per worker {sorted(pids.values())}"
    )
    # Never faster than the limit in any window: that is what the limit promises whatever the
    # load. Slower windows happen when this shared machine starves the workers or Redis (the
    # gaps above say when); the average and most windows must still be on the rate.
    assert max(windows) <= RATE * 1.03, windows
    assert sum(windows) >= RATE * SECONDS * 0.9, windows
    assert sorted(windows)[len(windows) // 2] >= RATE * 0.97, windows


def test_concurrency_cap_never_exceeded_even_across_kill_9_of_a_worker_holding_slots(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    cap = 5
    assert 16 * cap <= TASKS  # enough left after the kill to fill the cap again
    ledger = f"{namespace}:ledger"
    keys = QueueKeys(namespace, "default")
    client = Client(r, namespace=namespace)
    client.set_flow("default", FlowLimits(concurrency=cap))
    ledger_tasks(client, redis_url, ledger, TASKS, sleep=0.5)
    leased_most = 0
    stop = threading.Event()

    def sample() -> None:  # the lease set, as every dequeue counts it, sampled meanwhile
        nonlocal leased_most
        watcher = redis.Redis.from_url(redis_url)
        while not stop.is_set():
            leased_most = max(leased_most, int(watcher.zcard(keys.lease)))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    victim = cli_worker(redis_url, namespace, "--concurrency", "8", "--lease", "1")
    held_by_victim: set[str] = set()
    killed_at = 0
    try:
        wait_until(lambda: r.zcard(keys.lease) >= cap, timeout=30, what="the cap reached")
        with worker_processes(redis_url, namespace, 3, "--concurrency", "8", "--lease", "1"):
            # Kill the victim once another worker runs tasks too, while it holds slots.
            wait_until(
                lambda: (
                    len({e[3] for e in entries(r, ledger)}) >= 2
                    and bool(_running_of(r, ledger, victim.pid))
                ),
                timeout=30,
                what="another worker running tasks while the victim holds slots",
            )
            victim.send_signal(signal.SIGKILL)
            stop_process(victim)
            held_by_victim = _running_of(r, ledger, victim.pid)
            killed_at = int(r.llen(ledger))
            wait_until(
                lambda: len({e[1] for e in entries(r, ledger) if e[0] == "e"}) >= TASKS,
                timeout=60,
                what="every task done",
            )
    finally:
        stop.set()
        sampler.join(5)
        if victim.poll() is None:
            stop_process(victim, signal.SIGKILL)
    events = entries(r, ledger)
    # A start of the killed worker has no end: it holds its slot (its lease) until the task
    # starts again after the lease was recovered, so it is closed there; the lease samples
    # count the slots exactly.
    running: set[str] = set()
    most = most_after = 0
    for i, (kind, task_id, _, _) in enumerate(events):
        if kind == "s":
            running.discard(task_id)  # a restart of a task the killed worker held
            running.add(task_id)
        else:
            running.discard(task_id)
        most = max(most, len(running))
        if i >= killed_at:  # the slots the killed worker held came back: the cap is reached
            most_after = max(most_after, len(running))
    print(
        f"\ncap {cap}: most running by the ledger {most}, most leased by samples {leased_most}; "
        f"the killed worker was running {len(held_by_victim)} task(s); most running after "
        f"the kill {most_after}"
    )
    assert most <= cap
    assert leased_most <= cap
    assert most_after == cap  # the killed worker's slots came back (none leaked)
    assert r.zcard(keys.lease) == 0 and r.llen(keys.pending) == 0


def _running_of(r: redis.Redis, ledger: str, pid: int) -> set[str]:
    """Tasks ``pid`` started and has not ended, by the ledger."""
    running: set[str] = set()
    for kind, task_id, _, by in entries(r, ledger):
        if by == pid:
            (running.add if kind == "s" else running.discard)(task_id)
    return running


def command_counts(url: str, seconds: float) -> Counter[tuple[str, str]]:
    """Every command clients sent Redis in the next ``seconds``, by (client address, command):
    see :func:`tests.worker_support.monitored`."""
    with monitored(url) as seen:
        time.sleep(seconds)  # the measurement window itself
    return Counter(seen)


def test_idle_commands_per_worker_while_rate_limited(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    """4 workers on an empty queue (the baseline), then on a saturated 100/s queue: dequeue
    calls per task started (no herd); then the same backlog held by a limit whose next token is
    an hour away: what idle workers send, against the baseline."""
    ledger = f"{namespace}:ledger"
    client = Client(r, namespace=namespace)
    client.set_flow("default", FlowLimits(rate=f"{RATE}/s"))
    window = 5.0
    servers = GlobalKeys(namespace).servers
    with worker_processes(redis_url, namespace, 4, "--concurrency", "4"):
        wait_until(lambda: r.zcard(servers) >= 4, timeout=60, what="4 servers up")
        time.sleep(1.0)  # past their start-up
        baseline = command_counts(redis_url, window * 2)
        ledger_tasks(client, redis_url, ledger, RATE * 30)
        wait_until(lambda: r.llen(ledger) >= 2 * RATE, timeout=60, what="tasks under way")
        before = r.llen(ledger) // 2
        busy = command_counts(redis_url, window)
        started = r.llen(ledger) // 2 - before
        client.set_flow("default", FlowLimits(rate="1/h"))
        wait_until(lambda: r.hexists(QueueKeys(namespace, "default").flow, "tat"), timeout=10)
        time.sleep(0.5)  # let the wake-ups of the change settle
        idle = command_counts(redis_url, window * 2)
    dequeues = sum(n for (_, cmd), n in busy.items() if cmd == "EVALSHA dequeue")
    idle_total = sum(idle.values())
    base_total = sum(baseline.values())
    idle_dequeues = sum(n for (_, cmd), n in idle.items() if cmd == "EVALSHA dequeue")
    per_worker = idle_total / 4 / (window * 2)
    print(
        f"\n100/s saturated over 4 workers: {started} tasks started in {window:g} s with "
        f"{dequeues} dequeue calls ({dequeues / max(started, 1):.2f} per task)"
        f"\nheld by a 1/h limit, {window * 2:g} s: {idle_total} commands "
        f"({per_worker:.2f}/s per worker), {idle_dequeues} dequeue calls; by command: "
        f"{dict(Counter(cmd for (_, cmd) in idle.elements()))}"
        f"\nempty queue, {window * 2:g} s (baseline): {base_total} commands "
        f"({base_total / 4 / (window * 2):.2f}/s per worker); by command: "
        f"{dict(Counter(cmd for (_, cmd) in baseline.elements()))}"
    )
    assert dequeues <= 1.5 * started  # one worker per token time: no herd
    assert per_worker <= 2.0  # the idle-worker target (docs/bench.md)
    assert idle_total <= base_total + 8  # held costs what idle costs
    assert idle_dequeues <= 4  # no polling: at most a call per worker after the change


def test_a_worker_held_by_the_cap_is_woken_when_a_lease_ends_not_by_polling(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    """Concurrency 1 on a queue, 4 tasks of 0.2 s: each starts as the one before ends. Without
    the wake-up the held worker would sleep until its idle timeout (30 s)."""
    spans = Recorder()
    router = Router()

    @router.task("cap:one")
    async def one(task: Task) -> None:
        began = time.monotonic()
        await asyncio.sleep(0.2)
        spans.add((began, time.monotonic()))

    client = Client(r, namespace=namespace)
    client.set_flow("default", FlowLimits(concurrency=1))
    with running_server(redis_url, router, namespace=namespace, concurrency=10):
        client.enqueue_many(NewTask(type="cap:one") for _ in range(4))
        done = sorted(spans.wait_for(4, timeout=10))
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(done)]
    print(f"\ncap 1: next start after the previous end: {[round(g * 1000) for g in gaps]} ms")
    assert all(-0.01 <= g < 1.0 for g in gaps), gaps  # one at a time, and no 30 s sleep


def test_a_worker_held_by_the_rate_sleeps_until_the_next_token(
    redis_url: str, r: redis.Redis, namespace: str
) -> None:
    seen, holds = starts_under_a_rate(redis_url, r, namespace, FlowLimits(rate="5/s"))
    assert_one_start_per_token("5/s", seen, holds)
