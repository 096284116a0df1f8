"""The periodic scheduler: turns schedule entries into tasks on time, exactly once per tick,
however many scheduler processes run.

**Exactly once.** Every scheduler process tries every tick. The task of a tick has the id
``cron:<entry id>:<fire time ms>`` (the entry id is derived from the entry's name, so it is stable
across restarts and equal in every process), and it is enqueued by the ``enqueue`` script with a
guard: in the same atomic step the script refuses a fire time at or before the newest one already
claimed for that entry (``{queue}:guard:<entry id>``), and refuses an id a live task already holds.
So N schedulers give one task per tick; a loser sees :class:`~rq_sched.errors.TickTakenError` or
:class:`~rq_sched.errors.TaskIdConflictError` and moves on. A consumed or archived tick cannot be
enqueued again (the guard has moved past it), and it never blocks a later tick (other id).
Processes need not agree on the time: a tick is named by its fire time, and the fastest clock wins.

**On time.** :meth:`Scheduler.run` sleeps on an event until the next fire time (or heartbeat) and
enqueues at the tick; :meth:`add`, :meth:`replace` and :meth:`stop` wake it early.

**Late and missed ticks.** A tick handled up to ``tolerance`` (2 s) late is simply enqueued (a
busy or briefly disconnected scheduler loses nothing). Older ticks were missed — typically while
no scheduler ran. ``misfire="skip"`` (default) drops them. ``misfire="run_once"`` enqueues only
the newest missed tick, and only if it is at most ``grace`` old: never a burst of catch-up tasks.
Where a scheduler resumes from is the entry's guard in Redis (the newest tick any process claimed).

**Paused entries.** An operator pauses an entry by adding its id to ``scheduler:paused`` (a set;
see :meth:`rq_sched.inspector.Inspector.pause_entry`). Every scheduler process reads it at a tick
that is due (one SMISMEMBER for all entries due at that moment, nothing while none is due), and
instead of enqueueing, claims the tick with the ``claim_tick`` script, which moves the entry's
guard as an enqueue would. The one process that claims it records the tick in the history as
``skipped``. The ticks handled are those the misfire policy picks, exactly as for enqueueing, so
a resume fires only the next tick: no catch-up burst, and a scheduler started while the entry was
paused resumes after the newest skipped tick. The set lives in Redis, so a pause survives
scheduler restarts and config reloads; it is dropped with the entry's history when the entry's
only scheduler removes the entry.

**State for the dashboard** (keys from :mod:`rq_sched.keys`): ``scheduler:entries`` maps entry id
to :class:`~rq_sched.models.ScheduleEntryInfo` JSON, refreshed by every running scheduler at each
heartbeat; ``scheduler:history:<entry id>`` holds :class:`~rq_sched.models.ScheduleRecord` JSON,
newest first, capped; ``schedulers`` maps instance id to heartbeat expiry (ms). An entry no running
scheduler refreshes any more is removed (at once when its only owner drops it on reload).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Self

import redis.exceptions

from rq_sched import ops, scripts
from rq_sched.clock import Clock, from_ms, to_ms, use_clock
from rq_sched.connection import connect, translate_errors
from rq_sched.durations import duration_ms
from rq_sched.errors import (
    RedisUnavailableError,
    RqSchedError,
    TaskIdConflictError,
    TickTakenError,
    ValidationError,
    error_for_code,
)
from rq_sched.keys import DEFAULT_NAMESPACE, GlobalKeys, QueueKeys, check_namespace
from rq_sched.models import ScheduleEntryInfo, ScheduleRecord, payload_preview
from rq_sched.scheduler.cron import IntervalSchedule, Schedule
from rq_sched.scheduler.entries import (
    Entry,
    build_entry,
    check_unique_names,
    entry_id,
    tick_task_id,
)
from rq_sched.scripts import SyncRedis

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE_S = 2.0
HEARTBEAT_INTERVAL_S = 5.0
HEARTBEAT_TTL_S = 30.0
"""A scheduler that has not renewed its heartbeat for this long counts as gone."""
HISTORY_LENGTH = 100
RETRY_DELAY_S = 1.0
MAX_CATCHUP_STEPS = 100_000
"""Most fire times walked through when looking for missed ticks (bounds a per-second entry)."""
LOOKBACK_START_MS = 60_000


@dataclass
class _State:
    """What one scheduler process knows about one entry."""

    entry: Entry
    keys: QueueKeys
    last_ms: int | None = None
    """Newest tick handled here (enqueued, taken by another process, or skipped); None until read
    from the entry's guard in Redis."""
    prev_ms: int | None = None
    """Newest tick known to be enqueued, by any process."""
    next_ms: int = 0


class Scheduler:
    """Enqueues a task for each tick of each entry; safe to run in several processes at once.

    Example::

        scheduler = Scheduler.from_url("redis://localhost:6379/0")
        scheduler.add("nightly-report", "30 2 * * *", "report:nightly", timezone="Europe/Berlin")
        scheduler.run()  # or start() / stop() to run it in a background thread
    """

    def __init__(
        self,
        redis: SyncRedis,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        clock: Clock | None = None,
        tolerance: timedelta | float = DEFAULT_TOLERANCE_S,
        history_length: int = HISTORY_LENGTH,
        heartbeat_interval: timedelta | float = HEARTBEAT_INTERVAL_S,
        instance_id: str | None = None,
    ) -> None:
        """Args:
            redis: a sync Redis or Redis Cluster client.
            namespace: the key namespace (as for Client and the workers).
            clock: where time comes from (tests pass a ManualClock).
            tolerance: how late a tick may be handled and still count as on time.
            history_length: enqueue records kept per entry.
            heartbeat_interval: how often the instance and its entries are republished.
            instance_id: this process's name in ``schedulers`` (default host:pid:random).

        Raises:
            ValidationError: an argument is out of range.
        """
        check_namespace(namespace)
        if history_length < 1:
            raise ValidationError(f"history_length must be >= 1, got {history_length}")
        self.redis = redis
        self.namespace = namespace
        self.clock: Clock = use_clock(clock)
        self.global_keys = GlobalKeys(namespace)
        self.tolerance_ms = _positive_ms(tolerance, "tolerance")
        self.heartbeat_ms = _positive_ms(heartbeat_interval, "heartbeat_interval")
        self.history_length = history_length
        self.instance_id = instance_id or _new_instance_id()
        self._states: dict[str, _State] = {}
        self._removed: set[str] = set()
        self._registered: set[str] = set()
        self._next_heartbeat_ms = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_url(cls, url: str, *, cluster: bool = False, **options: Any) -> Self:
        """A scheduler on its own connection pool to ``url``; ``close()`` releases it.

        Raises:
            ValidationError: an option is invalid.
        """
        return cls(
            connect(url, cluster=cluster, socket_timeout=10, socket_connect_timeout=5), **options
        )

    # -- entries -----------------------------------------------------------------------------

    def add(
        self,
        name: str,
        spec: str,
        type: str,
        payload: Any = None,
        *,
        queue: str = "default",
        timezone: str = "UTC",
        misfire: str = "skip",
        grace: timedelta | float | str | None = None,
        **task_options: Any,
    ) -> Entry:
        """Add a periodic entry.

        Args:
            name: unique name; the entry id (and so the task ids of its ticks) derive from it.
            spec: 5-field cron, 6-field cron with seconds first, ``@hourly``-style names or
                ``@every 30s`` (see :mod:`rq_sched.scheduler.cron`).
            type: the task type to enqueue.
            payload: the task payload (anything msgpack encodes).
            queue: the queue to enqueue into.
            timezone: IANA time zone the cron spec is read in.
            misfire: ``"skip"`` or ``"run_once"`` (see the module docstring).
            grace: for ``run_once``, how late a missed tick may still run (default 1 h).
            **task_options: ``max_retry``, ``timeout``, ``deadline`` (relative to the tick),
                ``unique``, ``retention``, ``headers``, as for ``Client.enqueue``.

        Returns:
            The validated :class:`~rq_sched.scheduler.entries.Entry`.

        Raises:
            ValidationError: a bad spec, time zone or option, or the name is taken; the message
                names the entry.
        """
        entry = build_entry(
            name, spec, type, payload, queue=queue, timezone=timezone, misfire=misfire,
            grace=grace, **task_options,
        )  # fmt: skip
        self.add_entry(entry)
        return entry

    def add_entry(self, entry: Entry) -> None:
        """Add a built entry.

        Raises:
            ValidationError: an entry with that name (or id) exists already.
        """
        with self._lock:
            check_unique_names([*(s.entry for s in self._states.values()), entry])
            self._states[entry.id] = self._new_state(entry)
            self._removed.discard(entry.id)
            self._next_heartbeat_ms = 0
        self._wake.set()

    def remove(self, name: str) -> bool:
        """Stop scheduling the entry called ``name``; False if there is none."""
        with self._lock:
            state = self._states.pop(entry_id(name), None)
            if state is not None:
                self._removed.add(state.entry.id)
                self._next_heartbeat_ms = 0
        self._wake.set()
        return state is not None

    def replace(self, entries: Iterable[Entry]) -> None:
        """Make ``entries`` the whole set: add new ones, update changed ones, drop the rest.

        An entry that keeps its name (and queue) keeps its progress, so a reload never fires a
        tick twice. Nothing changes if the new set is invalid.

        Raises:
            ValidationError: two entries share a name.
        """
        new = check_unique_names(entries)
        with self._lock:
            states: dict[str, _State] = {}
            for entry in new:
                prior = self._states.get(entry.id)
                if prior is not None and prior.entry.queue == entry.queue:
                    prior.entry = entry
                    if prior.last_ms is not None:
                        prior.next_ms = entry.schedule.next_after(prior.last_ms)
                    states[entry.id] = prior
                else:
                    states[entry.id] = self._new_state(entry)
            self._removed = (self._removed | set(self._states)) - set(states)
            self._states = states
            self._next_heartbeat_ms = 0
        self._wake.set()

    @property
    def entries(self) -> list[Entry]:
        """The entries this scheduler runs."""
        with self._lock:
            return [state.entry for state in self._states.values()]

    def _new_state(self, entry: Entry) -> _State:
        return _State(entry=entry, keys=QueueKeys(self.namespace, entry.queue))

    # -- one iteration -------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> float:
        """Enqueue every tick that is due at ``now`` (default: the clock's time), heartbeat if
        due, and return the time (epoch seconds) at which the next iteration should run.

        Raises:
            RedisUnavailableError: Redis cannot be reached (ticks not yet enqueued stay due).
        """
        now_ms = to_ms(self.clock.now() if now is None else now)
        with self._lock, translate_errors(self.redis):
            self._load_progress(now_ms)
            due = [s for s in self._states.values() if s.next_ms <= now_ms]
            paused = self._paused(due)
            for state in due:
                self._process(state, now_ms, paused=state.entry.id in paused)
            if now_ms >= self._next_heartbeat_ms:
                self._heartbeat(now_ms)
            wake_ms = min([s.next_ms for s in self._states.values()], default=None)
        if wake_ms is None or wake_ms > self._next_heartbeat_ms:
            wake_ms = self._next_heartbeat_ms
        return wake_ms / 1000

    def _load_progress(self, now_ms: int) -> None:
        """Read the guard (newest claimed tick) of entries this process has not started yet."""
        fresh = [s for s in self._states.values() if s.last_ms is None]
        if not fresh:
            return
        queues = self._unregistered(s.entry.queue for s in fresh)
        pipe = self.redis.pipeline(transaction=False)
        for state in fresh:
            pipe.get(state.keys.guard(state.entry.id))
        if queues:
            pipe.sadd(self.global_keys.queues, *queues)
        guards = pipe.execute()[: len(fresh)]
        self._registered.update(queues)
        for state, guard in zip(fresh, guards, strict=True):
            claimed = int(guard) if guard is not None else None
            # A new entry starts now (a tick due this very millisecond still fires).
            state.last_ms = min(claimed, now_ms) if claimed is not None else now_ms - 1
            state.prev_ms = claimed
            state.next_ms = state.entry.schedule.next_after(state.last_ms)

    def _paused(self, due: list[_State]) -> set[str]:
        """The ids among ``due`` entries that an operator paused (one read, none if none due)."""
        if not due:
            return set()
        ids = [s.entry.id for s in due]
        flags = self.redis.smismember(self.global_keys.scheduler_paused, ids)
        return {i for i, flag in zip(ids, flags, strict=True) if flag}

    def _process(self, state: _State, now_ms: int, *, paused: bool = False) -> None:
        assert state.last_ms is not None
        if state.next_ms > now_ms:
            return  # not due: skip the cron arithmetic
        for fire_ms in self._due(state, now_ms):
            if paused:
                self._skip(state, fire_ms, now_ms)
            else:
                self._fire(state, fire_ms, now_ms)
            state.last_ms = fire_ms
        state.last_ms = max(state.last_ms, now_ms)
        state.next_ms = state.entry.schedule.next_after(state.last_ms)

    def _due(self, state: _State, now_ms: int) -> list[int]:
        """The ticks to enqueue now: those at most ``tolerance`` late; else, for ``run_once``,
        the newest missed tick within ``grace``."""
        entry, last = state.entry, state.last_ms
        assert last is not None
        first = entry.schedule.next_after(last)
        if first > now_ms:
            return []
        recent_from = max(last, now_ms - self.tolerance_ms)
        on_time = list(_fires_between(entry.schedule, recent_from, now_ms))
        if first > recent_from:
            return on_time
        if on_time or entry.misfire == "skip":
            log.info("entry %r: skipping ticks missed since %s", entry.name, from_ms(first))
            return on_time
        grace_from = max(last, now_ms - round(entry.grace * 1000))
        newest = _newest_between(entry.schedule, grace_from, recent_from)
        if newest is None:
            log.info("entry %r: missed ticks are older than grace; skipping them", entry.name)
            return []
        log.info(
            "entry %r: running missed tick %s once (misfire=run_once)", entry.name, from_ms(newest)
        )
        return [newest]

    def _fire(self, state: _State, fire_ms: int, now_ms: int) -> None:
        entry = state.entry
        task_id = tick_task_id(entry.id, fire_ms)
        try:
            task = entry.prepare(task_id, fire_ms, now_ms)
        except ValidationError as exc:
            log.warning("entry %r: tick %s not enqueued: %s", entry.name, from_ms(fire_ms), exc)
            self._record(state, fire_ms, now_ms, task_id, str(exc))
            return
        script, keys, args = ops.enqueue(state.keys, task, guard=(entry.id, fire_ms))
        code = int(scripts.run(self.redis, script, keys, args))
        if code >= 0:
            state.prev_ms = fire_ms
            log.debug("entry %r: enqueued %s", entry.name, task_id)
            self._record(state, fire_ms, task.message.enqueued_at, task_id, None)
            return
        error = error_for_code(code, queue=entry.queue, task_id=task_id)
        if isinstance(error, TickTakenError | TaskIdConflictError):
            state.prev_ms = max(state.prev_ms or 0, fire_ms)  # another process enqueued it
            return
        log.warning("entry %r: tick %s not enqueued: %s", entry.name, from_ms(fire_ms), error)
        self._record(state, fire_ms, now_ms, task_id, str(error))

    def _skip(self, state: _State, fire_ms: int, now_ms: int) -> None:
        """A tick of a paused entry: claim it (so one process records it) and enqueue nothing."""
        entry = state.entry
        script, keys, args = ops.claim_tick(state.keys, entry.id, fire_ms)
        if int(scripts.run(self.redis, script, keys, args)) < 0:
            return  # another process claimed (and recorded) it
        log.info("entry %r: tick %s skipped (entry paused)", entry.name, from_ms(fire_ms))
        self._record(state, fire_ms, now_ms, "", None, skipped=True)

    def _record(
        self,
        state: _State,
        fire_ms: int,
        at_ms: int,
        task_id: str,
        error: str | None,
        *,
        skipped: bool = False,
    ) -> None:
        entry = state.entry
        record = ScheduleRecord(
            fire_time=from_ms(fire_ms),
            enqueued_at=from_ms(at_ms),
            task_id=task_id,
            queue=entry.queue,
            error=error,
            skipped=skipped,
        )
        history = self.global_keys.scheduler_history(entry.id)
        next_ms = entry.schedule.next_after(max(fire_ms, at_ms))
        pipe = self.redis.pipeline(transaction=False)
        pipe.lpush(history, record.to_json())
        pipe.ltrim(history, 0, self.history_length - 1)
        pipe.hset(self.global_keys.scheduler_entries, entry.id, self._info(state, at_ms, next_ms))
        pipe.execute()

    def _info(self, state: _State, now_ms: int, next_ms: int) -> str:
        entry = state.entry
        return ScheduleEntryInfo(
            id=entry.id,
            name=entry.name,
            spec=entry.spec,
            type=entry.type,
            queue=entry.queue,
            timezone=entry.timezone,
            misfire=entry.misfire,
            payload_preview=payload_preview(entry.payload),
            next_fire=from_ms(next_ms),
            prev_fire=from_ms(state.prev_ms) if state.prev_ms is not None else None,
            updated_at=from_ms(now_ms),
        ).to_json()

    def _heartbeat(self, now_ms: int) -> None:
        """Renew this instance, publish its entries, drop entries no running scheduler owns."""
        keys = self.global_keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(keys.schedulers, {self.instance_id: now_ms + round(HEARTBEAT_TTL_S * 1000)})
        pipe.zremrangebyscore(keys.schedulers, "-inf", now_ms)
        if self._states:
            infos = {i: self._info(s, now_ms, s.next_ms) for i, s in self._states.items()}
            pipe.hset(keys.scheduler_entries, mapping=infos)  # type: ignore[arg-type]
        pipe.zrange(keys.schedulers, 0, -1)
        pipe.hgetall(keys.scheduler_entries)
        *_, live, published = pipe.execute()
        alone = [_text(m) for m in live] == [self.instance_id]
        stale_before = now_ms - max(round(HEARTBEAT_TTL_S * 1000), 3 * self.heartbeat_ms)
        orphans = [
            eid
            for eid, raw in ((_text(k), v) for k, v in published.items())
            if eid not in self._states
            and ((alone and eid in self._removed) or _updated_ms(raw) < stale_before)
        ]
        if orphans:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hdel(keys.scheduler_entries, *orphans)
            for eid in orphans:
                pipe.delete(keys.scheduler_history(eid))
            # Only an entry its last owner dropped loses its pause: a stale one may belong to a
            # scheduler that is down and will come back with it, still paused.
            if dropped := [eid for eid in orphans if alone and eid in self._removed]:
                pipe.srem(keys.scheduler_paused, *dropped)
            pipe.execute()
            log.info("removed schedule entries no running scheduler owns: %s", ", ".join(orphans))
        self._removed.clear()
        self._next_heartbeat_ms = now_ms + self.heartbeat_ms

    def _unregistered(self, queues: Iterable[str]) -> list[str]:
        return sorted({q for q in queues if q not in self._registered})

    # -- running -------------------------------------------------------------------------------

    def run(self) -> None:
        """Run until :meth:`stop` is called (from another thread or a signal handler's thread).

        Redis outages are logged and retried; ticks missed meanwhile follow the misfire policy.
        """
        self._stop.clear()
        self._loop()

    def start(self) -> None:
        """Run in a background (daemon) thread and return at once; :meth:`stop` ends it."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="rq-sched-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop (waiting up to ``timeout`` s for a background thread) and remove this
        instance from the live schedulers."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        """True while the background thread started by :meth:`start` runs."""
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """Stop, and close the connection pool."""
        self.stop()
        self.redis.close()

    def _loop(self) -> None:
        log.info("scheduler %s running %d entries", self.instance_id, len(self._states))
        try:
            while not self._stop.is_set():
                self._wake.clear()
                wake_at = self._safe_tick()
                delay = wake_at - self.clock.now()
                if delay > 0 and not self._stop.is_set():
                    self._wake.wait(delay)
        finally:
            self._deregister()
            log.info("scheduler %s stopped", self.instance_id)

    def _safe_tick(self) -> float:
        try:
            return self.tick()
        except RedisUnavailableError as exc:
            log.warning("scheduler: %s; retrying in %.0fs", exc, RETRY_DELAY_S)
        except (RqSchedError, redis.exceptions.RedisError) as exc:
            log.error("scheduler: tick failed (%s); retrying in %.0fs", exc, RETRY_DELAY_S)
        return self.clock.now() + RETRY_DELAY_S

    def _deregister(self) -> None:
        try:
            with translate_errors(self.redis):
                self.redis.zrem(self.global_keys.schedulers, self.instance_id)
        except (RedisUnavailableError, redis.exceptions.RedisError) as exc:
            log.warning("scheduler: could not deregister %s: %s", self.instance_id, exc)


def _fires_between(schedule: Schedule, after_ms: int, until_ms: int) -> Iterator[int]:
    """Fire times in ``(after_ms, until_ms]``, oldest first, at most MAX_CATCHUP_STEPS."""
    fire = schedule.next_after(after_ms)
    for _ in range(MAX_CATCHUP_STEPS):
        if fire > until_ms:
            return
        yield fire
        fire = schedule.next_after(fire)


def _newest_between(schedule: Schedule, after_ms: int, until_ms: int) -> int | None:
    """The newest fire time in ``(after_ms, until_ms]``, if any.

    Looks back in doubling windows, so finding it costs about the number of fires in the window
    that holds it, not the number of fires since ``after_ms``."""
    if isinstance(schedule, IntervalSchedule):
        newest = until_ms // schedule.interval_ms * schedule.interval_ms
        return newest if newest > after_ms else None
    window = LOOKBACK_START_MS
    while True:
        start = max(after_ms, until_ms - window)
        found = None
        for found in _fires_between(schedule, start, until_ms):  # noqa: B007 - keep the last
            pass
        if found is not None or start == after_ms:
            return found
        window *= 2


def _positive_ms(value: timedelta | float, name: str) -> int:
    return duration_ms(value, name, allow_zero=False)


def _new_instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _updated_ms(raw: str | bytes) -> int:
    try:
        return to_ms(ScheduleEntryInfo.from_json(raw).updated_at.timestamp())
    except (ValueError, KeyError, TypeError):
        return 0  # unreadable: treat as stale
