"""The audit: where is every task now, and did any run when it should not have?

It reads the ledger (what processes saw and did) and the snapshot of Redis taken after the
system settled, and checks the rules in docs/chaos.md. A rule broken is a *violation*; an extra
run that an injected fault explains is counted by cause, not a violation. For ``everysec`` AOF,
acknowledged enqueues lost in the last second before a Redis kill are reported as AOF loss
(Redis's own contract), never hidden and never a violation.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from chaos_lib.plan import LEASE
from chaos_lib.run import Snapshot
from chaos_lib.windows_audit import WindowAudit
from rq_sched.errors import CorruptTaskError
from rq_sched.message import decode

NETWORK = (
    "redis_pause",
    "redis_kill",
    "proxy_drop",
    "proxy_stall",
    "proxy_slow",
    "proxy_blackhole",
)
SLACK = 1.0
"""Seconds after an operator's cancel or delete returned in which a start is still a race."""
AOF_WINDOW = 1.5
"""``everysec`` may lose writes of about the last second before a crash (plus fsync delay)."""
AFTER = LEASE + 8.0
_DID_NOT_HAPPEN = ("TaskStateError", "TaskNotFoundError")
"""How long after a network fault its effects (lease expiry, recovery, ack retries) may show."""


@dataclass
class Run:
    """One handler call, from its start line to its end line (None: never ended)."""

    pid: int
    """The worker server's pid (a process handler's child reports its parent's)."""
    proc: str
    start: float
    kind: str
    retried: int
    max_retry: int
    end: float | None = None
    outcome: str | None = None
    stall: float = 0.0
    cancelled_at_start: bool = False
    final: bool = False
    call: str | None = None
    """The debounce or throttle call whose payload the run carries (``windows.py``)."""


@dataclass
class Result:
    """What the audit found; ``violations`` empty means a clean verdict."""

    outcomes: Counter[str] = field(default_factory=Counter)
    extra_runs: Counter[str] = field(default_factory=Counter)
    violations: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    info: dict[str, Any] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)
    windows: Counter[str] = field(default_factory=Counter)
    """Debounce and throttle calls by answer (``windows_audit.py``)."""

    def violate(self, kind: str, task: str, detail: str) -> None:
        self.violations[kind].append((task, detail))


class Audit:
    """One audit over a ledger and a snapshot."""

    def __init__(self, events: list[dict[str, Any]], snap: Snapshot, aof: str) -> None:
        self.snap = snap
        self.aof = aof
        self.result = Result()
        self.runs: dict[tuple[str, str], list[Run]] = defaultdict(list)
        self.acked: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self.ops: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self.bulk_ops: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []
        self.kills: dict[int, dict[str, Any]] = {}
        self.died: dict[int, dict[str, Any]] = {}
        self.redis_down: list[float] = []
        self.stalls: list[tuple[int, float, float]] = []
        self.lags: list[tuple[int, float, float]] = []
        """(worker pid, from, to): its event loop ran late (stalled handler or overload)."""
        self.ticks: Counter[str] = Counter()
        self.tick_walls: defaultdict[str, list[float]] = defaultdict(list)
        self._index(events)
        self.windows = WindowAudit(self, events)

    # -- reading the ledger ---------------------------------------------------------------------

    def _index(self, events: list[dict[str, Any]]) -> None:
        by_pid: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
        unknown: dict[tuple[str, str], dict[str, Any]] = {}
        for ev in sorted(events, key=lambda e: e["wall"]):
            kind = ev["ev"]
            if kind in ("start", "end"):
                by_pid[(ev["pid"], ev["id"])].append(ev)
            elif kind == "enq":
                self._enqueue(ev, unknown)
            elif kind == "op":
                if ev.get("id"):
                    self.ops[(ev["q"], ev["id"])].append(ev)
                elif ev["action"].startswith("bulk_"):
                    self.bulk_ops.append(ev)
            elif kind == "fault":
                self.faults.append(ev)
                self.result.faults[ev["kind"]] += 1
            elif kind == "kill":
                # The first kill of a pid is its death; a later fault aimed at the same
                # (already dead, not yet restarted) process logs the same pid again.
                self.kills.setdefault(ev["child"], ev)
            elif kind == "proc_died":
                self.died[ev["child"]] = ev
            elif kind == "redis_down":
                self.redis_down.append(ev["wall"])
            elif kind == "lag":
                self.lags.append((ev["wpid"], ev["since"], ev["wall"]))
            elif kind == "tick":
                self.ticks[ev["id"]] += 1
                self.tick_walls[ev["id"]].append(ev["wall"])
                self.acked[("cron", ev["id"])].append({**ev, "q": "cron", "ret": True})
        for (pid, task_id), lines in by_pid.items():
            self._pair(pid, task_id, sorted(lines, key=lambda e: e["mono"]))
        for runs in self.runs.values():
            runs.sort(key=lambda r: r.start)

    def _enqueue(self, ev: dict[str, Any], unknown: dict[tuple[str, str], dict[str, Any]]) -> None:
        key = (ev["q"], ev["id"])
        if ev["res"] == "ok" and ev["id"]:
            self.acked[key].append(ev)
        elif ev["res"] == "unknown" and ev["id"]:
            unknown[key] = ev
        elif ev.get("err") == "TaskIdConflictError" and key in unknown and key not in self.acked:
            # Our own earlier attempt was stored after all: Redis holds the task.
            self.acked[key].append(unknown[key])

    def _pair(self, pid: int, task_id: str, lines: list[dict[str, Any]]) -> None:
        current: Run | None = None
        for ev in lines:
            if ev["ev"] == "start":
                current = Run(
                    ev.get("wpid", pid),
                    ev["proc"],
                    ev["wall"],
                    ev.get("kind", "?"),
                    ev["retried"],
                    ev["max_retry"],
                    stall=float(ev.get("stall") or 0),
                    cancelled_at_start=bool(ev.get("cancelled_at_start")),
                    call=ev.get("call"),
                )
                self.runs[(ev["q"], task_id)].append(current)
                if current.stall:
                    self.stalls.append((current.pid, current.start, current.start + current.stall))
            elif current is not None and current.end is None:
                current.end, current.outcome = ev["wall"], ev["outcome"]
                current.final = ev["outcome"] in ("ok", "skip") or (
                    ev["outcome"] in ("fail", "retry") and current.retried >= current.max_retry
                )

    # -- explanations ---------------------------------------------------------------------------

    def _network(self, t0: float, t1: float) -> str | None:
        for fault in self.faults:
            if fault["kind"] in NETWORK and fault["t0"] - 1.0 <= t1 and t0 <= fault["t1"] + AFTER:
                return str(fault["kind"])
        return None

    def _skew(self, t0: float, t1: float) -> str | None:
        for fault in self.faults:
            if fault["kind"] == "clock_skew" and fault["t0"] <= t1 and t0 <= fault["t1"] + AFTER:
                return "clock_skew"
        return None

    def _stalled(self, pid: int, t0: float, t1: float) -> str | None:
        for stall_pid, s0, s1 in self.stalls:
            if stall_pid == pid and s0 <= t1 and t0 <= s1 + 1.0:
                return "loop_stall"
        return None

    def _lagged(self, pid: int, t0: float, t1: float) -> str | None:
        """A loop lag of at least half a lease on worker ``pid`` between ``t0`` and ``t1``."""
        for lag_pid, s0, s1 in self.lags:
            if lag_pid == pid and s1 - s0 >= LEASE / 2 and s0 <= t1 and t0 <= s1 + 1.0:
                return "worker loop lag (load)"
        return None

    def _death(self, pid: int, before: float) -> str | None:
        """Why ``pid`` was gone before ``before``: the fault that killed it, or a crash."""
        kill = self.kills.get(pid)
        if kill is not None and kill["wall"] <= before:
            return str(kill.get("kind") or "killed")
        died = self.died.get(pid)
        if died is not None and died["wall"] <= before + 2.0:
            return "process_died"
        return None

    def _operator_run(self, key: tuple[str, str], after: float, before: float) -> bool:
        for op in self.ops.get(key, []):
            # The run took effect between the op's start (a CLI call takes a second to start)
            # and its return.
            if (
                op["action"] == "run"
                and op["res"] == "ok"
                and after - 1.0 <= op["wall"]
                and op.get("t0", op["wall"]) <= before
            ):
                return True
        return any(
            op["action"] == "bulk_run"
            and op["q"] == key[0]
            and op["res"] == "ok"
            and after - 1.0 <= op["wall"]
            and op["t0"] <= before
            for op in self.bulk_ops
        )

    # -- the checks -----------------------------------------------------------------------------

    def run(self) -> Result:
        states = self._states()
        for key in sorted(set(self.acked) | set(self.runs)):
            self._check_runs(key)
            if key in self.acked:
                self._check_final(key, states.get(key, []))
            else:
                self.result.outcomes["(not acknowledged, seen)"] += 1
        self._check_store(states)
        self._check_ticks()
        self._check_counters()
        self.windows.check()
        return self.result

    def _check_runs(self, key: tuple[str, str]) -> None:
        runs = self.runs.get(key, [])
        name = f"{key[0]}/{key[1]}"
        self._cancelled_final(key, runs)
        for i, run in enumerate(runs):
            if run.cancelled_at_start:
                self.result.violate(
                    "thread_started_after_give_up",
                    name,
                    f"thread call started after its task timed out or was cancelled ({run.proc})",
                )
            if i == 0:
                continue
            label = self._classify(key, runs[:i], run)
            if label is None:
                continue
            cause, violation = label
            self.result.extra_runs[cause] += 1
            if cause == "clock_skew" and violation is None:
                # Leases judged by Redis TIME make skew harmless: any re-run it causes is a bug
                # (issue 10 case 6), even though the fault explains it.
                violation = "rerun_by_clock_skew"
            if violation:
                self.result.violate(
                    violation, name, f"start at {run.start:.3f} on {run.proc}: {cause}"
                )
        self._check_after_ops(key, runs, name)

    def _cancelled_final(self, key: tuple[str, str], runs: list[Run]) -> None:
        for op in self.ops.get(key, []):
            if op["action"] != "cancel" or op["res"] != "ok":
                continue
            # A cancel ends one run: the last one going while it was asked for (an earlier
            # run interrupted by its timeout is a failed attempt, retried).
            ended = [
                run
                for run in runs
                if run.outcome == "interrupted"
                and run.end is not None
                and run.start <= op["wall"] <= run.end + 0.5
                and run.end >= op.get("t0", op["wall"]) - 0.1
            ]
            if ended:
                max(ended, key=lambda r: r.start).final = True

    def _classify(
        self, key: tuple[str, str], earlier: list[Run], run: Run
    ) -> tuple[str, str | None] | None:
        """None for a normal next attempt; else (cause, violation or None)."""
        finals = [r.end for r in earlier if r.final and r.end is not None]
        settled_at = min(finals) if finals else None
        if self._operator_run(key, settled_at or earlier[-1].start, run.start):
            return None
        # A run with a lower attempt number was settled as a failure (its timeout, say) even if
        # its handler went on: only runs of the same attempt can still be running it.
        open_runs = [
            r for r in earlier if (r.end is None or r.end > run.start) and r.retried >= run.retried
        ]
        alive = [r for r in open_runs if self._death(r.pid, run.start) is None]
        if settled_at is not None and settled_at <= run.start:
            settler = next(r for r in earlier if r.final and r.end == settled_at)
            cause = self._lost_settle(settler, run, earlier)
            return (cause or "unexplained", None if cause else "run_after_settle")
        if alive:
            other = alive[0]
            if other.outcome == "abandoned":
                return ("thread_timeout_overrun", None)
            # Skew comes last: it explains nothing once leases are judged by Redis TIME, so it
            # is named (and made a violation) only when no other fault overlapped.
            cause = (
                self._stalled(other.pid, other.start, run.start)
                or self._network(other.start - LEASE, run.start)
                or self._lagged(other.pid, other.start - LEASE, run.start)
                or self._skew(other.start - LEASE, run.start)
            )
            return (cause or "unexplained", None if cause else "concurrent_runs")
        dead = [r for r in open_runs if r not in alive]
        if dead:
            cause = self._death(dead[0].pid, run.start + 60) or "handler_vanished"
            return (
                cause,
                "process_died" if cause in ("process_died", "handler_vanished") else None,
            )
        return None  # the previous attempt failed and was retried: not an extra run

    def _lost_settle(self, settler: Run, run: Run, earlier: list[Run]) -> str | None:
        """Why the settle of ``settler`` did not hold, if a fault explains it."""
        assert settler.end is not None
        death = self._death(settler.pid, run.start)
        if death is not None and self._death(settler.pid, settler.end) is not None:
            # A process handler's child finished after its worker was killed: nobody could
            # record the outcome (the child outlived its parent).
            return death + " (handler outlived its worker)"
        if (
            death is not None
            and (self.kills.get(settler.pid) or self.died.get(settler.pid) or {}).get("wall", 0)
            >= settler.end - 0.5
        ):
            return death + " (before its ack)"
        overlapped = any(
            r is not settler and r.start < settler.end and (r.end or 1e18) > settler.start
            for r in earlier
        )
        if overlapped:
            return "stale_lease"
        return (
            self._network(settler.end - 1.0, run.start)
            or self._stalled(settler.pid, settler.start, run.start)
            or self._lagged(settler.pid, settler.start - LEASE, run.start)
            or self._skew(settler.start - LEASE, run.start)
        )

    def _check_after_ops(self, key: tuple[str, str], runs: list[Run], name: str) -> None:
        for op in self.ops.get(key, []):
            if op["res"] != "ok" or op["action"] not in ("cancel", "delete"):
                continue
            for run in runs:
                if run.start > op["wall"] + SLACK and not self._operator_run(
                    key, op["wall"], run.start
                ):
                    late = run.start - op["wall"]
                    self.result.violate(
                        f"run_after_{op['action']}",
                        name,
                        f"started {late:.1f}s after the operator's {op['action']} "
                        f"(servers notified: {op.get('heard')})",
                    )
                    break

    # -- final states ---------------------------------------------------------------------------

    def _states(self) -> dict[tuple[str, str], list[str]]:
        states: dict[tuple[str, str], list[str]] = defaultdict(list)
        for queue, data in self.snap.queues.items():
            for task_id in data["pending"]:
                states[(queue, task_id)].append("pending")
            for name, state in (
                ("lease", "active"),
                ("scheduled", "scheduled"),
                ("retry", "retry"),
                ("archived", "archived"),
                ("completed", "completed"),
            ):
                for task_id in data[name]:
                    states[(queue, task_id)].append(state)
        return states

    def _message(self, key: tuple[str, str]) -> Any:
        raw = self.snap.queues[key[0]]["msg"].get(key[1].encode())
        if raw is None:
            return None
        try:
            return decode(raw, task_id=key[1])
        except (CorruptTaskError, TypeError, ValueError):
            return "corrupt"

    def _check_final(self, key: tuple[str, str], states: list[str]) -> None:
        name = f"{key[0]}/{key[1]}"
        outcome = self._outcome(key, states)
        self.result.outcomes[outcome] += 1
        if outcome in ("lost", "stuck", "archived_without_reason", "completed_record_missing"):
            self.result.violate(
                outcome, name, f"states {states or 'none'}; runs {len(self.runs.get(key, []))}"
            )

    def _outcome(self, key: tuple[str, str], states: list[str]) -> str:
        if "completed" in states:
            return "done"
        if "archived" in states:
            message = self._message(key)
            error = getattr(message, "last_error", None)
            if error:
                return (
                    "cancelled" if error.startswith("TaskCancelledError") else "archived (failed)"
                )
            return (
                "archived (operator)"
                if self._operator(key, ("archive", "bulk_archive"))
                else "archived_without_reason"
            )
        if "scheduled" in states:
            due = self.snap.queues[key[0]]["scheduled"][key[1]] / 1000
            return "scheduled (future)" if due > self.snap.taken_at + 1 else "stuck"
        if states:
            return "stuck"
        if self._operator(key, ("delete", "bulk_delete")):
            return "deleted (operator)"
        runs = self.runs.get(key, [])
        last_ack = max(e["wall"] for e in self.acked[key])
        ok = [r for r in runs if r.outcome == "ok"]
        if ok and not any(e.get("ret") for e in self.acked[key]):
            return "done"
        if self._aof_loss(last_ack if not ok else min(r.end or 0 for r in ok)):
            return "lost to AOF everysec"
        return "completed_record_missing" if ok else "lost"

    def _operator(self, key: tuple[str, str], actions: tuple[str, ...]) -> bool:
        for op in self.ops.get(key, []):
            # An action that failed on the way (Redis unreachable) may still have happened.
            if op["action"] in actions and op.get("err") not in _DID_NOT_HAPPEN:
                return True
        first_ack = min(e["wall"] for e in self.acked.get(key, [{"wall": 0.0}]))
        return any(
            op["action"] in actions and op["q"] == key[0] and op["wall"] >= first_ack
            for op in self.bulk_ops
        )

    def _aof_loss(self, at: float) -> bool:
        if self.aof != "everysec":
            return False
        return any(down - AOF_WINDOW <= at <= down for down in self.redis_down)

    # -- the store as a whole -------------------------------------------------------------------

    def _check_store(self, states: dict[tuple[str, str], list[str]]) -> None:
        live = {"pending", "active", "scheduled", "retry"}
        for key, found in states.items():
            name = f"{key[0]}/{key[1]}"
            if len(found) > 1:
                self.result.violate("id_in_two_states", name, ", ".join(found))
            if key[1].encode() not in self.snap.queues[key[0]]["msg"]:
                self.result.violate("state_without_message", name, ", ".join(found))
        for queue, data in self.snap.queues.items():
            for raw in data["msg"]:
                if (queue, raw.decode()) not in states:
                    self.result.violate(
                        "message_without_state", f"{queue}/{raw.decode()}", "orphan message"
                    )
            if data.get("trimmed"):
                self.result.violate(
                    "archive_trimmed",
                    queue,
                    f"{data['trimmed']} archived task(s) deleted by the archive's limits (every "
                    "server here keeps a huge archive: one must have run with smaller limits)",
                )
            for lock, holder in data["locks"].items():
                if not live & set(states.get((queue, holder), [])):
                    self.result.violate("leaked_unique_lock", f"{queue}/{holder}", lock)
            if self.snap.settled:
                for task_id in data["lease"]:
                    self.result.violate(
                        "leaked_lease", f"{queue}/{task_id}", "active after settling"
                    )
                if data.get("keyed_state"):
                    self.result.violate(
                        "leaked_key_state",
                        queue,
                        f"per-key counts left with nothing running: {data['keyed_state']}",
                    )
        if not self.snap.settled:
            self.result.violate(
                "not_settled", "-", "queues did not empty within the settle timeout"
            )
        for server in self.snap.servers:
            if server["pid"] in self.snap.worker_pids and (server["active"] or server["workers"]):
                self.result.violate(
                    "leaked_worker_slot",
                    server["id"],
                    f"{server['active']} slot(s) busy with queues empty: {server['workers'][:5]}",
                )
        for pid, ev in self.died.items():
            self.result.violate(
                "process_died",
                ev["name"],
                f"pid {pid} exited with code {ev.get('code')} without a fault",
            )

    def _check_ticks(self) -> None:
        seen: dict[str, set[int]] = defaultdict(set)
        cron = [k for k in set(self.runs) | set(self._states()) if k[0] == "cron"]
        for _, task_id in cron:
            _, entry_id, fire_ms = task_id.split(":")
            seen[entry_id].add(int(fire_ms))
        aof_lost = 0
        for task_id, count in self.ticks.items():
            # A tick written just before a Redis kill can be lost to everysec (its guard with
            # it), and the scheduler then rightly enqueues it again: not a double enqueue.
            earlier = sorted(self.tick_walls[task_id])[:-1]
            if count > 1 and not all(self._aof_loss(wall) for wall in earlier):
                self.result.violate(
                    "tick_enqueued_twice", f"cron/{task_id}", f"{count} schedulers enqueued it"
                )
        periods = {"every-1s": 1000, "cron-2s": 2000}
        stop_ms = int((self.snap.sched_stopped - 3.0) * 1000)
        expected = missing = 0
        for entry, period in periods.items():
            fires = seen.get(entry)
            if not fires:
                self.result.violate("tick_missed", f"cron/{entry}", "no tick of this entry at all")
                continue
            for fire in range(min(fires) + period * 3, stop_ms, period):
                expected += 1
                if fire not in fires:
                    tick_id = f"cron:{entry}:{fire}"
                    walls = self.tick_walls.get(tick_id, [])
                    if walls and all(self._aof_loss(wall) for wall in walls):
                        aof_lost += 1  # enqueued, then lost with the last second of the AOF
                        continue
                    missing += 1
                    self.result.violate("tick_missed", f"cron/{tick_id}", "no task for this tick")
            off_grid = [f for f in fires if f % period]
            for fire in off_grid:
                self.result.violate(
                    "tick_off_grid", f"cron/cron:{entry}:{fire}", "fire time off the schedule"
                )
        self.result.info["ticks expected / missing"] = f"{expected} / {missing}"
        if self.aof == "everysec":
            self.result.info["ticks lost to AOF everysec"] = aof_lost

    def _check_counters(self) -> None:
        processed = sum(d["processed"] for d in self.snap.queues.values())
        failed = sum(d["failed"] for d in self.snap.queues.values())
        done = sum(len(d["completed"]) for d in self.snap.queues.values())
        unsure = 0
        for key, runs in self.runs.items():
            # Done and gone: no retention, or an operator deleted the kept record afterwards.
            in_redis = key[1].encode() in self.snap.queues[key[0]]["msg"]
            if not in_redis and any(r.outcome == "ok" for r in runs):
                if self._operator(key, ("delete", "bulk_delete")):
                    unsure += 1  # deleted after a success whose ack was lost, or after its ack
                else:
                    done += 1
        ends = Counter(r.outcome for runs in self.runs.values() for r in runs)
        self.result.info["processed counter / done tasks"] = f"{processed} / {done} (+{unsure}?)"
        self.result.info["failed counter / failing handler ends"] = (
            f"{failed} / {ends['fail'] + ends['retry'] + ends['skip'] + ends['interrupted']}"
        )
        self.result.info["runs by end"] = dict(ends)
        exact = done <= processed <= done + unsure
        if not exact and not (self.aof == "everysec" and self.redis_down):
            kind = "counter_over" if processed > done else "counter_under"
            self.result.violate(kind, "-", f"processed counter {processed}, tasks done {done}")


def ledger_lines(events: list[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    """Every ledger line about ``queue/id``, oldest first."""
    _, _, task_id = task.partition("/")
    return sorted((e for e in events if e.get("id") == task_id), key=lambda e: e["wall"])
