"""Model-based test: random operation sequences on real Redis, checked against a Python model.

The machine drives the Lua scripts the way the client, several workers, the forwarder,
recoverer, janitor and an operator do, and after every step compares Redis with a small
in-memory model: each task is in exactly one state, the pending order matches, counts and
counters match, no task is lost or duplicated, and the due-time marker never announces a time
later than the earliest due task.

Workers hold leases with fencing tokens and may stall past them (the rule ``stall`` makes a
lease expired by Redis TIME); a stalled worker's late settle, extend or hand-back must be
refused and change nothing. An operator may cancel an active task: the cancel holds whoever
holds the task (the recoverer archives it, the next dequeue flags it).
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from rq_sched import (
    Client,
    DuplicateTaskError,
    Inspector,
    ManualClock,
    TaskIdConflictError,
    TaskStateError,
    errors,
    ops,
    scripts,
)
from rq_sched.clock import to_ms, utc_day
from rq_sched.keys import QueueKeys
from rq_sched.message import TaskMessage, decode
from rq_sched.options import unique_digest
from rq_sched.scripts import Call

QUEUE = "q"
LEASE_MS = 30_000
RETENTION_S = 100
UNIQUE_TTL_S = 3600  # real Redis TTL: long enough never to run out during a test
FIXED_IDS = ("id0", "id1", "id2")
PAYLOADS = ("p0", "p1", "p2")
LIVE = ("pending", "active", "scheduled", "retry")
ZSET_OF = {
    "active": "lease",
    "scheduled": "scheduled",
    "retry": "retry",
    "archived": "archived",
    "completed": "completed",
}


@dataclass
class ModelTask:
    state: str
    score: int = 0
    """Due time, lease expiry, archived-at or keep-until (ms); 0 while pending."""
    lock: tuple[str, str] | None = None
    """(type, payload) of the uniqueness lock the task took, if unique."""
    retried: int = 0
    lost: int = 0
    token: int = 0
    """Fencing token of the current lease (while active)."""
    cancel: str | None = None
    """Recorded cancel request (the uniqueness digest, "" for none)."""


UNKNOWN = -1
"""Score the model cannot predict: a lease expiry or archive time taken from Redis TIME."""


@dataclass
class Held:
    """A lease as a worker holds it; stale once the task was recovered or leased again."""

    worker: int
    id: str
    token: int
    message: TaskMessage


@dataclass
class Model:
    tasks: dict[str, ModelTask] = field(default_factory=dict)
    pending: deque[str] = field(default_factory=deque)
    """Left end: newest; right end: dequeued next."""
    locks: dict[tuple[str, str], str] = field(default_factory=dict)
    paused: bool = False
    seq: int = 0
    """Last fencing token issued."""
    processed: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)

    def ids(self, *states: str) -> list[str]:
        return sorted(i for i, t in self.tasks.items() if t.state in states)

    def release(self, task_id: str) -> None:
        lock = self.tasks[task_id].lock
        if lock is not None and self.locks.get(lock) == task_id:
            del self.locks[lock]

    def move(self, task_id: str, state: str, score: int = 0) -> None:
        task = self.tasks[task_id]
        task.state, task.score = state, score
        if state in ("archived", "completed"):
            self.release(task_id)
            task.lost = 0  # the loss count matters only while the task may still run
            task.cancel = None

    def make_pending(self, task_id: str, *, front: bool = False) -> None:
        self.move(task_id, "pending")
        if front:
            self.pending.append(task_id)
        else:
            self.pending.appendleft(task_id)

    def remove(self, task_id: str) -> None:
        self.release(task_id)
        if self.tasks[task_id].state == "pending":
            self.pending.remove(task_id)
        del self.tasks[task_id]

    def due(self, states: tuple[str, ...], now_ms: int) -> list[str]:
        return sorted(
            (i for i in self.ids(*states) if self.tasks[i].score <= now_ms),
            key=lambda i: (self.tasks[i].score, i),
        )


class QueueMachine(RuleBasedStateMachine):
    url = ""
    """The Redis to run against; the test sets it on a subclass."""

    def __init__(self) -> None:
        super().__init__()
        self.r = redis.Redis.from_url(self.url)
        self.namespace = f"m{uuid.uuid4().hex[:10]}"
        self.keys = QueueKeys(self.namespace, QUEUE)
        self.clock = ManualClock()
        self.client = Client(self.r, namespace=self.namespace, clock=self.clock)
        self.inspector = Inspector(self.r, namespace=self.namespace, clock=self.clock)
        self.model = Model()
        self.counter = 0
        self.held: list[Held] = []
        """Leases as the workers hold them, current or stale."""

    def teardown(self) -> None:
        stale = list(self.r.scan_iter(match=f"{self.namespace}:*", count=1000))
        if stale:
            self.r.delete(*stale)
        self.r.close()

    # --- helpers ------------------------------------------------------------------------------

    @property
    def now_ms(self) -> int:
        return to_ms(self.clock.now())

    def run(self, call: Call) -> Any:
        script, keys, args = call
        return scripts.run(self.r, script, keys, args)

    def pick(self, ids: list[str], index: int) -> str:
        return ids[index % len(ids)]

    def bump(self, counter: dict[str, int]) -> None:
        day = utc_day(self.clock.now())
        counter[day] = counter.get(day, 0) + 1

    def expect_enqueue(self, task_id: str | None, lock: tuple[str, str] | None) -> type | None:
        known = self.model.tasks.get(task_id or "")
        if known is not None and known.state in (*LIVE, "completed"):
            return TaskIdConflictError
        if lock is not None and lock in self.model.locks:
            return DuplicateTaskError
        return None

    def enqueue(
        self,
        *,
        payload: str,
        delay_s: int,
        unique: bool = False,
        task_id: str | None = None,
    ) -> None:
        lock = ("t", payload) if unique else None
        # A new call, a new millisecond: the same id and message bytes would be a resend.
        self.clock.advance(0.001)
        if task_id is None:
            # Generated ids are random; the machine names its tasks so that every run of an
            # example picks the same tasks (hypothesis replays examples while shrinking).
            self.counter += 1
            task_id = f"n{self.counter:04}"
        expected = self.expect_enqueue(task_id, lock)
        options: dict[str, Any] = {"queue": QUEUE, "task_id": task_id}
        if delay_s:
            options["process_in"] = delay_s
        if unique:
            options["unique"] = UNIQUE_TTL_S
        if expected is not None:
            with pytest.raises(expected):
                self.client.enqueue("t", payload, **options)
            return
        info = self.client.enqueue("t", payload, **options)
        if info.id in self.model.tasks:  # an archived task with this id is replaced
            self.model.remove(info.id)
        self.model.tasks[info.id] = ModelTask("pending", lock=lock)
        if lock is not None:
            self.model.locks[lock] = info.id
        if delay_s:
            self.model.move(info.id, "scheduled", self.now_ms + delay_s * 1000)
        else:
            self.model.pending.appendleft(info.id)

    # --- producers ----------------------------------------------------------------------------

    @rule(payload=st.sampled_from(PAYLOADS), delay=st.sampled_from([0, 0, 5, 60]))
    def enqueue_plain(self, payload: str, delay: int) -> None:
        self.enqueue(payload=payload, delay_s=delay)

    @rule(payload=st.sampled_from(PAYLOADS), delay=st.sampled_from([0, 30]))
    def enqueue_unique(self, payload: str, delay: int) -> None:
        self.enqueue(payload=payload, delay_s=delay, unique=True)

    @rule(
        task_id=st.sampled_from(FIXED_IDS),
        payload=st.sampled_from(PAYLOADS),
        delay=st.sampled_from([0, 10]),
        unique=st.booleans(),
    )
    def enqueue_with_id(self, task_id: str, payload: str, delay: int, unique: bool) -> None:
        self.enqueue(payload=payload, delay_s=delay, unique=unique, task_id=task_id)

    # --- workers ------------------------------------------------------------------------------

    def current(self, held: Held) -> bool:
        task = self.model.tasks.get(held.id)
        return task is not None and task.state == "active" and task.token == held.token

    def take(self, index: int) -> Held:
        return self.held.pop(index % len(self.held))

    @rule(worker=st.integers(0, 2), count=st.integers(1, 3))
    def dequeue(self, worker: int, count: int) -> None:
        reply = self.run(ops.dequeue(self.keys, LEASE_MS, count))
        if self.model.paused:
            assert reply == errors.PAUSED
            return
        expected = [self.model.pending.pop() for _ in range(min(count, len(self.model.pending)))]
        leased = ops.parse_dequeue(reply)
        assert [t.id for t in leased] == expected
        for t in leased:
            task = self.model.tasks[t.id]
            self.model.seq += 1
            assert (t.lost, t.token, t.cancelled) == (
                task.lost,
                self.model.seq,
                task.cancel is not None,
            )
            self.held.append(Held(worker, t.id, t.token, decode(t.data)))
            self.model.move(t.id, "active", UNKNOWN)
            task.token = t.token

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 99), keep=st.booleans())
    def done(self, index: int, keep: bool) -> None:
        held = self.take(index)
        keep_until = self.now_ms + RETENTION_S * 1000 if keep else 0
        ack = ops.Ack(held.id, held.token, keep_until, b"result", held.message.unique)
        reply = self.run(ops.done(self.keys, [ack], self.clock.now()))
        if not self.current(held):  # a stale worker's late success changes nothing
            assert reply == [0, held.id.encode()]
            return
        assert reply == [1]
        self.bump(self.model.processed)
        if keep:
            self.model.move(held.id, "completed", keep_until)
        else:
            self.model.remove(held.id)

    @precondition(lambda self: self.model.ids("pending", "scheduled", "retry", "completed"))
    @rule(index=st.integers(0, 99))
    def done_without_a_lease(self, index: int) -> None:
        task_id = self.pick(self.model.ids("pending", "scheduled", "retry", "completed"), index)
        reply = self.run(ops.done(self.keys, [ops.Ack(task_id, self.model.seq)], self.clock.now()))
        assert reply == [0, task_id.encode()]

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 99), delay=st.sampled_from([0, 20]), give_up=st.booleans())
    def fail(self, index: int, delay: int, give_up: bool) -> None:
        held = self.take(index)
        message = held.message.failed("boom", self.now_ms)
        current = self.current(held)
        if give_up:
            call = ops.archive_active(
                self.keys,
                held.id,
                held.token,
                encoded=message.encode(),
                unique=message.unique,
                now_s=self.clock.now(),
                limits=ops.ArchiveLimits(),
                count_failure=True,
            )
            assert self.run(call) == (1 if current else errors.NOT_ACTIVE)
            if current:
                self.model.tasks[held.id].retried += 1
                self.bump(self.model.failed)
                self.model.move(held.id, "archived", self.now_ms)
            return
        due = self.now_ms + delay * 1000 if delay else 0
        call = ops.retry(
            self.keys,
            held.id,
            held.token,
            encoded=message.encode(),
            due_ms=due,
            now_s=self.clock.now(),
        )
        code = self.run(call)
        if not current:  # a stale worker's late failure changes nothing
            assert code == errors.NOT_ACTIVE
            return
        assert code == (2 if delay else 1)
        self.model.tasks[held.id].retried += 1
        self.bump(self.model.failed)
        if delay:
            self.model.move(held.id, "retry", due)
        else:
            self.model.make_pending(held.id)

    @precondition(lambda self: self.held)
    @rule(worker=st.integers(0, 2))
    def extend_leases(self, worker: int) -> None:
        mine = [h for h in self.held if h.worker == worker]
        leases = [(h.id, h.token) for h in mine]
        gone, cancelled = self.run(ops.extend(self.keys, LEASE_MS, [*leases, ("gone", 1)]))
        assert [g.decode() for g in gone] == [h.id for h in mine if not self.current(h)] + ["gone"]
        expected = [
            h.id for h in mine if self.current(h) and self.model.tasks[h.id].cancel is not None
        ]
        assert [c.decode() for c in cancelled] == expected
        for h in mine:
            if self.current(h):
                self.model.tasks[h.id].score = UNKNOWN  # renewed: no longer stalled

    @precondition(lambda self: self.held)
    @rule(worker=st.integers(0, 2))
    def requeue_on_shutdown(self, worker: int) -> None:
        mine = [h for h in self.held if h.worker == worker]
        self.held = [h for h in self.held if h.worker != worker]
        current = [h for h in mine if self.current(h)]
        assert self.run(ops.requeue(self.keys, [(h.id, h.token) for h in mine])) == len(current)
        for h in reversed(current):
            self.model.make_pending(h.id, front=True)

    @precondition(lambda self: self.model.ids("active"))
    @rule(index=st.integers(0, 99))
    def stall(self, index: int) -> None:
        """The worker holding this task stops renewing: by Redis TIME its lease has run out."""
        task_id = self.pick(self.model.ids("active"), index)
        self.r.zadd(self.keys.lease, {task_id: 0}, xx=True)
        self.model.tasks[task_id].score = 0

    # --- time and upkeep ----------------------------------------------------------------------

    @rule(seconds=st.sampled_from([1, 5, 15, 31, 120]))
    def advance_and_forward(self, seconds: int) -> None:
        self.clock.advance(seconds)
        now = self.now_ms
        due = self.model.due(("scheduled",), now) + self.model.due(("retry",), now)
        waiting = self.model.ids("scheduled", "retry")
        later = [self.model.tasks[i].score for i in waiting if i not in due]
        reply = self.run(ops.forward(self.keys, now))
        assert reply == [len(due), min(later) if later else -1]
        for task_id in due:
            self.model.make_pending(task_id)

    @rule()
    def recover_expired_leases(self) -> None:
        expired = sorted(i for i in self.model.ids("active") if self.model.tasks[i].score == 0)
        requeued, leased = self.run(ops.recover(self.keys))
        cancelled = [i for i in expired if self.model.tasks[i].cancel is not None]
        assert [i.decode() for i in requeued] == [i for i in expired if i not in cancelled]
        assert [i.decode() for i in leased[0::3]] == cancelled
        for task_id, data, token in zip(leased[0::3], leased[1::3], leased[2::3], strict=True):
            # Leased to the caller under a new fencing token from the same counter as dequeue's.
            self.model.seq += 1
            assert int(token) == self.model.seq
            # As the Recoverer does: archive it as cancelled under the lease it was given.
            message = decode(data).failed("TaskCancelledError: cancelled", self.now_ms)
            call = ops.archive_active(
                self.keys, task_id.decode(), int(token), encoded=message.encode(),
                unique=message.unique, now_s=self.clock.now(), limits=ops.ArchiveLimits(),
                count_failure=False,
            )  # fmt: skip
            assert self.run(call) == 1
            self.model.tasks[task_id.decode()].retried += 1
            self.model.move(task_id.decode(), "archived", self.now_ms)
        for task_id in reversed([i.decode() for i in requeued]):
            self.model.tasks[task_id].lost += 1
            self.model.make_pending(task_id, front=True)

    @rule()
    def trim(self) -> None:
        ended = self.model.due(("completed",), self.now_ms)
        assert self.run(ops.trim(self.keys, self.now_ms, ops.ArchiveLimits())) == [len(ended), 0]
        for task_id in ended:
            self.model.remove(task_id)

    # --- operator -----------------------------------------------------------------------------

    @rule(paused=st.booleans())
    def set_paused(self, paused: bool) -> None:
        changed = self.inspector.pause(QUEUE) if paused else self.inspector.unpause(QUEUE)
        assert changed == (paused != self.model.paused)
        self.model.paused = paused

    @precondition(lambda self: self.model.tasks)
    @rule(index=st.integers(0, 99))
    def cancel(self, index: int) -> None:
        task_id = self.pick(sorted(self.model.tasks), index)
        task = self.model.tasks[task_id]
        if task.state != "active":
            with pytest.raises(TaskStateError):
                self.inspector.cancel_task(QUEUE, task_id)
            return
        self.inspector.cancel_task(QUEUE, task_id)
        lock = task.lock
        task.cancel = unique_digest(*lock) if lock is not None else ""

    @precondition(lambda self: self.model.tasks)
    @rule(index=st.integers(0, 99))
    def delete(self, index: int) -> None:
        task_id = self.pick(sorted(self.model.tasks), index)
        if self.model.tasks[task_id].state == "active":
            with pytest.raises(TaskStateError):
                self.inspector.delete_task(QUEUE, task_id)
            return
        self.inspector.delete_task(QUEUE, task_id)
        self.model.remove(task_id)

    @precondition(lambda self: self.model.tasks)
    @rule(index=st.integers(0, 99))
    def run_now(self, index: int) -> None:
        task_id = self.pick(sorted(self.model.tasks), index)
        if self.model.tasks[task_id].state not in ("scheduled", "retry", "archived"):
            with pytest.raises(TaskStateError):
                self.inspector.run_task(QUEUE, task_id)
            return
        self.inspector.run_task(QUEUE, task_id)
        self.model.make_pending(task_id)

    @precondition(lambda self: self.model.tasks)
    @rule(index=st.integers(0, 99))
    def archive_by_operator(self, index: int) -> None:
        task_id = self.pick(sorted(self.model.tasks), index)
        state = self.model.tasks[task_id].state
        if state not in ("pending", "scheduled", "retry"):
            with pytest.raises(TaskStateError):
                self.inspector.archive_task(QUEUE, task_id)
            return
        assert self.inspector.archive_task(QUEUE, task_id) == 0
        if state == "pending":
            self.model.pending.remove(task_id)
        self.model.move(task_id, "archived", self.now_ms)

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def redis_matches_model(self) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.hgetall(self.keys.msg)
        pipe.lrange(self.keys.pending, 0, -1)
        for name in ZSET_OF.values():
            pipe.zrange(getattr(self.keys, name), 0, -1, withscores=True)
        pipe.hgetall(self.keys.lost)
        pipe.zscore(self.keys.marker, "d")
        stored, pending, *zsets, lost, marker_due = pipe.execute()
        places: dict[str, list[tuple[str, int]]] = {}
        for raw in pending:
            places.setdefault(raw.decode(), []).append(("pending", 0))
        for state, members in zip(ZSET_OF, zsets, strict=True):
            for raw, score in members:
                places.setdefault(raw.decode(), []).append((state, int(score)))
        # every stored task is listed in exactly one state, and nothing else is listed
        assert {raw.decode() for raw in stored} == set(places)
        assert all(len(where) == 1 for where in places.values()), places
        actual = {task_id: where[0] for task_id, where in places.items()}
        expected = {i: (t.state, t.score) for i, t in self.model.tasks.items()}
        for task_id, (_state, score) in expected.items():
            if score == UNKNOWN and task_id in actual:  # by Redis TIME: only the state counts
                actual[task_id] = (actual[task_id][0], UNKNOWN)
        assert actual == expected
        assert [raw.decode() for raw in pending] == list(self.model.pending)
        retried = {k.decode(): decode(v).retried for k, v in stored.items()}
        assert retried == {i: t.retried for i, t in self.model.tasks.items()}
        lost_model = {i: t.lost for i, t in self.model.tasks.items() if t.lost}
        assert {k.decode(): int(v) for k, v in lost.items()} == lost_model
        waiting = [t.score for t in self.model.tasks.values() if t.state in ("scheduled", "retry")]
        if waiting:
            assert marker_due is not None and marker_due <= min(waiting)

    @invariant()
    def counts_match_model(self) -> None:
        info = self.inspector.queue_info(QUEUE)
        counts = {state: len(self.model.ids(state)) for state in (*LIVE, "archived", "completed")}
        assert counts == {
            "pending": info.pending,
            "active": info.active,
            "scheduled": info.scheduled,
            "retry": info.retry,
            "archived": info.archived,
            "completed": info.completed,
        }
        day = utc_day(self.clock.now())
        assert info.paused == self.model.paused
        assert (info.processed, info.failed) == (
            sum(self.model.processed.values()),
            sum(self.model.failed.values()),
        )
        assert (info.processed_today, info.failed_today) == (
            self.model.processed.get(day, 0),
            self.model.failed.get(day, 0),
        )

    @invariant()
    def leases_and_cancels_match_model(self) -> None:
        r: Any = self.r  # replies are bytes: the connection does not decode responses
        tokens = {k.decode(): int(v) for k, v in r.hgetall(self.keys.token).items()}
        active = self.model.ids("active")
        assert tokens == {i: self.model.tasks[i].token for i in active}
        cancels = {k.decode(): v.decode() for k, v in r.hgetall(self.keys.cancel).items()}
        expected = {i: t.cancel for i, t in self.model.tasks.items() if t.cancel is not None}
        assert cancels == expected

    @invariant()
    def locks_match_model(self) -> None:
        for (task_type, payload), holder in self.model.locks.items():
            digest = unique_digest(task_type, payload)
            assert self.r.get(self.keys.unique(digest)) == holder.encode()
        held = list(self.r.scan_iter(match=self.keys.unique("*"), count=1000))
        assert len(held) == len(self.model.locks)


def test_queue_behaves_like_the_model(redis_url: str) -> None:
    class OnSessionRedis(QueueMachine):
        url = redis_url

    run_state_machine_as_test(
        OnSessionRedis,
        settings=settings(
            max_examples=200,
            stateful_step_count=50,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_the_model_counts_the_token_a_recovered_cancelled_task_is_leased_under(
    redis_url: str,
) -> None:
    """The sequence Hypothesis shrank a failure to: recover leases a task with a recorded cancel
    to its caller under a new fencing token, so the next dequeue's token is one further on."""

    class OnSessionRedis(QueueMachine):
        url = redis_url

    machine = OnSessionRedis()
    try:
        machine.enqueue_plain(payload="p0", delay=0)
        machine.dequeue(count=1, worker=0)
        machine.cancel(index=0)
        machine.stall(index=0)
        machine.enqueue_plain(payload="p0", delay=0)
        machine.recover_expired_leases()
        machine.dequeue(count=1, worker=0)
        machine.redis_matches_model()
    finally:
        machine.teardown()
