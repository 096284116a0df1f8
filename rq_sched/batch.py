"""``enqueue_many``: a batch of :class:`NewTask` items checked, planned into script calls, and
the replies read back into one result per item, debounce and throttle items included.

Plain items of one queue go into bounded ``enqueue_batch`` calls; an item with ``unique``, a
``debounce`` or a ``throttle`` key takes a call of its own, because its answer is its own. All
calls go to Redis in one pipeline. Items that share a dedup key in one queue live in one slot
(the key picks the shard of a sharded queue), and a pipeline keeps the order of the calls it
sends to one node (redis-py's cluster pipeline too), so such items run in batch order: a later
debounce item replaces the message an earlier one left waiting, and a later throttle item is
dropped, exactly as calls made one after another would be. The one further round trip: a
dropped throttle item is reported with the id of the task its window kept, read by a ``GET``
per dropped item (pipelined) after the batch, as :meth:`Client.throttle` reads it.

The result stays a ``list[TaskInfo]`` (:class:`Enqueued`), so callers of batches without
debounce or throttle see no change; :attr:`Enqueued.outcomes` adds each item's
:class:`~rq_sched.dedup.Debounced` / :class:`~rq_sched.dedup.Throttled` (None for the others).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from rq_sched import dedup, ops
from rq_sched.clock import from_ms
from rq_sched.connection import refused
from rq_sched.errors import (
    DUPLICATE,
    EnqueueManyError,
    RqSchedError,
    ValidationError,
    error_for_code,
)
from rq_sched.keys import QueueKeys
from rq_sched.models import NewTask, TaskInfo
from rq_sched.options import Prepared
from rq_sched.scripts import AnyAsyncRedis, Call, SyncRedis

Outcome = dedup.Debounced | dedup.Throttled | None
"""What a debounce or throttle item did; None for the other items."""


class Enqueued(list[TaskInfo]):
    """The result of ``enqueue_many``: a list with one :class:`TaskInfo` per item, in order,
    and :attr:`outcomes` beside it.

    Every entry's id names a task that exists, the one that carries the item out: the entry of
    a debounce item that replaced a waiting task's message describes that task (its id and due
    time, now with this item's message); the entry of a dropped throttle item carries the id of
    the task its window kept (the rest of the entry is the dropped item's own: its payload never
    runs). Read ``outcomes`` for which items replaced or were dropped.
    """

    __slots__ = ("outcomes",)

    def __init__(self, infos: Iterable[TaskInfo] = (), outcomes: Iterable[Outcome] = ()) -> None:
        super().__init__(infos)
        self.outcomes: list[Outcome] = list(outcomes) or [None] * len(self)
        """Per item: :class:`~rq_sched.dedup.Debounced` for a ``debounce`` item,
        :class:`~rq_sched.dedup.Throttled` for a ``throttle`` item, None for the others."""


@dataclass(frozen=True, slots=True)
class Dedup:
    """The debounce or throttle an item asked for, checked."""

    kind: Literal["debounce", "throttle"]
    key: str
    window_ms: int


def check_item(index: int, task: object) -> tuple[NewTask, Dedup | None]:
    """``task`` (item ``index`` of a batch) and the dedup it asks for, checked as the single
    calls check it (None for a plain item).

    Raises:
        ValidationError: not a NewTask, or a bad debounce / throttle / window combination
            (the message names the item and what to write).
    """
    if not isinstance(task, NewTask):
        raise ValidationError(f"enqueue_many takes NewTask items, got {task!r} (item {index})")
    if task.debounce is None and task.throttle is None:
        if task.window is not None:
            raise _item_error(
                index,
                "window= goes with debounce= or throttle=, e.g. NewTask(type=..., "
                "debounce='user:42', window=5); leave it out otherwise",
            )
        return task, None
    if task.debounce is not None and task.throttle is not None:
        raise _item_error(index, "give debounce= or throttle=, not both")
    kind: Literal["debounce", "throttle"] = "debounce" if task.debounce is not None else "throttle"
    if task.window is None:
        raise _item_error(
            index, f"{kind}= needs window= (timedelta or seconds), e.g. {kind}='user:42', window=5"
        )
    try:
        key = dedup.check_key(task.debounce if kind == "debounce" else task.throttle)
        window_ms = dedup.check_window(task.window)
        timing = {"process_in": task.process_in, "process_at": task.process_at}
        dedup.refuse_options(kind, {"unique": task.unique, **timing})
        if task.key is not None:
            raise ValidationError(
                f"key= (a fairness key) cannot go with {kind}= (as {kind}() takes none); "
                "leave key= out"
            )
    except ValidationError as exc:
        raise _item_error(index, str(exc)) from exc
    return task, Dedup(kind, key, window_ms)


def as_task(task: NewTask, asked: Dedup | None) -> NewTask:
    """``task`` as it is stored: a debounce item is due at its window's end."""
    if asked is None or asked.kind != "debounce":
        return task
    return dataclasses.replace(task, process_in=timedelta(milliseconds=asked.window_ms))


def item_error(index: int, exc: ValidationError) -> ValidationError:
    """``exc`` (of the same class) with the item it is about named first."""
    return _item_error(index, str(exc), type(exc))


def _item_error(
    index: int, text: str, kind: type[ValidationError] = ValidationError
) -> ValidationError:
    return kind(f"enqueue_many item {index}: {text}")


@dataclass(slots=True)
class Plan:
    """The calls of one batch and which items each call carries."""

    prepared: list[Prepared]
    calls: list[Call]
    owners: list[list[int]]
    """Per call: the indexes of its items (one, except for ``enqueue_batch`` calls)."""
    kinds: list[str]
    """Per call: "batch", "one", "debounce" or "throttle" (how its reply reads)."""
    throttle_keys: dict[int, str]
    """Per throttle item: its window's key name (read when the item is dropped)."""

    def dropped(self, raw: Sequence[Any]) -> dict[int, str]:
        """The throttle items ``raw`` (the calls' replies) says were dropped: index -> the
        window's key name, whose value is the kept task's id."""
        return {
            chunk[0]: self.throttle_keys[chunk[0]]
            for chunk, kind, reply in zip(self.owners, self.kinds, raw, strict=True)
            if kind == "throttle" and reply == DUPLICATE
        }


def plan(
    prepared: list[Prepared], asked: list[Dedup | None], keys: Callable[[str], QueueKeys]
) -> Plan:
    """The calls enqueueing ``prepared`` (placed in their shards), in batch order per key."""
    result = Plan(prepared, [], [], [], {})
    plain: dict[str, list[int]] = defaultdict(list)
    for index, ready in enumerate(prepared):
        spec = asked[index]
        if spec is not None:
            queue_keys = keys(ready.queue)
            if spec.kind == "debounce":
                call = dedup.debounce_call(queue_keys, ready, spec.key)
            else:
                call = dedup.throttle_call(queue_keys, ready, spec.key, spec.window_ms)
                result.throttle_keys[index] = queue_keys.throttle(spec.key)
            _add(result, call, [index], spec.kind)
        elif ready.unique_ttl_ms:
            _add(result, ops.enqueue(keys(ready.queue), ready), [index], "one")
        else:
            plain[ready.queue].append(index)
    size = ops.ENQUEUE_BATCH_LIMIT
    for queue, indexes in plain.items():
        for start in range(0, len(indexes), size):
            chunk = indexes[start : start + size]
            call = ops.enqueue_batch(keys(queue), [prepared[i] for i in chunk])
            _add(result, call, chunk, "batch")
    return result


def _add(result: Plan, call: Call, owners: list[int], kind: str) -> None:
    result.calls.append(call)
    result.owners.append(owners)
    result.kinds.append(kind)


def kept_ids(redis: SyncRedis, dropped: dict[int, str]) -> dict[int, str | None]:
    """The id each dropped item's window kept (None: the window ended meanwhile); no round
    trip when nothing was dropped."""
    if not dropped:
        return {}
    pipe = redis.pipeline(transaction=False)
    for name in dropped.values():
        pipe.get(name)
    return dict(zip(dropped, map(_text, pipe.execute()), strict=True))


async def akept_ids(redis: AnyAsyncRedis, dropped: dict[int, str]) -> dict[int, str | None]:
    """Async :func:`kept_ids`."""
    if not dropped:
        return {}
    pipe = redis.pipeline(transaction=False)
    for name in dropped.values():
        pipe.get(name)
    return dict(zip(dropped, map(_text, await pipe.execute()), strict=True))


def _text(value: object) -> str | None:
    return value.decode() if isinstance(value, bytes) else None if value is None else str(value)


def results(
    batch: Plan, raw: Sequence[Any], infos: list[TaskInfo], kept: dict[int, str | None]
) -> Enqueued:
    """One entry per item from the calls' replies ``raw`` (``infos``: each item's own).

    Raises:
        EnqueueManyError: some items were refused (``.results`` and ``.outcomes`` per item).
    """
    done = Enqueued(infos, [None] * len(infos))
    errors: dict[int, RqSchedError] = {}
    for chunk, kind, reply in zip(batch.owners, batch.kinds, raw, strict=True):
        if isinstance(reply, BaseException):
            # The whole call failed (e.g. Redis refused it): none of its tasks was written.
            for index in chunk:
                errors[index] = refused(reply, f"task {batch.prepared[index].id!r}")
        elif kind == "debounce" and isinstance(reply, list):
            _debounced(done, chunk[0], batch.prepared[chunk[0]], reply)
        elif kind == "throttle" and reply == DUPLICATE:
            _dropped(done, chunk[0], kept.get(chunk[0]))
        else:
            for index, code in zip(
                chunk, reply if isinstance(reply, list) else [reply], strict=True
            ):
                task = batch.prepared[index]
                if code < 0:
                    errors[index] = error_for_code(code, queue=task.queue, task_id=task.id)
                elif kind == "throttle":
                    done.outcomes[index] = dedup.Throttled(task.id, dropped=False)
    if errors:
        entries: list[TaskInfo | RqSchedError] = [
            errors.get(i, info) for i, info in enumerate(done)
        ]
        raise EnqueueManyError(entries, done.outcomes)
    return done


def _dropped(done: Enqueued, index: int, kept_id: str | None) -> None:
    """Record a dropped throttle item; its entry carries the id of the task its window kept."""
    done.outcomes[index] = dedup.Throttled(kept_id, dropped=True)
    if kept_id is not None:
        done[index] = dataclasses.replace(done[index], id=kept_id)


def _debounced(done: Enqueued, index: int, task: Prepared, reply: list[Any]) -> None:
    """Record a debounce item's outcome; a replacing item's entry describes the waiting task
    that now carries its message (that task's id and due time)."""
    outcome = done.outcomes[index] = dedup.debounced(reply, task)
    if outcome.replaced:
        due = from_ms(int(reply[2]))
        done[index] = dataclasses.replace(
            done[index], id=outcome.id, process_at=due, next_process_at=due
        )
