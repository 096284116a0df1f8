"""The producer: ``Client`` enqueues tasks (sync); ``AsyncClient`` (asyncio) is re-exported here.

Both run what :class:`~rq_sched.producer.Producer` builds (validation, shard routing, the
script calls); ``Client`` runs it blocking, :mod:`rq_sched.async_client` awaited.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

from rq_sched import batch, dedup, producer, results, scripts, workflows
from rq_sched.async_client import AsyncClient
from rq_sched.clock import Clock, to_ms
from rq_sched.connection import connect, translate_errors
from rq_sched.durability import DEFAULT_REPLICA_TIMEOUT, ReplicaWait, run_confirmed
from rq_sched.errors import DUPLICATE, EnqueueManyError
from rq_sched.flow import FlowLimits, set_flow
from rq_sched.keys import DEFAULT_NAMESPACE
from rq_sched.models import NewTask, TaskInfo
from rq_sched.options import DEFAULT_MAX_PAYLOAD_BYTES, Prepared
from rq_sched.producer import Producer
from rq_sched.results import Decode
from rq_sched.scripts import Call, SyncRedis

__all__ = ["AsyncClient", "Client", "EnqueueManyError"]


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
        self._p = Producer(
            namespace=namespace,
            max_payload_bytes=max_payload_bytes,
            clock=clock,
            replicas=replicas,
            replica_timeout=replica_timeout,
        )

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
        task = self._placed(
            NewTask(
                type=type, payload=payload, queue=queue, process_in=process_in,
                process_at=process_at, max_retry=max_retry, timeout=timeout, deadline=deadline,
                unique=unique, task_id=task_id, retention=retention, headers=headers, key=key,
                shard_key=shard_key,
            ),
            group,
        )  # fmt: skip
        one = self._p.single(
            task, key=key, depends_on=depends_on, on_parent_failure=on_parent_failure,
            group=group, queue=queue, replicas=replicas,
        )  # fmt: skip
        reply: Any = 0
        confirmed = 0
        with translate_errors(self.redis, writing=f"task {task.id!r}"):
            self._register([task.queue])
            if one.steps is not None:
                workflows.run_steps(self.redis, one.steps)
            elif one.call is not None:
                run = scripts.run_resendable if one.plain else scripts.run
                reply, confirmed = self._run_one(one.call, one.wait, run)
        return one.result(reply, confirmed)

    def _run_one(self, call: Call, wait: ReplicaWait, plain: Callable[..., Any]) -> tuple[Any, int]:
        """``call``'s reply, by ``plain`` or, with ``wait``, followed by WAIT; and the replicas
        that confirmed it (0 without a wait)."""
        if not wait.replicas:
            return plain(self.redis, *call), 0
        return producer.first_reply(*run_confirmed(self.redis, [call], wait))

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
        wait = self._p.wait.per_call(replicas)
        confirmed = 0
        # An error reply here is the queue registry write refused (batches report per call).
        with translate_errors(self.redis, writing=f"{len(ready)} tasks"):
            self._register(t.queue for t in plan.prepared)
            if wait.replicas:
                raw, confirmed = run_confirmed(self.redis, plan.calls, wait)
                infos.extend(t.info(now_ms) for t in plan.prepared)
            else:  # the TaskInfo objects are built while Redis runs the batch
                raw = scripts.run_pipeline(
                    self.redis,
                    plan.calls,
                    lambda: infos.extend(t.info(now_ms) for t in plan.prepared),
                )
            kept = batch.kept_ids(self.redis, plan.dropped(raw))
        return producer.many_result(plan, raw, infos, kept, wait=wait, confirmed=confirmed)

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
        links = self._placed_all(producer.new_tasks(tasks))
        with translate_errors(self.redis, writing=f"a chain of {len(links)} tasks"):
            self._register(t.queue for t in links)
            workflows.run_steps(self.redis, workflows.chain_steps(self._p.namespace, links))
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
        policy = workflows.check_policy(on_member_failure, "on_member_failure")
        *prepared, final = self._placed_all(producer.group_tasks(members, callback))
        with translate_errors(self.redis, writing=f"a group of {len(prepared)} tasks"):
            self._register(t.queue for t in (*prepared, final))
            steps = workflows.group_steps(self._p.namespace, prepared, final, policy)
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
        keys = self._p.located(queue, task_id)
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
        new, _ = self._p.dedup_task(
            "debounce", type, payload, key=key, window=window, options={"queue": queue, **options}
        )
        task = self._placed(new, key)
        with translate_errors(self.redis, writing=f"task {task.id!r}"):
            self._register([task.queue])
            call = dedup.debounce_call(self._p.keys(task.queue), task, key)
            reply = scripts.run(self.redis, *call)
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
        new, window_ms = self._p.dedup_task(
            "throttle", type, payload, key=key, window=window, options={"queue": queue, **options}
        )
        task = self._placed(new, key)
        keys = self._p.keys(task.queue)
        kept: Any = None
        with translate_errors(self.redis, writing=f"task {task.id!r}"):
            self._register([task.queue])
            code = scripts.run(self.redis, *dedup.throttle_call(keys, task, key, window_ms))
            if code == DUPLICATE:
                kept = self.redis.get(keys.throttle(key))
        return producer.throttled(task, code, kept)

    def set_flow(self, queue: str, limits: FlowLimits | None) -> None:
        """Set the flow limits of ``queue`` (a rate limit and a concurrency cap across all
        workers, see :mod:`rq_sched.flow`); None removes them. Workers obey them from their
        next dequeue.

        Raises:
            ValidationError: a bad queue name or ``limits``, or a sharded queue (nothing
                written).
            RedisUnavailableError: Redis cannot be reached.
        """
        keys, checked = self._p.flow_change(queue, limits)
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
            self._p.registered(new)

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
