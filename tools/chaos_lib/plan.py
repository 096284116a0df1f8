"""What a soak does, decided up front from its seed: the tasks producers send and the faults.

The fault schedule is a pure function of (seed, duration, fault kinds, process names), so
``--seed N`` replays the same faults at the same offsets against the same targets. The system's
own timing is not replayable (the OS schedules the processes), so a replay reproduces the
conditions of a failure, usually the failure itself.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from chaos_lib import handlers
from rq_sched import NewTask, shards

QUEUES = {"chaos": 4, "chaos-doomed": 1, "cron": 2, "chaos-sharded": 2}
"""Queues every worker serves; operators bulk-delete only in ``chaos-doomed``."""
SHARDED = {"chaos-sharded": 3}
"""Queues stored as several shards (``rq_sched.shards``), declared before any process starts."""
SHARDED_SHARE = 0.25
"""Share of the plain, delayed, unique and explicit-id tasks that go to the sharded queue."""


def physical(queue: str) -> list[str]:
    """The queues that store ``queue`` (its shards, then its base queue)."""
    n = SHARDED.get(queue, 1)
    return [*shards.layout(queue, n), queue] if n > 1 else [queue]


def physical_of(queue: str, task_id: str | None) -> str:
    """Where ``task_id`` of ``queue`` lives (``queue`` when unknown or not sharded)."""
    n = SHARDED.get(queue, 1)
    if n == 1 or task_id is None:
        return queue
    return shards.layout(queue, n)[shards.shard_of(task_id, n)]


ALL_PHYSICAL = [p for q in QUEUES for p in physical(q)]
"""Every queue the audit reads."""
LEASE = 2.0
"""Lease of the soak's workers: short, so recovery (lease + recover interval) is quick."""

# -- tasks --------------------------------------------------------------------------------------

KEYED_SHARE = 0.35
"""Share of the produced tasks enqueued with a fairness key (``key="tenant:N"``)."""

_MODES = (
    ("now", 40),
    ("later", 15),
    ("unique", 10),
    ("explicit", 10),
    ("bulk", 15),
    ("doomed", 10),
)
_BEHAVIOURS = (
    ("ok", 62),
    ("fail", 12),
    ("retry", 8),
    ("skip", 5),
    ("always_fail", 5),
    ("timeout", 5),
    ("result", 3),
)
_KINDS = ((handlers.ASYNC, 55), (handlers.THREAD, 35), (handlers.PROCESS, 10))


def _pick(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    names = [n for n, _ in table]
    return rng.choices(names, weights=[w for _, w in table])[0]


class TaskPlanner:
    """Decides the next enqueue of a producer: a mode and one or more tasks."""

    def __init__(self, rng: random.Random, *, prefix: str) -> None:
        self.rng = rng
        self.prefix = prefix
        self.count = 0
        # Fairness keys roll on their own generator, so the other rolls stay the same per seed.
        self.key_rng = random.Random(f"{prefix}:keys:{rng.random()}")

    def next(self, *, bulk: bool = True) -> tuple[str, list[NewTask]]:
        mode = _pick(self.rng, _MODES)
        if mode == "bulk" and not bulk:
            mode = "now"
        if mode == "bulk":
            return mode, [
                self.task("now" if self.rng.random() < 0.8 else "later")
                for _ in range(self.rng.randint(5, 20))
            ]
        return mode, [self.task(mode)]

    def task(self, mode: str) -> NewTask:
        rng = self.rng
        self.count += 1
        task_type = _pick(rng, _KINDS)
        behaviour = _pick(rng, _BEHAVIOURS)
        spec: dict[str, Any] = {"n": self.count, "b": behaviour, "d": round(rng.uniform(0, 0.3), 3)}
        options: dict[str, Any] = {"max_retry": 3}
        if behaviour == "timeout":
            spec["d"], options["timeout"] = 1.5, 0.5
        if rng.random() < 0.85:
            options["retention"] = 3600  # done tasks stay visible to the audit
        queue = "chaos-doomed" if mode == "doomed" else "chaos"
        if mode != "doomed" and rng.random() < SHARDED_SHARE:
            queue = "chaos-sharded"
        if mode == "later" or (mode == "doomed" and rng.random() < 0.5):
            options["process_in"] = round(rng.uniform(0.2, 5.0), 2)
        if mode == "unique":
            task_type, spec = handlers.ASYNC, {"u": rng.randint(0, 15), "b": "ok", "d": 0.05}
            options["unique"] = 3.0
        if mode == "explicit":
            options["task_id"] = f"x-{self.prefix}-{self.count}"
        if self.key_rng.random() < KEYED_SHARE:
            # A few busy keys and a tail of quiet ones (docs/flow.md, per-key fairness).
            options["key"] = (
                f"tenant:{min(self.key_rng.randint(0, 11), self.key_rng.randint(0, 11))}"
            )
            # Bytes in the payload (msgpack bin): a scheduled or retried keyed task keeps its key
            # through the pending list whatever its message holds.
            spec["k"] = options["key"].encode()
        return NewTask(type=task_type, payload=spec, queue=queue, **options)


# -- faults -------------------------------------------------------------------------------------

BASIC = (
    "worker_kill9",
    "worker_term",
    "sched_kill9",
    "sched_term",
    "redis_pause",
    "redis_kill",
    "proxy_drop",
    "proxy_slow",
    "poison_bytes",
)
"""Fault kinds the first landing already came through with a clean audit."""
ISSUE10 = (
    "proxy_stall",
    "proxy_blackhole",
    "clock_skew",
    "loop_stall",
    "poison_types",
    "bad_outcome",
    "cancel_storm",
)
"""Fault kinds the first landing did not survive; clean since issue 10's fixes (docs/chaos.md
"Findings"). CI's second soak runs them together."""
SURVIVABLE = BASIC + ISSUE10
"""Fault kinds today's code is expected to come through with a clean audit."""
KNOWN_BAD: tuple[str, ...] = ()
"""Fault kinds that break today's code (none now); a new one goes here with its finding."""
ALL_KINDS = SURVIVABLE + KNOWN_BAD


@dataclass(frozen=True)
class Fault:
    """One fault: at ``at`` seconds into the run, ``kind`` against ``target`` for ``hold`` s."""

    at: float
    kind: str
    target: str = ""
    hold: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)


def fault_schedule(
    seed: int,
    duration: float,
    kinds: tuple[str, ...],
    *,
    workers: list[str],
    schedulers: list[str],
    mean_gap: float,
) -> list[Fault]:
    """The faults of a run, sorted by time; the last ones end well before ``duration``."""
    rng = random.Random(f"faults:{seed}")
    # Kinds come as shuffled decks, so every kind is injected once before any comes twice: a
    # short run still meets each kind, a long one meets each about equally often.
    order = random.Random(f"kinds:{seed}")
    deck: list[str] = []
    faults: list[Fault] = []
    at = rng.uniform(1.0, 2.0) + 2.0  # let every process start first
    end = duration - 3.0
    while at < end and kinds:
        if len(kinds) == 1:
            kind = rng.choice(kinds)
        else:
            deck = deck or order.sample(kinds, len(kinds))
            kind = deck.pop()
        faults.append(_fault(rng, at, kind, workers, schedulers))
        at += rng.expovariate(1.0 / mean_gap)
    return faults


def _fault(
    rng: random.Random, at: float, kind: str, workers: list[str], schedulers: list[str]
) -> Fault:
    if kind in ("worker_kill9", "worker_term"):
        return Fault(at, kind, rng.choice(workers), round(rng.uniform(0.3, 2.0), 2))
    if kind in ("sched_kill9", "sched_term"):
        return Fault(at, kind, rng.choice(schedulers), round(rng.uniform(0.3, 3.0), 2))
    if kind == "redis_pause":
        return Fault(at, kind, "redis", round(rng.uniform(0.3, 1.5), 2))
    if kind == "redis_kill":
        return Fault(at, kind, "redis", round(rng.uniform(0.2, 1.5), 2))
    if kind in ("proxy_drop", "proxy_blackhole"):
        return Fault(at, kind, "proxy", round(rng.uniform(0.1, 1.0), 2))
    if kind == "proxy_stall":
        return Fault(at, kind, "proxy", round(rng.uniform(LEASE * 1.2, LEASE * 2.5), 2))
    if kind == "proxy_slow":
        return Fault(
            at,
            kind,
            "proxy",
            round(rng.uniform(1.0, 4.0), 2),
            {"delay": round(rng.uniform(0.02, 0.2), 3)},
        )
    if kind == "clock_skew":
        sign = rng.choice((-1, 1))
        # `rq-sched worker` takes no clock: skew only the workers built on rq_sched.Server.
        return Fault(
            at,
            kind,
            rng.choice([w for w in workers if not w.endswith("cli")] or workers),
            round(rng.uniform(4.0, 8.0), 2),
            {"offset": sign * round(rng.uniform(LEASE * 2, LEASE * 4), 2)},
        )
    if kind == "loop_stall":
        return Fault(at, kind, "any-worker", round(rng.uniform(LEASE * 1.5, LEASE * 3), 2))
    if kind == "poison_bytes":
        return Fault(at, kind, "chaos", 0.0, {"how": rng.choice(["not_msgpack", "version"])})
    if kind == "poison_types":
        return Fault(
            at,
            kind,
            "chaos",
            0.0,
            {"how": rng.choice(["str_max_retry", "list_key", "str_retried"])},
        )
    if kind == "bad_outcome":
        return Fault(
            at, kind, "any-worker", 0.0, {"how": rng.choice(["surrogate", "retry_inf", "result"])}
        )
    if kind == "cancel_storm":
        return Fault(at, kind, rng.choice(workers), round(rng.uniform(0.5, 2.0), 2))
    raise ValueError(f"unknown fault kind {kind!r}")
