"""The audit of debounce and throttle calls (docs/chaos.md, "Debounce and throttle").

The tasks these calls name are audited like every other task by ``audit.py`` (their answers
are ``enq`` lines: a debounce's waiting task and a throttle's kept task must end done, archived
with a reason, cancelled or deleted; their runs are judged like any other). This module adds
what only these calls promise, from the ledger (each call's answers, each run's payload call
``c``) and the snapshot:

- a call whose reply was lost (an attempt answered ``unknown``, or a network fault overlapped
  it, after which redis-py resends the script) may have stored its own task; if that task is in
  Redis or ran, the call counts as acknowledged (the audit then wants it final, as any task),
  and it is never counted lost when it is not;
- no task of the soak's dedup calls is in Redis or ran unless its call may have stored it: a
  replaced debounce call's and a dropped throttle call's own id never exist (``replaced_ran``,
  ``dropped_ran``; an id no call names is ``window_id_unaccounted``);
- a debounced task runs the newest message: no run carries the payload of a call that an
  acknowledged later call (sent after it returned) had replaced (``replaced_payload_ran``), and
  no debounce call replaced the message of a task that had already started
  (``replaced_after_start``); a run carries the payload of a call that touched its task
  (``wrong_payload``), and one call's payload runs in one task only, unless its reply was lost
  (``payload_ran_twice``);
- throttle windows hold: two calls kept under one key are at least a window apart
  (``throttle_window_broken``), and a dropped call names a kept task of its key whose window
  covers the drop (``dropped_outside_window``);
- no dedup key outlives its bound: a debounce key its window plus ``KEY_KEPT_MS``, a throttle
  key its window (``leaked_window_key``).

With ``--aof everysec`` a write acknowledged within the AOF window before a Redis kill may be
lost; a replace or a throttle lock lost that way is not a violation.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chaos_lib.windows import KINDS, is_window_id
from rq_sched.dedup import KEY_KEPT_MS

if TYPE_CHECKING:
    from chaos_lib.audit import Audit

EPS = 0.02
"""Seconds of slack on wall-time comparisons (Redis and the producers share one host clock)."""


@dataclass
class Call:
    """One debounce or throttle call: its attempts' ledger lines, oldest first."""

    kind: str
    key: str
    window: float
    own: str
    queue: str
    lines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def t0(self) -> float:
        return float(self.lines[0]["t0"])

    @property
    def t1(self) -> float:
        """When its last attempt returned: every execution of the call is before this."""
        return float(self.lines[-1]["wall"])

    @property
    def answers(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["res"] == "ok"]

    @property
    def lost_reply(self) -> bool:
        return any(line["res"] == "unknown" for line in self.lines)

    @property
    def stored_own(self) -> bool:
        """Its answer says its own task was stored: new window, kept, or (after a lost
        reply) the id taken already."""
        if any(a["id"] == self.own for a in self.answers):
            return True
        return self.lost_reply and self.lines[-1].get("err") == "TaskIdConflictError"

    def touched(self) -> set[str]:
        """The tasks its answers name."""
        return {a["id"] for a in self.answers if a["id"]}


class WindowAudit:
    """The debounce and throttle checks of one :class:`chaos_lib.audit.Audit`."""

    def __init__(self, audit: Audit, events: list[dict[str, Any]]) -> None:
        self.audit = audit
        self.result = audit.result
        self.counts = audit.result.windows
        self.calls: dict[str, Call] = {}
        for ev in sorted(events, key=lambda e: e["wall"]):
            if ev["ev"] == "enq" and ev.get("mode") in KINDS:
                call = self.calls.get(ev["own"])
                if call is None:
                    call = Call(ev["mode"], ev["dk"], float(ev["win"]), ev["own"], ev["q"])
                    self.calls[ev["own"]] = call
                call.lines.append(ev)
        self.replaces: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for call in self.calls.values():
            for answer in call.answers:
                if call.kind == "debounce" and answer.get("replaced"):
                    self.replaces[answer["id"]].append(answer)
        self.present = self._present()
        self._promote()

    def _present(self) -> dict[tuple[str, str], str]:
        """Every task id of these calls found in Redis or in a run: where it was found."""
        found: dict[tuple[str, str], str] = {}
        for queue, data in self.audit.snap.queues.items():
            for raw in data["msg"]:
                if is_window_id(raw.decode()):
                    found[(queue, raw.decode())] = "in Redis"
        for key in self.audit.runs:
            if is_window_id(key[1]):
                found.setdefault(key, "ran")
        return found

    def _resent(self, call: Call) -> bool:
        """Whether a reply of ``call`` may have been lost (so an attempt may have done more
        than its answer says): an attempt answered unknown, or a network fault overlapped."""
        return call.lost_reply or self.audit._network(call.t0, call.t1) is not None

    def _promote(self) -> None:
        """A call whose reply was lost but whose task exists was acknowledged after all."""
        for call in self.calls.values():
            key = (call.queue, call.own)
            if key in self.present and key not in self.audit.acked and self._resent(call):
                self.audit.acked[key].append({**call.lines[0], "id": call.own, "res": "ok"})
                self.counts["stored after a lost reply"] += 1

    # -- the checks -----------------------------------------------------------------------------

    def check(self) -> None:
        self._check_ids()
        self._check_payloads()
        self._check_throttle()
        self._check_keys()
        self._count()

    def _check_ids(self) -> None:
        for key, where in sorted(self.present.items()):
            call = self.calls.get(key[1])
            name = f"{key[0]}/{key[1]}"
            if call is None:
                self.result.violate("window_id_unaccounted", name, f"{where}; no call has it")
            elif not call.stored_own and not self._resent(call):
                said = "replaced into" if call.kind == "debounce" else "dropped, kept"
                self.result.violate(
                    "replaced_ran" if call.kind == "debounce" else "dropped_ran",
                    name,
                    f"{where}, yet its call answered {said} {sorted(call.touched())}",
                )

    def _check_payloads(self) -> None:
        ran_in: defaultdict[str, set[str]] = defaultdict(set)
        for (queue, task_id), runs in sorted(self.audit.runs.items()):
            if not is_window_id(task_id):
                continue
            name = f"{queue}/{task_id}"
            for run in runs:
                call = self.calls.get(run.call or "")
                if call is None:
                    self.result.violate("wrong_payload", name, f"payload of no call: {run.call}")
                    continue
                ran_in[call.own].add(task_id)
                self._check_run(name, task_id, run.start, call)
        for own, tasks in sorted(ran_in.items()):
            if len(tasks) < 2:
                continue
            if self._resent(self.calls[own]):
                # A resent debounce call that found its window forwarded opened another.
                self.counts["payload ran in two tasks after a lost reply"] += 1
            else:
                self.result.violate(
                    "payload_ran_twice", f"chaos/{own}", f"its payload ran in {sorted(tasks)}"
                )

    def _check_run(self, name: str, task_id: str, start: float, call: Call) -> None:
        """A run of ``task_id`` that carries the payload of ``call``."""
        if call.kind == "throttle" or task_id.startswith("th:"):
            if call.own != task_id:
                self.result.violate("wrong_payload", name, f"runs the payload of {call.own}")
            return
        if task_id not in call.touched() and call.own != task_id and not self._resent(call):
            self.result.violate(
                "wrong_payload", name, f"runs {call.own}'s payload, which answered another task"
            )
            return
        replaces = [
            r
            for r in self._replaces(task_id)
            if r["own"] != call.own and not self.audit._aof_loss(r["wall"])
        ]
        after_start = [r for r in replaces if r["t0"] > start + EPS]
        if after_start:
            self.result.violate(
                "replaced_after_start",
                name,
                f"{after_start[0]['own']} replaced its message "
                f"{after_start[0]['t0'] - start:.3f}s after a run started",
            )
            return
        stale = [r for r in replaces if r["t0"] > call.t1 + EPS]
        if stale:
            self.result.violate(
                "replaced_payload_ran",
                name,
                f"ran {call.own}'s payload at {start:.3f}; {stale[0]['own']} replaced it "
                f"(sent {stale[0]['t0'] - call.t1:.3f}s after {call.own} returned)",
            )

    def _replaces(self, task_id: str) -> list[dict[str, Any]]:
        """The acknowledged debounce answers that replaced ``task_id``'s message."""
        return self.replaces.get(task_id, [])

    def _check_throttle(self) -> None:
        kept: defaultdict[str, list[Call]] = defaultdict(list)
        for call in self.calls.values():
            if call.kind == "throttle" and (call.queue, call.own) in self.audit.acked:
                kept[call.key].append(call)
        for calls in kept.values():
            calls.sort(key=lambda c: c.t0)
            for i, first in enumerate(calls):
                if self.audit._aof_loss(first.t1):
                    continue  # its lock may have gone with the last second of the AOF
                for second in calls[i + 1 :]:
                    if second.t0 >= first.t0 + first.window:
                        break
                    if second.t1 < first.t0 + first.window - EPS:
                        self.result.violate(
                            "throttle_window_broken",
                            f"{second.queue}/{second.own}",
                            f"kept {second.t1 - first.t0:.3f}s after {first.own} was kept "
                            f"under {first.key} (window {first.window}s)",
                        )
        for call in self.calls.values():
            for answer in call.answers:
                if call.kind == "throttle" and answer.get("dropped") and answer["id"]:
                    self._check_drop(call, answer)

    def _check_drop(self, call: Call, answer: dict[str, Any]) -> None:
        kept = self.calls.get(answer["id"])
        name = f"{call.queue}/{call.own}"
        if kept is None or kept.key != call.key:
            self.result.violate(
                "dropped_outside_window", name, f"names {answer['id']}, no call of {call.key}"
            )
        elif kept.own != call.own and kept.t0 > answer["wall"] + EPS:
            self.result.violate(
                "dropped_outside_window", name, f"names {kept.own}, sent after the drop returned"
            )
        elif answer["t0"] > kept.t1 + kept.window + EPS and not self.audit._aof_loss(kept.t1):
            self.result.violate(
                "dropped_outside_window",
                name,
                f"dropped {answer['t0'] - kept.t1:.3f}s after {kept.own} returned, window "
                f"{kept.window}s",
            )

    def _check_keys(self) -> None:
        windows: dict[str, dict[str, Any]] = getattr(self.audit.snap, "windows", {})
        for key, found in sorted(windows.items()):
            call = self.calls.get(found["id"])
            if call is None:
                self.result.violate("window_id_unaccounted", key, f"the key holds {found['id']}")
                continue
            bound = call.window * 1000 + (KEY_KEPT_MS if found["kind"] == "debounce" else 0)
            if not 0 <= found["pttl"] <= bound:
                self.result.violate(
                    "leaked_window_key", key, f"TTL {found['pttl']} ms (at most {bound:.0f} ms)"
                )

    def _count(self) -> None:
        c = self.counts
        for call in self.calls.values():
            final = call.lines[-1]
            if final["res"] != "ok":
                what = "reply lost" if final["res"] == "unknown" else "refused"
                if final.get("err") == "TaskIdConflictError" and call.lost_reply:
                    what = "stored (reply lost, then the id was taken)"
            elif call.kind == "debounce":
                what = "replaced the waiting task's message" if final["replaced"] else "new window"
            else:
                dropped = final["dropped"] and final["id"] != call.own
                what = "dropped" if dropped else "kept"
            c[f"{call.kind}: {what}"] += 1
            lost = sum(1 for line in call.lines if line["res"] == "unknown")
            if lost:
                c[f"{call.kind}: attempts whose reply was lost"] += lost
        tasks = {a["id"] for call in self.calls.values() for a in call.answers if a["id"]}
        c["debounce: tasks (one per window)"] = sum(1 for t in tasks if t.startswith("db:"))
        superseded = sum(
            1
            for call in self.calls.values()
            for task_id in call.touched()
            if any(r["own"] != call.own and r["t0"] > call.t1 for r in self._replaces(task_id))
        )
        c["debounce: calls whose message a later call replaced"] = superseded
        c["runs checked for their payload"] = sum(
            len(runs) for key, runs in self.audit.runs.items() if is_window_id(key[1])
        )
