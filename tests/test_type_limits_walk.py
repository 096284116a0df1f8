"""Random walks over every script that makes a task ready, takes one out or ends a lease, with
per-type, per-key and queue limits changing under them: after each step the lanes' counts
match the tasks (``n:`` ready, ``a:`` running or holding a retry slot), no ready task is in two
places, and no lane with ready tasks is stuck (it is in the ring, waits for a token in kwait,
or waits at its cap with a running task to wake it); at the end, with the limits lifted,
every task runs and no lane state is left. Real Redis; seeded, so a failure replays.

``RQ_SCHED_WALKS=300 pytest tests/test_type_limits_walk.py`` for a longer search.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from rq_sched import FlowLimits, KeyLimits, TypeLimits, ops
from rq_sched.message import TaskMessage, decode
from rq_sched.options import Prepared
from tests.script_support import NOW_MS, Store, expire_lease
from tests.test_type_limits import LEASE_MS, limit, store

__all__ = ["store"]  # the fixture, shared with tests/test_type_limits.py

WALKS = int(os.environ.get("RQ_SCHED_WALKS", "20"))
TYPES = ("api", "pdf", "other")
KEYS = (None, None, "t1", "t2")
OPS = ("put",) * 4 + ("take",) * 4 + ("done",) * 3 + (
    "retry_now", "retry_later", "forward", "requeue", "recover", "delete", "archive",
    "run_now", "flow",
)  # fmt: skip


@dataclass
class Walk:
    store: Store
    rnd: random.Random
    active: dict[str, ops.Leased] = field(default_factory=dict)
    alive: set[str] = field(default_factory=set)
    made: int = 0

    def run(self, op: str) -> None:
        s, rnd = self.store, self.rnd
        if op == "put":
            self.made += 1
            task_id = f"x{self.made}"
            message = TaskMessage(
                type=rnd.choice(TYPES), payload=task_id, enqueued_at=NOW_MS, key=rnd.choice(KEYS)
            )
            prepared = Prepared(task_id, "q", message, message.encode(), 0, 0)
            assert s.run(ops.enqueue(s.keys, prepared)) == 1
            self.alive.add(task_id)
        elif op == "take":
            reply = s.run(ops.dequeue(s.keys, LEASE_MS, rnd.randint(1, 4)))
            self.active.update((t.id, t) for t in ops.parse_dequeue(reply))
        elif op == "forward":
            s.run(ops.forward(s.keys, NOW_MS * 2))
        elif op == "flow":
            limit(s, self.limits())
        elif op in ("delete", "archive", "run_now"):
            self.operate(op)
        elif self.active:
            self.end(op, self.active.pop(rnd.choice(sorted(self.active))))

    def end(self, op: str, t: ops.Leased) -> None:
        s = self.store
        if op == "done":
            assert s.run(ops.done(s.keys, [ops.Ack(t.id, t.token)], 0)) == [1]
            self.alive.discard(t.id)
        elif op in ("retry_now", "retry_later"):
            encoded = decode(t.data).failed("boom", NOW_MS).encode()
            due = 0 if op == "retry_now" else 1
            s.run(ops.retry(s.keys, t.id, t.token, encoded=encoded, due_ms=due, now_s=0))
        elif op == "requeue":
            s.run(ops.requeue(s.keys, [(t.id, t.token)]))
        else:
            expire_lease(s, t.id)
            s.run(ops.recover(s.keys, 10, lease_ms=LEASE_MS))

    def operate(self, op: str) -> None:
        s = self.store
        idle = sorted(self.alive - set(self.active))
        if not idle:
            return
        task_id = self.rnd.choice(idle)
        if op == "delete":
            if s.run(ops.delete(s.keys, task_id, None)) == 1:
                self.alive.discard(task_id)
        elif op == "archive":
            limits = ops.ArchiveLimits()
            s.run(ops.archive(s.keys, task_id, unique=None, now_s=0, limits=limits))
        else:
            s.run(ops.run_now(s.keys, task_id))

    def limits(self) -> FlowLimits:
        rnd = self.rnd
        some = rnd.sample(TYPES, rnd.randint(1, 2))
        return rnd.choice(
            [
                FlowLimits(),
                FlowLimits(key_concurrency=rnd.randint(1, 2), key_hold_on_retry=rnd.random() < 0.5),
                FlowLimits(key_rate=rnd.choice(["1/h", "1000/s"]), key_concurrency=1),
                FlowLimits(
                    key_concurrency=rnd.choice([None, 1]),
                    keys={
                        k: KeyLimits(
                            rate=rnd.choice([None, "1/h", "1000/s"]),
                            concurrency=rnd.choice([None, 1, 2]),
                            weight=rnd.randint(1, 3),
                        )
                        for k in rnd.sample([k for k in KEYS if k], 1)
                    },
                ),
                FlowLimits(concurrency=rnd.randint(1, 4), types={"api": TypeLimits(concurrency=1)}),
                FlowLimits(types={t: TypeLimits(concurrency=rnd.randint(1, 3)) for t in some}),
                FlowLimits(
                    types={
                        t: TypeLimits(
                            rate=rnd.choice(["1/h", "1000/s", "2/s"]),
                            burst=rnd.randint(1, 3),
                            concurrency=rnd.choice([None, 1, 2]),
                        )
                        for t in some
                    }
                ),
            ]
        )


def lane_state(store: Store) -> tuple[dict[str, str], list[str]]:
    kready, _, _, kstate = store.keys.keyed
    raw: dict[bytes, bytes] = store.r.hgetall(kstate)  # type: ignore[assignment]
    members: list[bytes] = store.r.zrange(kready, 0, -1)  # type: ignore[assignment]
    return {k.decode(): v.decode() for k, v in raw.items()}, [m.decode() for m in members]


def check(walk: Walk, where: str) -> None:
    s = walk.store
    state, members = lane_state(s)
    ready = Counter(m[:16] for m in members)
    counted = {f[2:]: int(v) for f, v in state.items() if f.startswith("n:")}
    assert counted == dict(ready), (where, "ready counts")
    running: Counter[str] = Counter()
    for task_id in walk.active:
        member = state.get(f"t:{task_id}")
        if member is not None:
            running[member[:16]] += 1
    for f in state:
        if f.startswith("h:"):  # a retry keeping its key's slot
            running[state[f"t:{f[2:]}"][:16]] += 1
    counted = {f[2:]: int(v) for f, v in state.items() if f.startswith("a:")}
    assert counted == dict(running), (where, "running counts")
    pending: list[bytes] = s.r.lrange(s.keys.pending, 0, -1)  # type: ignore[assignment]
    ids = [p.decode() for p in pending] + [m[28:] for m in members]
    assert len(ids) == len(set(ids)), (where, "a ready task in two places")
    _, kring, kwait, _ = s.keys.keyed
    ring = {d.decode() for d in s.r.zrange(kring, 0, -1)}  # type: ignore[union-attr]
    waiting = {d.decode() for d in s.r.zrange(kwait, 0, -1)}  # type: ignore[union-attr]
    for d in ready:
        parked = state.get(f"p:{d}")
        assert (
            d in ring
            or (parked == "w" and d in waiting)
            or (parked == "c" and int(state.get(f"a:{d}", 0)) > 0)
        ), (where, "a lane stuck", d, parked)


@pytest.mark.parametrize("seed", range(WALKS))
def test_a_random_walk_keeps_every_lane_count_and_leaves_nothing_behind(
    store: Store, seed: int
) -> None:
    walk = Walk(store, random.Random(seed))
    done_ops: list[str] = []
    for step in range(300):
        op = walk.rnd.choice(OPS)
        done_ops.append(op)
        walk.run(op)
        check(walk, f"seed {seed} step {step}: {done_ops[-8:]}")
    limit(store, FlowLimits())
    store.run(ops.forward(store.keys, NOW_MS * 2))
    for t in walk.active.values():
        assert store.run(ops.done(store.keys, [ops.Ack(t.id, t.token)], 0)) == [1]
    for _ in range(100):
        leased = ops.parse_dequeue(store.run(ops.dequeue(store.keys, LEASE_MS, 50)))
        if not leased:
            break
        assert store.run(ops.done(store.keys, [ops.Ack(t.id, t.token) for t in leased], 0)) == [
            len(leased)
        ]
    state, members = lane_state(store)
    assert not members and not store.r.llen(store.keys.pending)
    left = {f for f in state if f not in ("seq", "v", "u", "kt") and f[:2] not in ("r:", "k:")}
    assert not left, (seed, left)
