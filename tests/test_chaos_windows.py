"""The chaos audit of debounce and throttle calls (tools/chaos_lib/windows*.py).

The audit is a pure function of a ledger and a snapshot, so its rules are tested on small
hand-written histories: a clean one, and one per broken promise, each named by its violation.
The producing side is tested against a real redis-server: what a burst's ledger lines say is
what Redis holds.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from chaos_lib import ledger as ledger_mod
from chaos_lib import windows
from chaos_lib.audit import Audit, Result
from chaos_lib.run import Snapshot

from rq_sched import Client
from rq_sched.dedup import KEY_KEPT_MS
from rq_sched.keys import QueueKeys
from rq_sched.message import decode

WINDOW_RULES = {
    "replaced_ran",
    "dropped_ran",
    "window_id_unaccounted",
    "replaced_payload_ran",
    "replaced_after_start",
    "wrong_payload",
    "payload_ran_twice",
    "throttle_window_broken",
    "dropped_outside_window",
    "leaked_window_key",
}
T = 1_000_000.0
"""Wall time of the made-up histories."""


class History:
    """Builds a ledger and a snapshot of the "chaos" queue by hand."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.done: set[str] = set()
        self.keys: dict[str, dict[str, Any]] = {}

    def call(
        self, own: str, at: float, *, answer: str | None, kind: str = "debounce", **said: Any
    ) -> None:
        """One call sent at ``T + at`` that returned 10 ms later; ``answer`` None: lost."""
        key = "deb:2" if kind == "debounce" else "thr:2"  # 1 s windows
        line = {
            "ev": "enq",
            "wall": T + at + 0.01,
            "q": "chaos",
            "mode": kind,
            "own": own,
            "dk": key,
            "win": windows.window_of(kind, key),
            "t0": T + at,
        }
        if answer is None:
            self.events.append(
                {**line, "id": own, "res": "unknown", "err": "RedisUnavailableError"}
            )
        else:
            self.events.append({**line, "id": answer, "res": "ok", "ret": True, **said})

    def run(self, task_id: str, at: float, *, payload_of: str, done: bool = True) -> None:
        base = {"q": "chaos", "id": task_id, "pid": 7, "wpid": 7, "proc": "w1", "retried": 0}
        base |= {"max_retry": 3, "type": "chaos.async"}
        self.events.append(
            {**base, "ev": "start", "wall": T + at, "mono": at, "kind": "async", "call": payload_of}
        )
        self.events.append(
            {**base, "ev": "end", "wall": T + at + 0.1, "mono": at + 0.1, "outcome": "ok"}
        )
        if done:
            self.done.add(task_id)

    def audit(self) -> Result:
        ids = sorted(self.done)
        queue = {
            "msg": {i.encode(): b"" for i in ids},
            "pending": [],
            "lease": {},
            "scheduled": {},
            "retry": {},
            "archived": {},
            "completed": dict.fromkeys(ids, 0.0),
            "processed": len(ids),
            "failed": 0,
            "trimmed": 0,
            "locks": {},
            "keyed_state": {},
        }
        snap = Snapshot(True, T + 50, T + 50, T + 60, queues={"chaos": queue}, windows=self.keys)
        return Audit(self.events, snap, "always").run()


def window_violations(result: Result) -> dict[str, list[tuple[str, str]]]:
    return {k: v for k, v in result.violations.items() if k in WINDOW_RULES}


def test_a_debounced_window_that_runs_its_newest_message_is_clean() -> None:
    h = History()
    h.call("db:p1:1", 0.0, answer="db:p1:1", replaced=False)
    h.call("db:p2:1", 0.2, answer="db:p1:1", replaced=True)
    h.call("db:p1:2", 0.4, answer="db:p1:1", replaced=True)
    h.run("db:p1:1", 1.1, payload_of="db:p1:2")
    h.call("th:p1:3", 0.0, kind="throttle", answer="th:p1:3", dropped=False)
    h.call("th:p2:2", 0.5, kind="throttle", answer="th:p1:3", dropped=True)
    h.call("th:p2:3", 1.2, kind="throttle", answer="th:p2:3", dropped=False)
    h.run("th:p1:3", 0.1, payload_of="th:p1:3")
    h.run("th:p2:3", 1.3, payload_of="th:p2:3")
    h.keys = {"deb:2": {"kind": "debounce", "id": "db:p1:1", "pttl": 50_000}}
    result = h.audit()
    assert window_violations(result) == {}
    assert result.outcomes["done"] == 3
    assert result.windows["debounce: new window"] == 1
    assert result.windows["debounce: replaced the waiting task's message"] == 2
    assert result.windows["debounce: calls whose message a later call replaced"] == 2
    assert result.windows["throttle: kept"] == 2
    assert result.windows["throttle: dropped"] == 1


def test_a_run_with_a_replaced_message_is_a_violation() -> None:
    h = History()
    h.call("db:p1:1", 0.0, answer="db:p1:1", replaced=False)
    h.call("db:p1:2", 0.4, answer="db:p1:1", replaced=True)
    h.run("db:p1:1", 1.1, payload_of="db:p1:1")  # the first message, replaced 0.4 s later
    assert set(window_violations(h.audit())) == {"replaced_payload_ran"}


def test_a_replace_after_the_task_started_is_a_violation() -> None:
    h = History()
    h.call("db:p1:1", 0.0, answer="db:p1:1", replaced=False)
    h.run("db:p1:1", 1.0, payload_of="db:p1:1")
    h.call("db:p1:2", 1.5, answer="db:p1:1", replaced=True)  # the task no longer waited
    found = window_violations(h.audit())
    assert set(found) == {"replaced_after_start"}
    assert "db:p1:2" in found["replaced_after_start"][0][1]


def test_a_replaced_or_dropped_call_whose_own_task_exists_is_a_violation() -> None:
    h = History()
    h.call("db:p1:1", 0.0, answer="db:p1:1", replaced=False)
    h.call("db:p1:2", 0.2, answer="db:p1:1", replaced=True)
    h.run("db:p1:1", 1.1, payload_of="db:p1:2")
    h.run("db:p1:2", 1.2, payload_of="db:p1:2")  # the replaced call's own id ran
    h.call("th:p1:3", 0.0, kind="throttle", answer="th:p1:3", dropped=False)
    h.call("th:p1:4", 0.3, kind="throttle", answer="th:p1:3", dropped=True)
    h.run("th:p1:3", 0.1, payload_of="th:p1:3")
    h.run("th:p1:4", 0.4, payload_of="th:p1:4")  # the dropped call's task ran
    h.done.add("th:p9:9")  # in Redis, and no call has it
    found = window_violations(h.audit())
    assert set(found) == {
        "replaced_ran",
        "dropped_ran",
        "window_id_unaccounted",
        "payload_ran_twice",
    }


def test_a_lost_reply_is_neither_lost_nor_unaccounted_and_its_stored_task_is_audited() -> None:
    h = History()
    h.call("db:p1:1", 0.0, answer=None)  # stored, reply lost; the next call names it
    h.call("db:p1:2", 0.2, answer="db:p1:1", replaced=True)
    h.run("db:p1:1", 1.1, payload_of="db:p1:2")
    h.call("db:p1:3", 5.0, answer=None)  # never stored: not a task, not lost
    h.call("th:p1:4", 0.0, kind="throttle", answer=None)  # kept, reply lost
    h.done.discard("th:p1:4")
    h.events.append(
        {"ev": "start", "wall": T, "mono": 0, "q": "chaos", "id": "th:p1:4", "pid": 7, "proc": "w1"}
        | {"retried": 0, "max_retry": 3, "call": "th:p1:4"}
    )  # it ran (no end line: its worker was killed), and then vanished: lost
    result = h.audit()
    assert window_violations(result) == {}
    assert result.outcomes["done"] == 1
    assert [name for name, _ in result.violations["lost"]] == ["chaos/th:p1:4"]
    assert result.windows["stored after a lost reply"] == 1  # th:p1:4: found only by its run
    assert result.windows["debounce: reply lost"] == 2


def test_a_run_of_another_calls_payload_is_a_violation() -> None:
    h = History()
    h.call("db:p1:1", 0.0, answer="db:p1:1", replaced=False)
    h.call("db:p1:2", 3.0, answer="db:p1:2", replaced=False)
    h.run("db:p1:1", 1.1, payload_of="db:p1:2")
    h.run("db:p1:2", 4.1, payload_of="db:p1:2")
    found = window_violations(h.audit())
    assert set(found) == {"wrong_payload", "payload_ran_twice"}


def test_a_resent_call_may_run_its_payload_in_the_window_it_replaced_and_in_its_own() -> None:
    # Its first attempt replaced the waiting task's message, the reply was lost, the task was
    # forwarded, and the second attempt found no task waiting: it opened a window of its own.
    h = History()
    h.call("db:p1:1", 0.0, answer="db:p1:1", replaced=False)
    h.call("db:p1:2", 0.5, answer=None)
    h.call("db:p1:2", 1.5, answer="db:p1:2", replaced=False)
    h.run("db:p1:1", 1.1, payload_of="db:p1:2")
    h.run("db:p1:2", 2.6, payload_of="db:p1:2")
    result = h.audit()
    assert window_violations(result) == {}
    assert result.windows["payload ran in two tasks after a lost reply"] == 1
    assert result.windows["debounce: attempts whose reply was lost"] == 1


def test_two_tasks_kept_in_one_throttle_window_and_a_drop_after_it_are_violations() -> None:
    h = History()
    h.call("th:p1:1", 0.0, kind="throttle", answer="th:p1:1", dropped=False)
    h.call("th:p2:1", 0.5, kind="throttle", answer="th:p2:1", dropped=False)  # window 1 s
    h.call("th:p1:2", 3.0, kind="throttle", answer="th:p1:1", dropped=True)  # 3 s later
    h.run("th:p1:1", 0.1, payload_of="th:p1:1")
    h.run("th:p2:1", 0.6, payload_of="th:p2:1")
    found = window_violations(h.audit())
    assert set(found) == {"throttle_window_broken", "dropped_outside_window"}


def test_a_dedup_key_without_a_ttl_or_beyond_its_window_is_leaked() -> None:
    h = History()
    h.call("th:p1:1", 0.0, kind="throttle", answer="th:p1:1", dropped=False)
    h.call("db:p1:2", 0.0, answer="db:p1:2", replaced=False)
    h.run("th:p1:1", 0.1, payload_of="th:p1:1")
    h.run("db:p1:2", 1.1, payload_of="db:p1:2")
    h.keys = {
        "thr:2": {"kind": "throttle", "id": "th:p1:1", "pttl": -1},
        "deb:2": {"kind": "debounce", "id": "db:p1:2", "pttl": 61_001},  # 1 s + 60 s at most
    }
    found = window_violations(h.audit())
    assert set(found) == {"leaked_window_key"}
    assert len(found["leaked_window_key"]) == 2


def test_bursts_record_what_redis_did(
    tmp_path: Path, redis_url: str, r: redis.Redis, namespace: str
) -> None:
    book = ledger_mod.Ledger(tmp_path, "p1")
    planner = windows.WindowPlanner(3, "p1")
    bursts = [b for b in (planner.burst() for _ in range(300)) if len(b) >= 3]
    debounce = next(b for b in bursts if b[0][1].kind == "debounce" and b[0][1].window >= 1)
    throttle = next(b for b in bursts if b[0][1].kind == "throttle" and b[0][1].window >= 1)
    with Client.from_url(redis_url, namespace=namespace) as client:
        for burst in (debounce, throttle):  # no pauses: every call falls in the first window
            windows.call_burst(client, book, [(0.0, call) for _, call in burst])
    lines = sorted(ledger_mod.read(tmp_path), key=lambda e: e["wall"])
    assert [e["own"] for e in lines] == [c.task_id for _, c in debounce + throttle]
    waiting, kept = debounce[0][1].task_id, throttle[0][1].task_id
    said = lines[: len(debounce)]
    assert [(e["id"], e["replaced"]) for e in said] == [(waiting, False)] + [(waiting, True)] * (
        len(debounce) - 1
    )
    said = lines[len(debounce) :]
    assert [(e["id"], e["dropped"]) for e in said] == [(kept, False)] + [(kept, True)] * (
        len(throttle) - 1
    )
    keys = QueueKeys(namespace, windows.QUEUE)
    assert set(r.hkeys(keys.msg)) == {waiting.encode(), kept.encode()}
    raw = r.hget(keys.msg, waiting)
    assert isinstance(raw, bytes)
    message = decode(raw, task_id=waiting)
    assert message.payload == debounce[-1][1].payload  # the newest call's
    found = windows.read_keys(r, namespace)
    assert found[debounce[0][1].key]["id"] == waiting
    assert 0 < found[debounce[0][1].key]["pttl"] <= debounce[0][1].window * 1000 + KEY_KEPT_MS
    assert found[throttle[0][1].key]["id"] == kept
    assert 0 < found[throttle[0][1].key]["pttl"] <= throttle[0][1].window * 1000
