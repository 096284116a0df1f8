"""``AsyncClient``: enqueues tasks from asyncio code, the same surface as the sync ``Client``.

It awaits what :class:`~rq_sched.producer.Producer` builds; plain enqueues awaited together go
to Redis in one pipeline per loop turn (:mod:`rq_sched.coalesce`), and concurrent enqueues
share one read of the shard map. Import it from :mod:`rq_sched` or :mod:`rq_sched.client`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

from rq_sched import batch, dedup, producer, results, scripts, workflows
from rq_sched.clock import Clock, to_ms
from rq_sched.coalesce import Coalescer
from rq_sched.connection import aconnect, translate_errors
from rq_sched.durability import DEFAULT_REPLICA_TIMEOUT, ReplicaWait, arun_confirmed
from rq_sched.errors import DUPLICATE
from rq_sched.flow import FlowLimits, set_flow
from rq_sched.keys import DEFAULT_NAMESPACE
from rq_sched.models import NewTask, TaskInfo
from rq_sched.options import DEFAULT_MAX_PAYLOAD_BYTES, Prepared
from rq_sched.producer import Producer
from rq_sched.results import Decode
from rq_sched.scripts import AnyAsyncRedis, Call

__all__ = ["AsyncClient"]


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
        self._p = Producer(
            namespace=namespace,
            max_payload_bytes=max_payload_bytes,
            clock=clock,
            replicas=replicas,
            replica_timeout=replica_timeout,
        )
        self._calls = Coalescer(redis)
        """Enqueues awaited concurrently go to Redis together, one pipeline per loop turn."""
        self._map_lock: asyncio.Lock | None = None
        """Made on first use, inside the event loop the client runs in."""

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
        task = await self._placed(
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
            await self._register([task.queue])
            if one.steps is not None:
                await workflows.arun_steps(self.redis, one.steps)
            elif one.call is not None:
                run = self._calls.run if one.plain else self._arun
                reply, confirmed = await self._run_one(one.call, one.wait, run)
        return one.result(reply, confirmed)

    async def _arun(self, script: scripts.Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await scripts.arun(self.redis, script, keys, args)

    async def _run_one(
        self, call: Call, wait: ReplicaWait, plain: Callable[..., Awaitable[Any]]
    ) -> tuple[Any, int]:
        """:meth:`Client._run_one`, awaited; ``plain`` takes the call's script, keys, args."""
        if not wait.replicas:
            return await plain(*call), 0
        return producer.first_reply(*await arun_confirmed(self.redis, [call], wait))

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
        wait = self._p.wait.per_call(replicas)
        confirmed = 0
        with translate_errors(self.redis, writing=f"{len(ready)} tasks"):
            await self._register(t.queue for t in plan.prepared)
            if wait.replicas:
                raw, confirmed = await arun_confirmed(self.redis, plan.calls, wait)
            else:
                raw = await scripts.arun_pipeline(self.redis, plan.calls)
            kept = await batch.akept_ids(self.redis, plan.dropped(raw))
        now_ms = to_ms(self._p.clock.now())
        infos = [t.info(now_ms) for t in plan.prepared]
        return producer.many_result(plan, raw, infos, kept, wait=wait, confirmed=confirmed)

    async def chain(self, tasks: Sequence[NewTask]) -> workflows.Chain:
        """Enqueue a chain; see :meth:`Client.chain`."""
        links = await self._placed_all(producer.new_tasks(tasks))
        with translate_errors(self.redis, writing=f"a chain of {len(links)} tasks"):
            await self._register(t.queue for t in links)
            await workflows.arun_steps(self.redis, workflows.chain_steps(self._p.namespace, links))
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
        policy = workflows.check_policy(on_member_failure, "on_member_failure")
        *prepared, final = await self._placed_all(producer.group_tasks(members, callback))
        with translate_errors(self.redis, writing=f"a group of {len(prepared)} tasks"):
            await self._register(t.queue for t in (*prepared, final))
            steps = workflows.group_steps(self._p.namespace, prepared, final, policy)
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
        keys = self._p.located(queue, task_id)
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
        new, _ = self._p.dedup_task(
            "debounce", type, payload, key=key, window=window, options={"queue": queue, **options}
        )
        task = await self._placed(new, key)
        with translate_errors(self.redis, writing=f"task {task.id!r}"):
            await self._register([task.queue])
            call = dedup.debounce_call(self._p.keys(task.queue), task, key)
            reply = await scripts.arun(self.redis, *call)
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
        new, window_ms = self._p.dedup_task(
            "throttle", type, payload, key=key, window=window, options={"queue": queue, **options}
        )
        task = await self._placed(new, key)
        keys = self._p.keys(task.queue)
        kept: Any = None
        with translate_errors(self.redis, writing=f"task {task.id!r}"):
            await self._register([task.queue])
            code = await scripts.arun(self.redis, *dedup.throttle_call(keys, task, key, window_ms))
            if code == DUPLICATE:
                kept = await self.redis.get(keys.throttle(key))
        return producer.throttled(task, code, kept)

    async def set_flow(self, queue: str, limits: FlowLimits | None) -> None:
        """See :meth:`Client.set_flow`."""
        keys, checked = self._p.flow_change(queue, limits)
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
            self._p.registered(new)

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
