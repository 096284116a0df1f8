"""What the sync and the async client share: checking an enqueue and building its calls.

:class:`Producer` holds a client's configuration (namespace, payload limit, clock, replica
wait), validates each task, places it in its shard of a sharded queue and turns the request
into the script calls (or workflow steps) to run, and reads their replies back into results.
It does no I/O: :class:`~rq_sched.client.Client` and :class:`~rq_sched.client.AsyncClient`
run what it builds, each in its own way (blocking, or awaited and coalesced), so the two
classes stay thin and cannot drift apart. Not public API.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rq_sched import aggregation, batch, dedup, ops, shards, workflows
from rq_sched.clock import Clock, to_ms, use_clock
from rq_sched.durability import ReplicaWait
from rq_sched.errors import DUPLICATE, ValidationError, error_for_code
from rq_sched.flow import FlowLimits, check_limits, refuse_sharded
from rq_sched.keys import GlobalKeys, QueueKeys, check_namespace
from rq_sched.models import NewTask, TaskInfo
from rq_sched.options import Prepared, check_stored_queue, prepare, refuse_key_with
from rq_sched.scripts import Call


@dataclass(frozen=True, slots=True)
class Single:
    """One ``enqueue``, ready to run: a script ``call`` or, for a held task, ``steps`` (one of
    the two is set)."""

    task: Prepared
    wait: ReplicaWait
    call: Call | None = None
    steps: workflows.Steps | None = None
    plain: bool = False
    """A plain enqueue: its call may be resent, and its reply is a code to check."""

    def result(self, reply: Any, confirmed: int) -> TaskInfo:
        """The task's :class:`TaskInfo` from the call's ``reply`` and the replicas that
        confirmed it.

        Raises:
            RqSchedError: a plain enqueue's failure code (conflict, duplicate, ...).
            ReplicationError: fewer replicas than asked confirmed the write.
        """
        task = self.task
        if self.plain and reply < 0:
            raise error_for_code(reply, queue=task.queue, task_id=task.id)
        info = task.info(task.message.enqueued_at)
        self.wait.check(confirmed, f"task {task.id!r} was", info)
        return info


class Producer:
    """What both clients share: configuration, validation and building the calls."""

    def __init__(
        self,
        *,
        namespace: str,
        max_payload_bytes: int,
        clock: Clock | None,
        replicas: int,
        replica_timeout: timedelta | float,
    ) -> None:
        check_namespace(namespace)
        if (
            not isinstance(max_payload_bytes, int)
            or isinstance(max_payload_bytes, bool)
            or max_payload_bytes <= 0
        ):
            raise ValidationError(
                f"max_payload_bytes must be > 0 (an int of bytes), got {max_payload_bytes!r}"
            )
        self.namespace = namespace
        self.max_payload_bytes = max_payload_bytes
        self.clock: Clock = use_clock(clock)
        self.global_keys = GlobalKeys(namespace)
        self._keys: dict[str, QueueKeys] = {}
        self._registered: set[str] = set()
        self.shard_map = shards.ShardMap()
        self.wait = ReplicaWait.build(replicas, replica_timeout)

    def keys(self, queue: str) -> QueueKeys:
        found = self._keys.get(queue)
        if found is None:
            found = self._keys[queue] = QueueKeys(self.namespace, queue)
        return found

    def located(self, queue: str, task_id: str) -> QueueKeys:
        """The keys of the queue holding ``task_id`` of ``queue`` (its shard, if sharded)."""
        return self.keys(self.shard_map.resolve(queue, task_id))

    def prepare(self, task: NewTask, now_ms: int | None = None, *, key: object = None) -> Prepared:
        """Validate ``task`` and build its message (dated now unless ``now_ms`` is given);
        ``key`` is the routing key the call adds (a group name, a debounce or throttle key),
        checked against ``shard_key``. The task is not placed in a shard yet: see :meth:`place`.
        """
        if now_ms is None:
            now_ms = to_ms(self.clock.now())
        if task.shard_key is not None:
            shards.check_shard_key(task.shard_key)
            if key is not None or task.unique is not None or task.task_id is not None:
                raise ValidationError(
                    "shard_key cannot be combined with task_id, unique, group, or a debounce "
                    "or throttle key: each of those picks the task's shard itself"
                )
        return prepare(task, now_ms=now_ms, max_payload_bytes=self.max_payload_bytes)

    def place(self, task: NewTask, ready: Prepared, key: object = None) -> Prepared:
        """``ready`` (``task`` validated by :meth:`prepare`) moved to its shard when its queue
        is sharded: by ``key`` (a group name, a debounce or throttle key), ``shard_key`` or its
        uniqueness digest when it has one, else by id or round-robin.

        Raises:
            ValidationError: an explicit ``task_id`` with a routing key, on a sharded queue.
        """
        if not self.shard_map.counts:
            return ready
        if task.shard_key is not None:
            key = task.shard_key
        route = key if isinstance(key, str) else ready.message.unique
        return self.shard_map.place(ready, explicit_id=task.task_id is not None, key=route)

    def single(
        self,
        task: Prepared,
        *,
        key: str | None,
        depends_on: Sequence[workflows.ParentRef] | None,
        on_parent_failure: object,
        group: str | None,
        queue: str,
        replicas: int | None,
    ) -> Single:
        """What ``enqueue`` runs for ``task`` (validated and placed): an aggregation group's
        call, a held task's steps, or the plain enqueue call (the remaining checks first)."""
        refuse_key_with(key, depends_on, group)
        wait = self.wait.per_call(replicas, held=depends_on is not None)
        if group is not None:
            return Single(task, wait, call=self.grouped(task, group, depends_on))
        if depends_on is not None:
            return Single(task, wait, steps=self.hold(task, depends_on, on_parent_failure, queue))
        return Single(task, wait, call=ops.enqueue(self.keys(task.queue), task), plain=True)

    def hold(
        self, task: Prepared, depends_on: Sequence[workflows.ParentRef], policy: object, queue: str
    ) -> workflows.Steps:
        """The steps enqueueing ``task`` held until its parents are final (checked first);
        bare parent ids are in ``queue``, and a sharded queue's parents are found in their
        shards."""
        parents = [
            (self.shard_map.resolve(q, i), i) for q, i in workflows.parent_refs(depends_on, queue)
        ]
        checked = workflows.check_policy(policy)
        workflows.check_holdable(task)
        return workflows.hold_steps(self.namespace, task, parents, checked)

    def grouped(self, task: Prepared, group: object, depends_on: object) -> Call:
        """The call adding ``task`` to aggregation group ``group`` (checked first)."""
        name = aggregation.check_group(group)
        if depends_on is not None:
            raise ValidationError("group= cannot be combined with depends_on")
        aggregation.check_groupable(task)
        return ops.enqueue_grouped(
            self.keys(task.queue),
            name,
            aggregation.entry(task),
            task.message.enqueued_at,
            aggregation.DEFAULT_LIMITS.as_ms(),
        )

    def dedup_task(
        self,
        kind: str,
        task_type: str,
        payload: Any,
        *,
        key: str,
        window: timedelta | float,
        options: dict[str, Any],
    ) -> tuple[NewTask, int]:
        """The task of a ``debounce`` or ``throttle`` call (``kind``) and its window in ms,
        every argument checked."""
        window_ms = dedup.check_window(window)
        dedup.check_key(key)
        return dedup.new_task(kind, task_type, payload, window_ms, options), window_ms

    def flow_change(self, queue: str, limits: FlowLimits | None) -> tuple[QueueKeys, FlowLimits]:
        """The keys of ``queue`` and the checked ``limits`` a ``set_flow`` stores (None: none).

        Raises:
            ValidationError: a bad queue name or ``limits``.
        """
        keys = self.keys(check_stored_queue(queue))
        return keys, FlowLimits() if limits is None else check_limits(limits)

    def refuse_sharded_flow(self, queue: str) -> None:
        """Raise for flow limits on a sharded queue.

        Raises:
            ValidationError: ``queue`` is sharded (a limit kept per shard would not be the
                queue's limit).
        """
        refuse_sharded(queue, self.shard_map.n(queue))

    def unregistered(self, queues: Iterable[str]) -> list[str]:
        """Queues this client has not yet added to the registry of queue names."""
        return sorted({q for q in queues if q not in self._registered})

    def registered(self, queues: Iterable[str]) -> None:
        """Note that ``queues`` are now in the registry of queue names."""
        self._registered.update(queues)

    def prepare_many(
        self, tasks: Sequence[object]
    ) -> tuple[list[Prepared], list[batch.Dedup | None]]:
        """Validate every item of an ``enqueue_many`` (all dated alike), placed nowhere yet,
        and the debounce or throttle each asks for; an error names the item."""
        now_ms = to_ms(self.clock.now())  # one enqueue time for the whole batch
        prepared: list[Prepared] = []
        asked: list[batch.Dedup | None] = []
        for index, item in enumerate(tasks):
            task, spec = batch.check_item(index, item)
            try:
                key = spec.key if spec else None
                prepared.append(self.prepare(batch.as_task(task, spec), now_ms, key=key))
            except ValidationError as exc:
                raise batch.item_error(index, exc) from exc
            asked.append(spec)
        return prepared, asked

    def plan_many(
        self, tasks: Sequence[NewTask], checked: Sequence[Prepared], asked: list[batch.Dedup | None]
    ) -> batch.Plan:
        """Place every prepared task in its shard and group them into calls."""
        prepared = [
            self.place(t, r, a.key if a else None)
            for t, r, a in zip(tasks, checked, asked, strict=True)
        ]
        return batch.plan(prepared, asked, self.keys)


def many_result(
    plan: batch.Plan,
    raw: Sequence[Any],
    infos: list[TaskInfo],
    kept: dict[int, str | None],
    *,
    wait: ReplicaWait,
    confirmed: int,
) -> batch.Enqueued:
    """The result of an ``enqueue_many`` from its replies, checked against ``wait``.

    Raises:
        EnqueueManyError: some tasks were refused.
        ReplicationError: fewer replicas than asked confirmed the batch.
    """
    if wait.replicas:
        return wait.settle(
            confirmed,
            f"{len(plan.prepared)} tasks were",
            lambda: batch.results(plan, raw, infos, kept),
        )
    return batch.results(plan, raw, infos, kept)


def first_reply(replies: list[Any], confirmed: int) -> tuple[Any, int]:
    """The reply of a confirmed run of one call (raised if it failed) and the replicas that
    confirmed it."""
    [reply] = replies
    if isinstance(reply, BaseException):
        raise reply
    return reply, confirmed


def throttled(task: Prepared, code: Any, kept: Any) -> dedup.Throttled:
    """The outcome of a ``throttle`` call from its reply ``code`` and, when it was dropped,
    the id ``kept`` in the throttle key (the task its window kept).

    Raises:
        RqSchedError: the call's failure code (e.g. a conflicting ``task_id``).
    """
    if code == DUPLICATE:
        kept_id = kept.decode() if isinstance(kept, bytes) else kept
        return dedup.Throttled(kept_id, dropped=True)
    if code < 0:
        raise error_for_code(code, queue=task.queue, task_id=task.id)
    return dedup.Throttled(task.id, dropped=False)


def new_tasks(tasks: object) -> list[NewTask]:
    """``tasks`` as a list of :class:`NewTask`.

    Raises:
        ValidationError: not a sequence of NewTask.
    """
    if isinstance(tasks, str | bytes) or not isinstance(tasks, Sequence):
        raise ValidationError(f"expected a list of NewTask, got {tasks!r}")
    for task in tasks:
        if not isinstance(task, NewTask):
            raise ValidationError(f"expected NewTask items, got {task!r}")
    return list(tasks)


def group_tasks(members: object, callback: object) -> list[NewTask]:
    """A ``group`` call's members and then its callback, each checked to be a NewTask."""
    return [*new_tasks(members), *new_tasks([callback])[:1]]
