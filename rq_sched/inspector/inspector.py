"""Admin queries and operator actions on queues and tasks (the dashboard and CLI build on it).

Kept apart from the hot path (client, worker): everything here reads a bounded amount of data
per call and may take a few round trips. :class:`Inspector` is the one public entry point: it
checks names, finds a sharded queue's shards and delegates the work. Reads: ``lists`` (queue
stats, history, pages), ``record`` (one task's whole record), ``waiting``, ``minutes``,
``processes`` (servers, scheduler, Redis INFO). Operations: ``task_actions`` (one task, a
selection), ``actions`` (bulk and queue-wide actions), ``entries`` (periodic entries).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Self

from rq_sched import flow as flow_ops
from rq_sched import ops, shards
from rq_sched.client import Client
from rq_sched.clock import Clock, to_ms, use_clock
from rq_sched.connection import connect, translate_errors
from rq_sched.errors import TaskNotFoundError, ValidationError
from rq_sched.flow import FlowLimits, FlowStatus
from rq_sched.inspector import actions as inspector_actions
from rq_sched.inspector import entries as inspector_entries
from rq_sched.inspector import lists as inspector_lists
from rq_sched.inspector import minutes as inspector_minutes
from rq_sched.inspector import processes as inspector_processes
from rq_sched.inspector import record, sharded, task_actions
from rq_sched.inspector import waiting as inspector_waiting
from rq_sched.inspector.models import (
    BulkResult,
    DailyStats,
    MinutePoint,
    QueueStats,
    RedisNode,
    SchedulerStatus,
    SelectionResult,
    ServerStatus,
    TaskPage,
    TypeBreakdown,
)
from rq_sched.inspector.task_actions import MAX_SELECTION  # noqa: F401 - importable here as before
from rq_sched.keyed import FlowKeys, read_keys_now
from rq_sched.keys import DEFAULT_NAMESPACE, GlobalKeys, QueueKeys, check_namespace
from rq_sched.models import QueueInfo, TaskInfo, TaskState
from rq_sched.options import check_count, check_stored_id, check_stored_queue
from rq_sched.scripts import Call, SyncRedis

log = logging.getLogger(__name__)

MAX_KEYS_SHOWN = 1000
"""Most fairness keys :meth:`Inspector.flow_keys` lists in one call."""


class Inspector:
    """Reads queue and task state; runs operator actions (pause, delete, run now, archive)."""

    def __init__(
        self,
        redis: SyncRedis,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        clock: Clock | None = None,
        archive_limits: ops.ArchiveLimits | None = None,
    ) -> None:
        self.redis = redis
        self.namespace = check_namespace(namespace)
        self.clock: Clock = use_clock(clock)
        self.global_keys = GlobalKeys(namespace)
        self.archive_limits = archive_limits or ops.ArchiveLimits()

    @classmethod
    def from_url(cls, url: str, *, cluster: bool = False, **options: Any) -> Self:
        return cls(connect(url, cluster=cluster), **options)

    def close(self) -> None:
        self.redis.close()

    def keys(self, queue: str) -> QueueKeys:
        return QueueKeys(self.namespace, check_stored_queue(queue))

    def queues(self) -> list[str]:
        """Names of every queue that has had a task enqueued, sorted; a sharded queue is one
        name (its shards are in :meth:`physical_queues`)."""
        with translate_errors(self.redis):
            counts = shards.read_counts(self.redis, self.namespace)
        return sharded.logical_names(self._registry(), counts)

    def _registry(self) -> list[str]:
        """Every physical queue in the registry (a sharded queue's shards one by one)."""
        with translate_errors(self.redis):
            names = self.redis.smembers(self.global_keys.queues)
        return sorted(filter(None, map(_usable_queue, names)))

    def physical_queues(self, queue: str) -> list[str]:
        """The queues that store ``queue``: its shards (shard 0 first), then its base queue
        and any other layout left; ``[queue]`` for a queue that is not sharded."""
        with translate_errors(self.redis):
            return sharded.physical(self.redis, self.namespace, check_stored_queue(queue))

    def shard_count(self, queue: str) -> int:
        """How many shards ``queue`` has (1: not sharded)."""
        with translate_errors(self.redis):
            return shards.read_counts(self.redis, self.namespace).get(check_stored_queue(queue), 1)

    def set_shards(self, queue: str, n: int) -> shards.Change:
        """Store ``queue`` as ``n`` sub-queues in different cluster slots (1: one queue).

        Raises:
            ValidationError: a bad name or ``n``; the queue holds tasks; or a live worker
                server serves it (stop its workers, change the shards, restart them).
        """
        serving = [s.info.queues for s in self.servers()]
        with translate_errors(self.redis, writing="the shard map"):
            return shards.set_shards(self.redis, self.namespace, queue, n, serving)

    def _where(self, queue: str, task_id: str) -> str:
        """The physical queue holding ``task_id`` of ``queue`` (``queue`` itself unless it is
        sharded)."""
        check_stored_id(task_id)
        with translate_errors(self.redis):
            return shards.locate(self.redis, self.namespace, check_stored_queue(queue), task_id)

    def queue_info(self, queue: str) -> QueueInfo:
        """Counts per state, paused flag and processed/failed totals of one queue, read in one
        transaction so the counts are a consistent snapshot."""
        return self.queue_stats(queue).info

    def get_task(self, queue: str, task_id: str) -> TaskInfo:
        """Everything known about one task.

        Raises:
            TaskNotFoundError: no such task in that queue.
            CorruptTaskError: the stored message cannot be decoded.
        """
        queue = self._where(queue, task_id)
        return record.read_task(self.redis, self.keys(queue), task_id)

    def waiting(self, queue: str, limit: int = 100) -> list[inspector_waiting.WaitingTask]:
        """Up to ``limit`` tasks of ``queue`` held until their parents are final (enqueued
        with ``depends_on``, chain links, group callbacks), with how many parents reported.

        Raises:
            ValidationError: bad ``limit``.
        """
        check_count(limit, "limit")
        with translate_errors(self.redis):
            return inspector_waiting.read_waiting(self.redis, self.keys(queue), limit)

    def pause(self, queue: str) -> bool:
        """Stop workers taking tasks from ``queue`` (every shard of a sharded queue); returns
        False if it was already paused."""
        return self._set_paused(queue, True)

    def unpause(self, queue: str) -> bool:
        """Let workers take tasks from ``queue`` again; returns False if it was not paused."""
        return self._set_paused(queue, False)

    def _set_paused(self, queue: str, paused: bool) -> bool:
        changed = [
            self._run(ops.set_paused(self.keys(q), paused), q, "")
            for q in self.physical_queues(queue)
        ]
        return any(changed)

    def flow(self, queue: str) -> FlowStatus:
        """The flow limits of ``queue`` (rate limit, concurrency cap) and where they stand:
        tokens available now, tasks leased, whether ready tasks wait for a slot."""
        keys = self.keys(queue)
        with translate_errors(self.redis):
            return flow_ops.read_status(self.redis, keys)

    def flow_keys(self, queue: str, limit: int = 20) -> FlowKeys:
        """The fairness keys of ``queue`` (``enqueue(key=...)``) with ready or running tasks:
        how many, and the ``limit`` with the most ready tasks, each with its ready and running
        counts, its tokens now (with a per-key rate) and whether it waits for a slot of its cap
        or for its next token.

        Raises:
            ValidationError: a bad queue name or ``limit`` outside 1..1000.
        """
        keys = self.keys(queue)
        check_count(limit, "limit")
        if not 1 <= limit <= MAX_KEYS_SHOWN:
            raise ValidationError(f"limit must be from 1 to {MAX_KEYS_SHOWN}, got {limit}")
        with translate_errors(self.redis):
            return read_keys_now(self.redis, keys, limit)

    def set_flow(self, queue: str, limits: FlowLimits | None) -> FlowStatus:
        """Replace the flow limits of ``queue`` at run time (None removes them); every
        worker obeys them from its next dequeue. A server whose config sets limits for the
        queue stores its own again when it starts.

        Raises:
            ValidationError: ``limits`` is not a :class:`~rq_sched.FlowLimits`, or the queue
                is sharded (nothing written).
        """
        flow_ops.refuse_sharded(queue, len(self.physical_queues(queue)))
        keys = self.keys(queue)
        checked = FlowLimits() if limits is None else flow_ops.check_limits(limits)
        self._run(flow_ops.set_flow(keys, checked), queue, "")
        return self.flow(queue)

    def delete_task(self, queue: str, task_id: str) -> None:
        """Delete a task that is not active, releasing its uniqueness lock; or a task held for
        its parents (an orphan of a chain or group whose client died while enqueueing it).

        Raises:
            TaskNotFoundError: no such task.
            TaskStateError: the task is active (cancel it instead).
        """
        queue = self._where(queue, task_id)
        task_actions.delete(self.redis, self.keys(queue), task_id)

    def run_task(self, queue: str, task_id: str) -> None:
        """Make a scheduled, retry or archived task ready now.

        Raises:
            TaskNotFoundError: no such task.
            TaskStateError: the task is active, already pending, or completed.
        """
        queue = self._where(queue, task_id)
        self._run(ops.run_now(self.keys(queue), task_id), queue, task_id)

    def archive_task(self, queue: str, task_id: str) -> int:
        """Archive a pending, scheduled or retry task.

        Returns:
            How many (older) archived tasks the archive's trim deleted to stay within the
            queue's limits (:meth:`archive_limits_of`); usually 0.

        Raises:
            TaskNotFoundError: no such task.
            TaskStateError: the task is active, archived or completed.
        """
        keys = self.keys(self._where(queue, task_id))
        return task_actions.archive(self.redis, keys, task_id, self.clock, self.archive_limits)

    def archive_limits_of(self, queue: str) -> ops.ArchiveLimits:
        """The archive limits in force for ``queue``: those its workers stored, else this
        inspector's ``archive_limits``."""
        with translate_errors(self.redis):
            return inspector_actions.read_limits(self.redis, self.keys(queue), self.archive_limits)

    def cancel_task(self, queue: str, task_id: str) -> int:
        """Ask the worker server running an active task to cancel it (it is not retried).

        Returns:
            How many servers heard the request; 0 means no server is listening.

        Raises:
            TaskNotFoundError: no such task.
            TaskStateError: the task is not active (delete or archive it instead).
        """
        queue = self._where(queue, task_id)
        unique = self._unique_of(queue, task_id)
        with translate_errors(self.redis):
            return inspector_actions.cancel(
                self.redis, self.global_keys, self.keys(queue), task_id, unique
            )

    def has_queue(self, queue: str) -> bool:
        """Whether ``queue`` is in the registry of queue names."""
        name = check_stored_queue(queue)
        with translate_errors(self.redis):
            pipe = self.redis.pipeline(transaction=False)
            pipe.sismember(self.global_keys.queues, name)
            pipe.hexists(self.global_keys.shards, name)
            return any(pipe.execute())

    def require_queue(self, queue: str, *, leftovers: bool = False) -> None:
        """Raise unless ``queue`` exists, so actions on a mistyped name fail instead of leaving a
        stray key behind (a paused flag would make a later queue of that name start paused).

        Args:
            leftovers: also accept a queue that is not registered but still has keys (so
                deleting it can clean up what an older version left).

        Raises:
            TaskNotFoundError: no such queue.
        """
        if self.has_queue(queue):
            return
        if leftovers:
            with translate_errors(self.redis):
                if self.redis.exists(*self.keys(queue).all_fixed()):
                    return
        raise TaskNotFoundError(f"no queue {queue!r}; the queue list shows the names")

    def find_task(self, task_id: str) -> list[TaskInfo]:
        """Every task with id ``task_id``, in whichever queues hold one (one round trip to test
        every queue, then one per match).

        Raises:
            ValidationError: ``task_id`` is empty.
        """
        if task_id == "":
            raise ValidationError("give a task id to look for")
        check_stored_id(task_id)
        names = self._registry()
        found = record.holders(self.redis, [self.keys(name) for name in names], task_id)
        out = []
        for name, present in zip(names, found, strict=True):
            if present:
                try:
                    out.append(self.get_task(name, task_id))
                except TaskNotFoundError:
                    continue  # deleted between the two reads
        return out

    def queue_stats(self, queue: str, *, memory: bool = False) -> QueueStats:
        """:meth:`queue_info` plus the latency of the oldest pending task and, with
        ``memory=True``, an estimate of the queue's memory use (MEMORY USAGE with sampling)."""
        names = self.physical_queues(queue)
        with translate_errors(self.redis):
            stats = inspector_lists.read_stats(
                self.redis, [self.keys(q) for q in names], self.clock.now(), memory=memory
            )
        return stats[0] if len(names) == 1 else sharded.combine(queue, stats)

    def all_queue_stats(self) -> list[QueueStats]:
        """:meth:`queue_stats` (without memory) of every queue, in two round trips (a sharded
        queue summed over its shards)."""
        with translate_errors(self.redis):
            counts = shards.read_counts(self.redis, self.namespace)
        groups = sharded.groups(self._registry(), counts)
        keys = [self.keys(p) for group in groups.values() for p in group]
        with translate_errors(self.redis):
            flat = iter(inspector_lists.read_stats(self.redis, keys, self.clock.now()))
        out = []
        for queue, group in groups.items():
            parts = [next(flat) for _ in group]
            out.append(parts[0] if len(group) == 1 else sharded.combine(queue, parts))
        return out

    def history(self, queue: str | None = None, *, days: int = 7) -> list[DailyStats]:
        """Processed and failed per UTC day for the last ``days`` days (oldest first), of one
        queue or, with ``queue=None``, summed over all queues.

        Raises:
            ValidationError: ``days`` outside 1..90 (daily counters are kept 90 days).
        """
        names = self.physical_queues(queue) if queue is not None else self._registry()
        keys = [self.keys(q) for q in names]
        with translate_errors(self.redis):
            return inspector_lists.read_history(self.redis, keys, self.clock.now(), days)

    def list_tasks(
        self,
        queue: str,
        state: TaskState | str,
        *,
        page: int = 1,
        size: int = 20,
        task_type: str | None = None,
    ) -> TaskPage:
        """One page of the tasks of ``queue`` in ``state`` (pages start at 1). Pending tasks
        are listed in the order they will run; active, scheduled and retry by time; archived and
        completed newest first. With ``task_type``, only tasks of that type, found among the
        first ``lists.FILTER_SCAN_LIMIT`` of the state.

        Raises:
            ValidationError: unknown state, page < 1, size outside 1..500, or a page past any
                queue.
        """
        parsed = inspector_lists.parse_state(state)
        names = self.physical_queues(queue)
        if len(names) > 1:
            if task_type:
                raise ValidationError(
                    f"queue {queue!r} is sharded: filter by type one shard at a time "
                    f"({', '.join(names)})"
                )
            with translate_errors(self.redis):
                return sharded.merged_page(
                    self.redis, queue, [self.keys(q) for q in names], parsed, page=page, size=size
                )
        keys = self.keys(queue)
        with translate_errors(self.redis):
            if task_type:
                return inspector_lists.read_page_of_type(
                    self.redis, keys, parsed, task_type, page, size
                )
            return inspector_lists.read_page(self.redis, keys, parsed, page, size)

    def bulk(
        self, queue: str, state: TaskState | str, action: str, *, limit: int | None = None
    ) -> BulkResult:
        """Apply ``action`` ("run", "delete" or "archive") to every task of ``queue`` in
        ``state``, in bounded batches. Tasks that move meanwhile are skipped and counted.
        With ``limit``, to at most that many, and the result says how many remain: the
        dashboard loops over such steps to show progress on very large states.

        Raises:
            ValidationError: unknown state or action, or an action the state does not allow
                (run: scheduled, retry, archived; archive: pending, scheduled, retry; delete:
                every state but active).
            RqSchedError: a script failed unexpectedly.
        """
        parsed, name = inspector_actions.check_bulk(state, action)
        if limit is not None and check_count(limit, "limit") < 1:
            raise ValidationError(f"limit must be at least 1, got {limit}")
        with translate_errors(self.redis):
            parts = inspector_actions.bulk_each(
                self.redis,
                [self.keys(physical) for physical in self.physical_queues(queue)],
                parsed,
                name,
                now_s=self.clock.now(),
                limits=self.archive_limits,
                limit=limit,  # a sharded queue's shards share it, taken in turn
            )
        return parts[0] if len(parts) == 1 else sharded.combine_bulk(queue, parts)

    def act_on(self, queue: str, task_ids: Sequence[str], action: str) -> SelectionResult:
        """Apply ``action`` (run, archive, delete or cancel) to each of ``task_ids``: the
        dashboard's selection. Ids the action does not apply to are reported, not fatal.

        Raises:
            ValidationError: unknown action, or no ids / more than MAX_SELECTION.
        """
        actions = {
            "run": self.run_task,
            "archive": self.archive_task,
            "delete": self.delete_task,
            "cancel": self.cancel_task,
        }
        task_actions.check_selection(actions, task_ids, action)
        self.keys(queue)
        return task_actions.select(actions[action], queue, task_ids, action)

    def type_breakdown(self, queue: str) -> TypeBreakdown:
        """Tasks per type and state of ``queue``, over a bounded sample of each state."""
        names = self.physical_queues(queue)
        with translate_errors(self.redis):
            parts = [inspector_lists.read_type_breakdown(self.redis, self.keys(q)) for q in names]
        return parts[0] if len(names) == 1 else sharded.combine_types(queue, parts)

    def sample_minute(self) -> int:
        """Store this minute's sample of every queue for the per-minute charts (a no-op for
        queues already sampled this minute); returns how many samples were written."""
        keys = [self.keys(q) for q in self._registry()]
        with translate_errors(self.redis):
            return inspector_minutes.sample(self.redis, keys, self.clock.now())

    def minutes(self, queue: str | None = None, *, window: str = "hour") -> list[MinutePoint]:
        """Per-minute processed, failed, size and latency over the last hour or day, of one
        queue or summed over all.

        Raises:
            ValidationError: ``window`` is not hour or day.
        """
        span = inspector_minutes.window_minutes(window)
        names = self.physical_queues(queue) if queue is not None else self._registry()
        keys = [self.keys(q) for q in names]
        with translate_errors(self.redis):
            return inspector_minutes.read(self.redis, keys, self.clock.now(), span)

    def delete_queue(self, queue: str, *, force: bool = False) -> int:
        """Delete every key of ``queue`` and remove it from the registry.

        Returns:
            How many keys were deleted.

        Raises:
            TaskStateError: the queue has active tasks and ``force`` is false.
        """
        names = self.physical_queues(queue)
        with translate_errors(self.redis):
            if len(names) > 1 and not force:
                for name in names:  # refuse before deleting any shard
                    inspector_actions.check_idle(self.redis, self.keys(name))
            return sum(
                inspector_actions.delete_queue(
                    self.redis, self.global_keys, self.keys(name), force=force
                )
                for name in names
            )

    def servers(self) -> list[ServerStatus]:
        """Live worker servers (heartbeat not expired) and the tasks each is running."""
        with translate_errors(self.redis):
            return inspector_processes.read_servers(
                self.redis, self.global_keys, to_ms(self.clock.now())
            )

    def scheduler(self, *, history: int = 10) -> SchedulerStatus:
        """Periodic entries with next/previous fire and their last ``history`` fires, and the
        live scheduler instances.

        Raises:
            ValidationError: ``history`` outside 0..100.
        """
        with translate_errors(self.redis):
            return inspector_processes.read_scheduler(
                self.redis, self.global_keys, to_ms(self.clock.now()), history
            )

    def run_entry_now(self, entry_id: str) -> TaskInfo:
        """Run periodic entry ``entry_id`` once now, as a copy of its latest stored fire; the
        run is recorded in the entry's history.

        Raises:
            TaskNotFoundError: no such entry.
            TaskStateError: none of the entry's recent fires is still stored to copy.
        """
        check_stored_id(entry_id, "entry id")
        client = Client(self.redis, namespace=self.namespace, clock=self.clock)
        with translate_errors(self.redis):
            return inspector_entries.run_now(
                self.redis, self.global_keys, client, entry_id, self.clock.now()
            )

    def pause_entry(self, entry: str) -> bool:
        """Pause periodic entry ``entry`` (its id, or its name): every scheduler skips its ticks,
        recording them as skipped, until :meth:`resume_entry`. Survives scheduler restarts.

        Returns:
            True when the entry was running, False when it was already paused.

        Raises:
            TaskNotFoundError: no running scheduler publishes such an entry.
        """
        with translate_errors(self.redis):
            return inspector_entries.set_paused(self.redis, self.global_keys, entry, True)

    def resume_entry(self, entry: str) -> bool:
        """Resume a paused periodic entry (its id, or its name): its next tick fires; ticks
        that came while it was paused are not caught up.

        Returns:
            True when the entry was paused, False when it was already running.

        Raises:
            TaskNotFoundError: no running scheduler publishes such an entry.
        """
        with translate_errors(self.redis):
            return inspector_entries.set_paused(self.redis, self.global_keys, entry, False)

    def redis_info(self) -> list[RedisNode]:
        """A summary of Redis INFO per node (every primary of a cluster)."""
        with translate_errors(self.redis):
            return inspector_processes.read_redis_info(self.redis)

    def _unique_of(self, queue: str, task_id: str) -> str | None:
        return task_actions.unique(self.redis, self.keys(queue), task_id)

    def _run(self, call: Call, queue: str, task_id: str) -> Any:
        return task_actions.run(self.redis, call, queue, task_id)


def _usable_queue(raw: bytes | str) -> str | None:
    """A registry member as a queue name, or None (logged) if no queue can have that name:
    one bad member, planted or left by a bug, must not fail every list of queues."""
    try:
        return check_stored_queue(raw.decode() if isinstance(raw, bytes) else raw)
    except (UnicodeDecodeError, ValidationError) as exc:
        log.warning("skipping %r in the queue registry: %s", raw, exc)
        return None
