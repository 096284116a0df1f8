"""The producer: ``Client`` (sync) and ``AsyncClient`` (asyncio) enqueue tasks.

Both share :class:`_Producer`, which validates arguments and builds script calls; the two
classes differ only in how they run those calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

from rq_sched import aggregation, batch, dedup, ops, results, scripts, shards, workflows
from rq_sched.clock import Clock, to_ms, use_clock
from rq_sched.coalesce import Coalescer
from rq_sched.connection import aconnect, connect, translate_errors
from rq_sched.durability import (
    DEFAULT_REPLICA_TIMEOUT,
    ReplicaWait,
    arun_confirmed,
    run_confirmed,
)
from rq_sched.errors import (
    DUPLICATE,
    EnqueueManyError,
    ValidationError,
    error_for_code,
)
from rq_sched.flow import FlowLimits, check_limits, set_flow
from rq_sched.keys import DEFAULT_NAMESPACE, GlobalKeys, QueueKeys, check_namespace
from rq_sched.models import NewTask, TaskInfo
from rq_sched.options import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    Prepared,
    check_stored_queue,
    prepare,
    refuse_key_with,
)
from rq_sched.results import Decode
from rq_sched.scripts import AnyAsyncRedis, Call, SyncRedis

__all__ = ["AsyncClient", "Client", "EnqueueManyError"]


class _Producer:
    """What both clients share: configuration, validation and building the calls."""

    def __init__(self, *, namespace: str, max_payload_bytes: int, clock: Clock | None) -> None:
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

    def keys(self, queue: str) -> QueueKeys:
        found = self._keys.get(queue)
        if found is None:
            found = self._keys[queue] = QueueKeys(self.namespace, queue)
        return found

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

    def refuse_sharded_flow(self, queue: str) -> None:
        """Raise for flow limits on a sharded queue.

        Raises:
            ValidationError: ``queue`` is sharded (a limit kept per shard would not be the
                queue's limit).
        """
        if self.shard_map.n(queue) > 1:
            raise ValidationError(
                f"queue {queue!r} is sharded: flow limits cannot span its shards (each is its "
                "own slot); limit an unsharded queue, or set the queue back to 1 shard"
            )

    def unregistered(self, queues: Iterable[str]) -> list[str]:
        """Queues this client has not yet added to the registry of queue names."""
        return sorted({q for q in queues if q not in self._registered})

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


class Client:
    """Enqueues tasks (sync).

    Example::

        client = Client.from_url("redis://localhost:6379/0")
        info = client.enqueue("email:welcome", {"user": 42}, process_in=timedelta(minutes=5))

    ``replicas=N`` makes every enqueue wait until N replicas confirmed it (at most
    ``replica_timeout``), else raise :class:`~rq_sched.errors.ReplicationError`; see
    :mod:`rq_sched.durability`.
    """

    def __init__(
        self,
        redis: SyncRedis,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        clock: Clock | None = None,
        replicas: int = 0,
        replica_timeout: timedelta | float = DEFAULT_REPLICA_TIMEOUT,
    ) -> None:
        self.redis = redis
        self._p = _Producer(namespace=namespace, max_payload_bytes=max_payload_bytes, clock=clock)
        self._wait = ReplicaWait.build(replicas, replica_timeout)

    @property
    def namespace(self) -> str:
        """The key namespace this client writes under."""
        return self._p.namespace

    @property
    def clock(self) -> Clock:
        """The clock that dates this client's tasks."""
        return self._p.clock

    @classmethod
    def from_url(cls, url: str, *, cluster: bool = False, **options: Any) -> Self:
        """A client on its own connection pool to ``url``; ``close()`` releases it."""
        return cls(connect(url, cluster=cluster), **options)

    def enqueue(
        self,
        type: str,
        payload: Any = None,
        *,
        queue: str = "default",
        process_in: timedelta | float | None = None,
        process_at: datetime | None = None,
        max_retry: int = 25,
        timeout: timedelta | float | None = None,
        deadline: datetime | None = None,
        unique: timedelta | float | None = None,
        task_id: str | None = None,
        retention: timedelta | float | None = None,
        headers: dict[str, str] | None = None,
        key: str | None = None,
        shard_key: str | None = None,
        depends_on: Sequence[workflows.ParentRef] | None = None,
        on_parent_failure: workflows.Policy = "cancel",
        group: str | None = None,
        replicas: int | None = None,
    ) -> TaskInfo:
        """Enqueue one task, ready now or at ``process_at`` / after ``process_in``.

        Args:
            type: the task type, which selects the handler.
            payload: anything msgpack encodes (bytes stay bytes).
            queue: the queue name.
            process_in: delay (timedelta or seconds) before the task becomes ready.
            process_at: aware datetime at which the task becomes ready.
            max_retry: failed attempts retried before the task is archived.
            timeout: how long one attempt may run.
            deadline: aware datetime after which the task is not run any more.
            unique: lock TTL; while locked, a task with the same type and payload is refused.
            task_id: your own id; enqueueing the same id again while it is live is refused.
            retention: keep the task as completed this long after success.
            headers: str -> str metadata passed to the handler.
            key: fairness key, e.g. ``"tenant:42"``: the queue serves its keys round robin,
                so one key's backlog cannot starve another's, and applies the per-key limits
                of its flow limits (``FlowLimits(key_concurrency=1)``: one at a time, in
                order). Not with ``depends_on`` or ``group``. See docs/flow.md.
            shard_key: on a sharded queue, tasks with the same key go to the same shard (so
                they keep their relative order there); ignored on a queue with one shard.
                Not with ``task_id``, ``unique`` or ``group`` (each picks the shard itself).
            depends_on: parents (ids in ``queue``, or ``(queue, id)`` pairs): the task is held
                until every parent is final, then becomes pending with their outcomes in
                ``task.parents`` (see docs/workflows.md).
            on_parent_failure: with ``depends_on``: ``"cancel"`` archives the task unrun when
                a parent ends archived or deleted; ``"run"`` runs it anyway.
            group: add the task to this aggregation group of ``queue``: the router's
                aggregator turns the group's tasks into one task (see docs/workflows.md).
            replicas: this many replicas must confirm the write (``WAIT``) before it counts as
                done; None: the client's ``replicas=`` (default 0, no wait). Not with
                ``depends_on`` (a held task's steps may span slots). See
                :mod:`rq_sched.durability`.

        Returns:
            The new task's :class:`TaskInfo` (a held task's state reads pending).

        Raises:
            ValidationError: bad arguments (the message says which).
            PayloadTooLargeError: the task is larger than ``max_payload_bytes``.
            TaskIdConflictError: ``task_id`` is used by a live task.
            DuplicateTaskError: a ``unique`` lock for this type and payload is held.
            TaskNotFoundError: a parent in ``depends_on`` is not live, held or kept.
            RedisUnavailableError: Redis cannot be reached.
            WriteRefusedError: Redis refused the write (e.g. out of memory under ``maxmemory``).
            ReplicationError: written, but fewer than ``replicas`` replicas confirmed it in
                time: it may or may not survive a failover (``.results`` is the TaskInfo).
        """
        p = self._p
        task = self._placed(
            NewTask(
                type=type, payload=payload, queue=queue, process_in=process_in,
                process_at=process_at, max_retry=max_retry, timeout=timeout, deadline=deadline,
                unique=unique, task_id=task_id, retention=retention, headers=headers, key=key,
                shard_key=shard_key,
            ),
            group,
        )  # fmt: skip
        refuse_key_with(key, depends_on, group)
        wait = self._wait.per_call(replicas, held=depends_on is not None)
        if group is not None:
            call = p.grouped(task, group, depends_on)
            with translate_errors(self.redis, writing=f"task {task.id!r}"):
                self._register([task.queue])
                _, confirmed = self._run_one(call, wait, scripts.run)
            info = task.info(task.message.enqueued_at)
            wait.check(confirmed, f"task {task.id!r} was", info)
            return info
        if depends_on is not None:
            steps = p.hold(task, depends_on, on_parent_failure, queue)
            with translate_errors(self.redis, writing=f"task {task.id!r}"):
                self._register([task.queue])
                workflows.run_steps(self.redis, steps)
            return task.info(task.message.enqueued_at)
        call = ops.enqueue(p.keys(task.queue), task)
        with translate_errors(self.redis, writing=f"task {task.id!r}"):
            if task.queue not in p._registered:
                self._register([task.queue])
            code, confirmed = self._run_one(call, wait, scripts.run_resendable)
        if code < 0:
            raise error_for_code(code, queue=task.queue, task_id=task.id)
        info = task.info(task.message.enqueued_at)
        wait.check(confirmed, f"task {task.id!r} was", info)
        return info

    def _run_one(self, call: Call, wait: ReplicaWait, plain: Callable[..., Any]) -> tuple[Any, int]:
        """``call``'s reply, by ``plain`` or, with ``wait``, followed by WAIT; and the replicas
        that confirmed it (0 without a wait)."""
        if not wait.replicas:
            return plain(self.redis, *call), 0
        [reply], confirmed = run_confirmed(self.redis, [call], wait)
        if isinstance(reply, BaseException):
            raise reply
        return reply, confirmed

    def enqueue_many(
        self, tasks: Iterable[NewTask], *, replicas: int | None = None
    ) -> batch.Enqueued:
        """Enqueue many tasks in one round trip (batched per queue); ``replicas`` as for
        :meth:`enqueue` (one ``WAIT`` per connection, after the whole batch).

        An item with ``debounce=`` or ``throttle=`` (and ``window=``) behaves as
        :meth:`debounce` / :meth:`throttle` would, and items sharing a key act in batch order
        (a later debounce item replaces an earlier one's message; a later throttle item is
        dropped). See :mod:`rq_sched.batch`.

        Returns:
            An :class:`~rq_sched.batch.Enqueued`: a list with one :class:`TaskInfo` per task,
            in order, whose ``outcomes`` hold each item's :class:`~rq_sched.dedup.Debounced`
            or :class:`~rq_sched.dedup.Throttled` (None for plain items).

        Raises:
            ValidationError: a task's arguments are bad (nothing was enqueued); the message
                names the item (``enqueue_many item 3: ...``).
            EnqueueManyError: some tasks were refused (conflict, duplicate, or Redis refused
                their batch); the rest were enqueued, and ``.results`` says which is which.
            RedisUnavailableError: Redis cannot be reached.
            WriteRefusedError: Redis refused every write (e.g. out of memory under ``maxmemory``).
            ReplicationError: written, but fewer than ``replicas`` replicas confirmed the
                batch in time (``.results`` holds each task's outcome).
        """
        task_list = list(tasks)
        if not task_list:
            return batch.Enqueued()
        ready, asked = self._p.prepare_many(task_list)
        self._route()  # after the checks: bad input is refused without a round trip
        plan = self._p.plan_many(task_list, ready, asked)
        infos: list[TaskInfo] = []
        now_ms = to_ms(self._p.clock.now())
        wait = self._wait.per_call(replicas)
        # An error reply here is the queue registry write refused (batches report per call).
        with translate_errors(self.redis, writing=f"{len(ready)} tasks"):
            self._register(t.queue for t in plan.prepared)
            if wait.replicas:
                raw, confirmed = run_confirmed(self.redis, plan.calls, wait)
                infos.extend(t.info(now_ms) for t in plan.prepared)
                kept = batch.kept_ids(self.redis, plan.dropped(raw))
                return wait.settle(
                    confirmed,
                    f"{len(ready)} tasks were",
                    lambda: batch.results(plan, raw, infos, kept),
                )
            # The TaskInfo objects are built while Redis runs the batch.
            raw = scripts.run_pipeline(
                self.redis, plan.calls, lambda: infos.extend(t.info(now_ms) for t in plan.prepared)
            )
            kept = batch.kept_ids(self.redis, plan.dropped(raw))
        return batch.results(plan, raw, infos, kept)

    def chain(self, tasks: Sequence[NewTask]) -> workflows.Chain:
        """Enqueue tasks that run one after another, in one call.

        Each link waits for the one before (``depends_on`` with the "cancel" policy) and reads
        its result as ``task.parent_results()[0]``. A link that ends archived ends the chain:
        the links after it are archived unrun with a ``DependencyFailedError`` naming it, and
        :meth:`chain_status` says where the chain stopped. Links may live in different queues.

        Raises:
            ValidationError: fewer than 2 tasks, a later link with ``process_in`` /
                ``process_at`` or ``unique``, or the same task twice (nothing written).
            TaskIdConflictError: a link's ``task_id`` is taken (nothing written).
            RedisUnavailableError: Redis cannot be reached.
        """
        p = self._p
        links = self._placed_all(_new_tasks(tasks))
        with translate_errors(self.redis, writing=f"a chain of {len(links)} tasks"):
            self._register(t.queue for t in links)
            workflows.run_steps(self.redis, workflows.chain_steps(p.namespace, links))
        return workflows.Chain([t.info(t.message.enqueued_at) for t in links])

    def chain_status(self, chain: workflows.Chain) -> workflows.ChainStatus:
        """Where ``chain`` is: running, completed, or failed at which link with which error."""
        with translate_errors(self.redis):
            steps = workflows.chain_status_steps(self._p.namespace, chain)
            status: workflows.ChainStatus = workflows.run_steps(self.redis, steps)
        return status

    def group(
        self,
        members: Sequence[NewTask],
        callback: NewTask,
        *,
        on_member_failure: workflows.Policy = "run",
    ) -> workflows.Group:
        """Enqueue ``members`` and a ``callback`` that becomes pending exactly once, when every
        member is final (Celery's chord, BullMQ's parent job).

        The callback reads the members' results in order as ``task.parent_results()`` (and
        their outcomes as ``task.parents``). ``on_member_failure``: "run" runs it anyway with
        the failures listed; "cancel" archives it unrun. Members may live in different queues
        (and Redis Cluster slots).

        Raises:
            ValidationError: no members, a unique member, a callback with ``process_in`` /
                ``process_at`` or ``unique``, or the same task twice (nothing written).
            TaskIdConflictError: a member's or the callback's ``task_id`` is taken (nothing
                written).
            RedisUnavailableError: Redis cannot be reached.
        """
        p = self._p
        policy = workflows.check_policy(on_member_failure, "on_member_failure")
        *prepared, final = self._placed_all([*_new_tasks(members), *_new_tasks([callback])[:1]])
        with translate_errors(self.redis, writing=f"a group of {len(prepared)} tasks"):
            self._register(t.queue for t in (*prepared, final))
            steps = workflows.group_steps(p.namespace, prepared, final, policy)
            workflows.run_steps(self.redis, steps)
        return workflows.Group(
            [t.info(t.message.enqueued_at) for t in prepared],
            final.info(final.message.enqueued_at),
        )

    def wait_result(
        self,
        queue: str,
        task_id: str,
        timeout: timedelta | float,
        *,
        decode: Decode | None = None,
    ) -> Any:
        """Block until the task reaches a final state and return its result.

        Waiting does not poll: it sleeps on a notification that the script ending the task
        publishes (see :mod:`rq_sched.results`), so it wakes within milliseconds.

        Args:
            queue: the task's queue.
            task_id: the task's id.
            timeout: longest wait (timedelta or seconds).
            decode: applied to the stored result bytes, e.g.
                :func:`rq_sched.results.unpack_result` for a handler that returned a value
                other than bytes or str (stored as msgpack), or ``bytes.decode`` for a str.

        Returns:
            The result bytes (decoded by ``decode`` if given); None when the task completed
            without a result, or without ``retention`` (nothing was kept).

        Raises:
            TaskFailedError: the task ended archived: ``.error`` holds its error text and
                ``.cancelled`` says whether it was cancelled.
            TaskNotFoundError: no such task (never enqueued, or it finished and was not kept:
                enqueue with ``retention`` to wait for results), or it was deleted meanwhile.
            WaitTimeoutError: not final within ``timeout`` (the task goes on).
            ValidationError: bad ``task_id`` or ``timeout``.
            RedisUnavailableError: Redis cannot be reached.
        """
        self._route()
        keys = self._p.keys(self._p.shard_map.resolve(queue, task_id))
        return results.wait_result(self.redis, keys, task_id, timeout, decode)

    def debounce(
        self,
        type: str,
        payload: Any = None,
        *,
        key: str,
        window: timedelta | float,
        queue: str = "default",
        **options: Any,
    ) -> dedup.Debounced:
        """Enqueue a task that runs ``window`` from now, unless one already waits under
        ``key`` in ``queue``: that one then gets this call's type, payload and options (the
        newest wins) and still runs at its time. ``options`` are ``enqueue``'s (not ``unique``,
        ``process_in`` or ``process_at``). See :mod:`rq_sched.dedup`.

        Raises:
            ValidationError: bad arguments (nothing written).
            RedisUnavailableError: Redis cannot be reached.
        """
        window_ms = dedup.check_window(window)
        dedup.check_key(key)
        p = self._p
        task = self._placed(
            dedup.new_task("debounce", type, payload, window_ms, {"queue": queue, **options}), key
        )
        with translate_errors(self.redis, writing=f"task {task.id!r}"):
            if task.queue not in p._registered:
                self._register([task.queue])
            reply = scripts.run(self.redis, *dedup.debounce_call(p.keys(task.queue), task, key))
        return dedup.debounced(reply, task)

    def throttle(
        self,
        type: str,
        payload: Any = None,
        *,
        key: str,
        window: timedelta | float,
        queue: str = "default",
        **options: Any,
    ) -> dedup.Throttled:
        """Enqueue a task unless one was enqueued under ``key`` in ``queue`` within the last
        ``window``: then this one is dropped, and the result says so and names the kept task.
        ``options`` are ``enqueue``'s (not ``unique``). See :mod:`rq_sched.dedup`.

        Raises:
            ValidationError: bad arguments (nothing written).
            TaskIdConflictError: ``task_id`` is used by a live task.
            RedisUnavailableError: Redis cannot be reached.
        """
        window_ms = dedup.check_window(window)
        dedup.check_key(key)
        p = self._p
        task = self._placed(
            dedup.new_task("throttle", type, payload, window_ms, {"queue": queue, **options}), key
        )
        keys = p.keys(task.queue)
        with translate_errors(self.redis, writing=f"task {task.id!r}"):
            if task.queue not in p._registered:
                self._register([task.queue])
            code = scripts.run(self.redis, *dedup.throttle_call(keys, task, key, window_ms))
            if code == DUPLICATE:
                kept = self.redis.get(keys.throttle(key))
                kept_id = kept.decode() if isinstance(kept, bytes) else kept
                return dedup.Throttled(kept_id, dropped=True)
        if code < 0:
            raise error_for_code(code, queue=task.queue, task_id=task.id)
        return dedup.Throttled(task.id, dropped=False)

    def set_flow(self, queue: str, limits: FlowLimits | None) -> None:
        """Set the flow limits of ``queue`` (a rate limit and a concurrency cap across all
        workers, see :mod:`rq_sched.flow`); None removes them. Workers obey them from their
        next dequeue.

        Raises:
            ValidationError: a bad queue name or ``limits``, or a sharded queue (nothing
                written).
            RedisUnavailableError: Redis cannot be reached.
        """
        keys = self._p.keys(check_stored_queue(queue))
        checked = FlowLimits() if limits is None else check_limits(limits)
        self._route()
        self._p.refuse_sharded_flow(queue)
        with translate_errors(self.redis, writing="flow limits"):
            self._register([keys.queue])
            scripts.run(self.redis, *set_flow(keys, checked))

    def _placed(self, task: NewTask, key: object = None) -> Prepared:
        """``task`` validated, then placed in its shard (the map is read after the checks, so
        bad input is refused without a round trip)."""
        ready = self._p.prepare(task, key=key)
        self._route()
        return self._p.place(task, ready, key)

    def _placed_all(self, tasks: list[NewTask]) -> list[Prepared]:
        """Every task of a workflow validated, then each placed in its shard."""
        ready = [self._p.prepare(t) for t in tasks]
        self._route()
        return [self._p.place(t, r) for t, r in zip(tasks, ready, strict=True)]

    def _route(self) -> None:
        """Read the shard map again when this client's copy is older than ``REFRESH_S``."""
        shard_map = self._p.shard_map
        if shard_map.stale():
            with translate_errors(self.redis):
                shard_map.update(self.redis.hgetall(self._p.global_keys.shards))

    def _register(self, queues: Iterable[str]) -> None:
        new = self._p.unregistered(queues)
        if new:
            self.redis.sadd(self._p.global_keys.queues, *new)
            self._p._registered.update(new)

    def close(self) -> None:
        """Close the connection pool."""
        self.redis.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient:
    """Enqueues tasks from asyncio code; the same surface as :class:`Client`, awaited."""

    def __init__(
        self,
        redis: AnyAsyncRedis,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        clock: Clock | None = None,
        replicas: int = 0,
        replica_timeout: timedelta | float = DEFAULT_REPLICA_TIMEOUT,
    ) -> None:
        self.redis = redis
        self._p = _Producer(namespace=namespace, max_payload_bytes=max_payload_bytes, clock=clock)
        self._calls = Coalescer(redis)
        """Enqueues awaited concurrently go to Redis together, one pipeline per loop turn."""
        self._map_lock: asyncio.Lock | None = None
        """Made on first use, inside the event loop the client runs in."""
        self._wait = ReplicaWait.build(replicas, replica_timeout)

    @property
    def namespace(self) -> str:
        """The key namespace this client writes under."""
        return self._p.namespace

    @property
    def clock(self) -> Clock:
        """The clock that dates this client's tasks."""
        return self._p.clock

    @classmethod
    def from_url(cls, url: str, *, cluster: bool = False, **options: Any) -> Self:
        """A client on its own connection pool to ``url``; ``await close()`` releases it."""
        return cls(aconnect(url, cluster=cluster), **options)

    async def enqueue(
        self,
        type: str,
        payload: Any = None,
        *,
        queue: str = "default",
        process_in: timedelta | float | None = None,
        process_at: datetime | None = None,
        max_retry: int = 25,
        timeout: timedelta | float | None = None,
        deadline: datetime | None = None,
        unique: timedelta | float | None = None,
        task_id: str | None = None,
        retention: timedelta | float | None = None,
        headers: dict[str, str] | None = None,
        key: str | None = None,
        shard_key: str | None = None,
        depends_on: Sequence[workflows.ParentRef] | None = None,
        on_parent_failure: workflows.Policy = "cancel",
        group: str | None = None,
        replicas: int | None = None,
    ) -> TaskInfo:
        """Enqueue one task; see :meth:`Client.enqueue` for arguments, result and errors."""
        p = self._p
        task = await self._placed(
            NewTask(
                type=type, payload=payload, queue=queue, process_in=process_in,
                process_at=process_at, max_retry=max_retry, timeout=timeout, deadline=deadline,
                unique=unique, task_id=task_id, retention=retention, headers=headers, key=key,
                shard_key=shard_key,
            ),
            group,
        )  # fmt: skip
        refuse_key_with(key, depends_on, group)
        wait = self._wait.per_call(replicas, held=depends_on is not None)
        if group is not None:
            call = p.grouped(task, group, depends_on)
            with translate_errors(self.redis, writing=f"task {task.id!r}"):
                await self._register([task.queue])
                _, confirmed = await self._run_one(call, wait, self._arun)
            info = task.info(task.message.enqueued_at)
            wait.check(confirmed, f"task {task.id!r} was", info)
            return info
        if depends_on is not None:
            steps = p.hold(task, depends_on, on_parent_failure, queue)
            with translate_errors(self.redis, writing=f"task {task.id!r}"):
                await self._register([task.queue])
                await workflows.arun_steps(self.redis, steps)
            return task.info(task.message.enqueued_at)
        call = ops.enqueue(p.keys(task.queue), task)
        with translate_errors(self.redis, writing=f"task {task.id!r}"):
            if task.queue not in p._registered:
                await self._register([task.queue])
            code, confirmed = await self._run_one(call, wait, self._calls.run)
        if code < 0:
            raise error_for_code(code, queue=task.queue, task_id=task.id)
        info = task.info(task.message.enqueued_at)
        wait.check(confirmed, f"task {task.id!r} was", info)
        return info

    async def _arun(self, script: scripts.Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await scripts.arun(self.redis, script, keys, args)

    async def _run_one(
        self, call: Call, wait: ReplicaWait, plain: Callable[..., Awaitable[Any]]
    ) -> tuple[Any, int]:
        """:meth:`Client._run_one`, awaited; ``plain`` takes the call's script, keys, args."""
        if not wait.replicas:
            return await plain(*call), 0
        [reply], confirmed = await arun_confirmed(self.redis, [call], wait)
        if isinstance(reply, BaseException):
            raise reply
        return reply, confirmed

    async def enqueue_many(
        self, tasks: Iterable[NewTask], *, replicas: int | None = None
    ) -> batch.Enqueued:
        """Enqueue many tasks; see :meth:`Client.enqueue_many`."""
        task_list = list(tasks)
        if not task_list:
            return batch.Enqueued()
        ready, asked = self._p.prepare_many(task_list)
        await self._route()  # after the checks: bad input is refused without a round trip
        plan = self._p.plan_many(task_list, ready, asked)
        wait = self._wait.per_call(replicas)
        with translate_errors(self.redis, writing=f"{len(ready)} tasks"):
            await self._register(t.queue for t in plan.prepared)
            if wait.replicas:
                raw, confirmed = await arun_confirmed(self.redis, plan.calls, wait)
            else:
                raw = await scripts.arun_pipeline(self.redis, plan.calls)
            kept = await batch.akept_ids(self.redis, plan.dropped(raw))
        now_ms = to_ms(self._p.clock.now())
        infos = [t.info(now_ms) for t in plan.prepared]
        if wait.replicas:
            return wait.settle(
                confirmed,
                f"{len(ready)} tasks were",
                lambda: batch.results(plan, raw, infos, kept),
            )
        return batch.results(plan, raw, infos, kept)

    async def chain(self, tasks: Sequence[NewTask]) -> workflows.Chain:
        """Enqueue a chain; see :meth:`Client.chain`."""
        p = self._p
        links = await self._placed_all(_new_tasks(tasks))
        with translate_errors(self.redis, writing=f"a chain of {len(links)} tasks"):
            await self._register(t.queue for t in links)
            await workflows.arun_steps(self.redis, workflows.chain_steps(p.namespace, links))
        return workflows.Chain([t.info(t.message.enqueued_at) for t in links])

    async def chain_status(self, chain: workflows.Chain) -> workflows.ChainStatus:
        """Where ``chain`` is; see :meth:`Client.chain_status`."""
        with translate_errors(self.redis):
            steps = workflows.chain_status_steps(self._p.namespace, chain)
            status: workflows.ChainStatus = await workflows.arun_steps(self.redis, steps)
        return status

    async def group(
        self,
        members: Sequence[NewTask],
        callback: NewTask,
        *,
        on_member_failure: workflows.Policy = "run",
    ) -> workflows.Group:
        """Enqueue a group and its callback; see :meth:`Client.group`."""
        p = self._p
        policy = workflows.check_policy(on_member_failure, "on_member_failure")
        *prepared, final = await self._placed_all(
            [*_new_tasks(members), *_new_tasks([callback])[:1]]
        )
        with translate_errors(self.redis, writing=f"a group of {len(prepared)} tasks"):
            await self._register(t.queue for t in (*prepared, final))
            steps = workflows.group_steps(p.namespace, prepared, final, policy)
            await workflows.arun_steps(self.redis, steps)
        return workflows.Group(
            [t.info(t.message.enqueued_at) for t in prepared],
            final.info(final.message.enqueued_at),
        )

    async def wait_result(
        self,
        queue: str,
        task_id: str,
        timeout: timedelta | float,
        *,
        decode: Decode | None = None,
    ) -> Any:
        """Wait until the task reaches a final state and return its result; see
        :meth:`Client.wait_result` for arguments, result and errors."""
        await self._route()
        keys = self._p.keys(self._p.shard_map.resolve(queue, task_id))
        return await results.await_result(self.redis, keys, task_id, timeout, decode)

    async def debounce(
        self,
        type: str,
        payload: Any = None,
        *,
        key: str,
        window: timedelta | float,
        queue: str = "default",
        **options: Any,
    ) -> dedup.Debounced:
        """See :meth:`Client.debounce`."""
        window_ms = dedup.check_window(window)
        dedup.check_key(key)
        p = self._p
        task = await self._placed(
            dedup.new_task("debounce", type, payload, window_ms, {"queue": queue, **options}), key
        )
        with translate_errors(self.redis, writing=f"task {task.id!r}"):
            if task.queue not in p._registered:
                await self._register([task.queue])
            reply = await scripts.arun(
                self.redis, *dedup.debounce_call(p.keys(task.queue), task, key)
            )
        return dedup.debounced(reply, task)

    async def throttle(
        self,
        type: str,
        payload: Any = None,
        *,
        key: str,
        window: timedelta | float,
        queue: str = "default",
        **options: Any,
    ) -> dedup.Throttled:
        """See :meth:`Client.throttle`."""
        window_ms = dedup.check_window(window)
        dedup.check_key(key)
        p = self._p
        task = await self._placed(
            dedup.new_task("throttle", type, payload, window_ms, {"queue": queue, **options}), key
        )
        keys = p.keys(task.queue)
        with translate_errors(self.redis, writing=f"task {task.id!r}"):
            if task.queue not in p._registered:
                await self._register([task.queue])
            code = await scripts.arun(self.redis, *dedup.throttle_call(keys, task, key, window_ms))
            if code == DUPLICATE:
                kept = await self.redis.get(keys.throttle(key))
                kept_id = kept.decode() if isinstance(kept, bytes) else kept
                return dedup.Throttled(kept_id, dropped=True)
        if code < 0:
            raise error_for_code(code, queue=task.queue, task_id=task.id)
        return dedup.Throttled(task.id, dropped=False)

    async def set_flow(self, queue: str, limits: FlowLimits | None) -> None:
        """See :meth:`Client.set_flow`."""
        keys = self._p.keys(check_stored_queue(queue))
        checked = FlowLimits() if limits is None else check_limits(limits)
        await self._route()
        self._p.refuse_sharded_flow(queue)
        with translate_errors(self.redis, writing="flow limits"):
            await self._register([keys.queue])
            await scripts.arun(self.redis, *set_flow(keys, checked))

    async def _placed(self, task: NewTask, key: object = None) -> Prepared:
        """See :meth:`Client._placed`."""
        ready = self._p.prepare(task, key=key)
        await self._route()
        return self._p.place(task, ready, key)

    async def _placed_all(self, tasks: list[NewTask]) -> list[Prepared]:
        """See :meth:`Client._placed_all`."""
        ready = [self._p.prepare(t) for t in tasks]
        await self._route()
        return [self._p.place(t, r) for t, r in zip(tasks, ready, strict=True)]

    async def _route(self) -> None:
        """See :meth:`Client._route`; concurrent enqueues wait for one read, not one each."""
        shard_map = self._p.shard_map
        if not shard_map.stale():
            return
        if self._map_lock is None:
            self._map_lock = asyncio.Lock()
        async with self._map_lock:
            if shard_map.stale():  # not read meanwhile by the enqueue that held the lock
                with translate_errors(self.redis):
                    shard_map.update(await self.redis.hgetall(self._p.global_keys.shards))

    async def _register(self, queues: Iterable[str]) -> None:
        new = self._p.unregistered(queues)
        if new:
            await self.redis.sadd(self._p.global_keys.queues, *new)
            self._p._registered.update(new)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.redis.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _new_tasks(tasks: object) -> list[NewTask]:
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
