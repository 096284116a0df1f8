"""Tasks that wait for other tasks: ``depends_on``, chains and groups, on one mechanism.

A dependant is *held* (``lua/dep_hold.lua``) until every parent has reported its final outcome
to it (``lua/dep_report.lua``, idempotent, in the child's slot). A parent reports through a
record its settling script writes in the parent's own slot in the same step that makes it final
(``lua/includes/outbox.lua``); :func:`deliver` hands that record to every child and then drops
it (``lua/dep_ack.lua``). The worker delivers right after settling; a sweep delivers what a
crash left undelivered. Chains and groups are dependency graphs built in one call. The design,
its crash analysis and its guarantees next to Celery's and BullMQ's: docs/workflows.md.

The steps are written once, as generators that yield script calls and receive their replies
(:data:`Steps`), and run by a sync driver (:func:`run_steps`) or an async one
(:func:`arun_steps`), so the client, the async client and the worker share them.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgpack

from rq_sched import ops, scripts
from rq_sched.errors import CONFLICT, TaskNotFoundError, ValidationError, error_for_code
from rq_sched.keys import QueueKeys
from rq_sched.message import decode
from rq_sched.models import TaskInfo
from rq_sched.options import Prepared, check_stored_id, check_stored_queue
from rq_sched.scripts import AnyAsyncRedis, Call, SyncRedis

log = logging.getLogger("rq_sched")

Policy = Literal["cancel", "run"]
"""What a dependant does when a parent ends archived or deleted: ``"cancel"`` archives it
(and so, in turn, its own dependants) without running it; ``"run"`` runs it anyway, with the
failures listed in ``task.parents``."""
POLICIES: tuple[Policy, ...] = ("cancel", "run")
MAX_PARENTS = 10_000
"""Most parents one task may wait for (one release step reads them all)."""

ParentRef = str | tuple[str, str]
"""A parent: its id (in the dependant's queue) or ``(queue, id)``."""


@dataclass(frozen=True, slots=True)
class Exists:
    """A step that asks whether a task is live, kept or held (a plain read, not a script)."""

    keys: QueueKeys
    task_id: str


Step = Call | Exists
Steps = Generator[Step, Any, Any]


def run_steps(redis: SyncRedis, steps: Steps) -> Any:
    """Run ``steps`` against a sync client; returns what the generator returns."""
    try:
        step = next(steps)
        while True:
            step = steps.send(_run_one(redis, step))
    except StopIteration as stop:
        return stop.value


async def arun_steps(redis: AnyAsyncRedis, steps: Steps) -> Any:
    """Run ``steps`` against an async client."""
    try:
        step = next(steps)
        while True:
            if isinstance(step, Exists):
                pipe = redis.pipeline(transaction=False)
                pipe.hexists(step.keys.msg, step.task_id)
                pipe.hexists(step.keys.held, step.task_id)
                reply: Any = any(await pipe.execute())
            else:
                reply = await scripts.arun(redis, *step)
            step = steps.send(reply)
    except StopIteration as stop:
        return stop.value


def _run_one(redis: SyncRedis, step: Step) -> Any:
    if isinstance(step, Exists):
        pipe = redis.pipeline(transaction=False)
        pipe.hexists(step.keys.msg, step.task_id)
        pipe.hexists(step.keys.held, step.task_id)
        return any(pipe.execute())
    return scripts.run(redis, *step)


# -- holding a task until its parents are final ----------------------------------------------


def parent_refs(depends_on: object, queue: str) -> list[tuple[str, str]]:
    """``depends_on`` as a list of (queue, id), checked.

    Raises:
        ValidationError: not a non-empty sequence of ids or (queue, id) pairs, a repeated
            parent, or more than MAX_PARENTS.
    """
    if isinstance(depends_on, str | bytes) or not isinstance(depends_on, Sequence):
        raise ValidationError(
            f"depends_on must be a list of task ids or (queue, id) pairs, got {depends_on!r}"
        )
    refs: list[tuple[str, str]] = []
    for item in depends_on:
        if isinstance(item, str):
            ref = (queue, check_stored_id(item, "depends_on id"))
        elif isinstance(item, tuple) and len(item) == 2:
            ref = (check_stored_queue(item[0]), check_stored_id(item[1], "depends_on id"))
        else:
            raise ValidationError(
                f"depends_on items are task ids or (queue, id) pairs, got {item!r}"
            )
        refs.append(ref)
    if not refs or len(refs) > MAX_PARENTS:
        raise ValidationError(f"depends_on needs 1 to {MAX_PARENTS} parents, got {len(refs)}")
    if len(set(refs)) != len(refs):
        raise ValidationError(f"depends_on names a parent twice: {refs!r}")
    return refs


def check_policy(policy: object, what: str = "on_parent_failure") -> Policy:
    """``policy`` if it is one of :data:`POLICIES`.

    Raises:
        ValidationError: it is not.
    """
    if policy not in POLICIES:
        raise ValidationError(f"{what} must be 'cancel' or 'run', got {policy!r}")
    return policy


def check_holdable(task: Prepared) -> None:
    """A held task starts when its parents end: it cannot also wait for a time or a lock.

    Raises:
        ValidationError: the task has ``process_in`` / ``process_at`` or ``unique``.
    """
    if task.due_ms:
        raise ValidationError(
            f"task {task.id!r}: depends_on cannot be combined with process_in / process_at "
            "(a dependant becomes pending when its parents are final)"
        )
    if task.message.unique is not None:
        raise ValidationError(f"task {task.id!r}: depends_on cannot be combined with unique")


def hold_steps(
    namespace: str,
    task: Prepared,
    parents: Sequence[tuple[str, str]],
    policy: Policy,
    *,
    parents_new: bool = False,
) -> Steps:
    """Hold ``task`` until every parent is final; parents already final are reported at once.

    With ``parents_new`` the parents are enqueued after these steps (a chain or group being
    built) and are not looked up first.

    Raises:
        TaskNotFoundError: a parent is not live, held or kept (nothing was written).
        TaskIdConflictError: the task's id is taken.
    """
    child = QueueKeys(namespace, task.queue)
    if not parents_new:
        for queue, parent_id in parents:
            if not (yield Exists(QueueKeys(namespace, queue), parent_id)):
                raise TaskNotFoundError(
                    f"depends_on: no task {parent_id!r} in queue {queue!r} (it never existed, "
                    "or it finished and was not kept: give parents retention= so that "
                    "dependants enqueued after they finish can read their outcome)"
                )
    record = msgpack.packb(
        {
            "policy": policy,
            "n": len(parents),
            "got": 0,
            "parents": [f"{queue}/{parent_id}" for queue, parent_id in parents],
        },
        use_bin_type=True,
    )
    code = yield ops.dep_hold(child, task.id, task.message.encode_held(), bytes(record))
    if code < 0:
        raise error_for_code(code, queue=task.queue, task_id=task.id)
    for index, (queue, parent_id) in enumerate(parents):
        parent = QueueKeys(namespace, queue)
        reply = yield ops.dep_link(
            parent, parent_id, child, task.id, index=index, expect_new=parents_new
        )
        outcome = _final_outcome(reply, parent_id)
        if outcome is not None:
            yield from _report(namespace, child, task.id, index, (queue, parent_id, *outcome))


def _final_outcome(reply: Any, parent_id: str) -> tuple[str, Any] | None:
    """None when linked; else the (outcome, data) of a parent already final."""
    if isinstance(reply, int):  # NOT_FOUND: it ended, unkept, between the check and the link
        return "deleted", None
    kind = reply[0]
    if kind == 1:
        return None
    if kind == 2:
        outcome, data = msgpack.unpackb(reply[1], raw=False)
        return outcome, data
    if kind == 3:
        return "completed", reply[1] or None
    error = decode(reply[1], task_id=parent_id).last_error or "archived"
    return "archived", error


def _report(
    namespace: str,
    child: QueueKeys,
    child_id: str,
    index: int,
    parent_outcome: tuple[str, str, str, Any],
) -> Steps:
    """Report ``(parent queue, parent id, outcome, data)`` to the child."""
    queue, parent_id, outcome, data = parent_outcome
    entry = msgpack.packb([outcome, data, queue, parent_id], use_bin_type=True)
    reply = yield ops.dep_report(
        child, child_id, index, bytes(entry), outcome, parent=f"{queue}/{parent_id}"
    )
    if reply == 4:  # archived by the policy, with dependants of its own
        yield from deliver_steps(namespace, child.queue, child_id)
    elif isinstance(reply, int) and reply < 0:
        log.error(
            "task %s/%s could not be released: its id was taken by another task meanwhile",
            child.queue,
            child_id,
        )
    return reply


# -- delivering a final outcome to the dependants --------------------------------------------


def deliver_steps(namespace: str, queue: str, parent_id: str) -> Steps:
    """Deliver ``parent_id``'s recorded outcome to each dependant, then drop the record.

    Safe to run any number of times, by anyone, at any moment: a report already delivered is
    ignored by the child, and the record is dropped only after every child has it. Returns how
    many records were delivered (a cancel travelling down a chain delivers several).
    """
    work = [(queue, parent_id)]
    delivered = 0
    while work:
        q, pid = work.pop()
        keys = QueueKeys(namespace, q)
        read = yield ops.dep_read(keys, pid)
        children_raw, entry_raw = read
        if entry_raw is None:
            continue  # delivered already (or never recorded)
        outcome, data = msgpack.unpackb(entry_raw, raw=False)
        for child_queue, child_id, index in read_dependants(children_raw):
            child = QueueKeys(namespace, child_queue)
            entry = msgpack.packb([outcome, data, q, pid], use_bin_type=True)
            reply = yield ops.dep_report(
                child, child_id, index, bytes(entry), outcome, parent=f"{q}/{pid}"
            )
            if reply == 4:
                work.append((child_queue, child_id))
            elif isinstance(reply, int) and reply < 0:
                log.error(
                    "task %s/%s could not be released: its id was taken by another task",
                    child_queue,
                    child_id,
                )
        yield ops.dep_ack(keys, pid)
        delivered += 1
    return delivered


def read_dependants(raw: Sequence[bytes]) -> list[tuple[str, str, int]]:
    """The (child queue, child id, index) entries ``lua/dep_read.lua`` returns.

    Raises:
        ValueError: an entry does not decode as one (the deliverer logs it and moves on).
    """
    found: list[tuple[str, str, int]] = []
    for entry in raw:
        queue, task_id, index = msgpack.unpackb(entry, raw=False)
        found.append((str(queue), str(task_id), int(index)))
    return found


def deliver(redis: SyncRedis, namespace: str, queue: str, parent_id: str) -> int:
    """Sync :func:`deliver_steps`."""
    return int(run_steps(redis, deliver_steps(namespace, queue, parent_id)))


async def adeliver(redis: AnyAsyncRedis, namespace: str, queue: str, parent_id: str) -> int:
    """Async :func:`deliver_steps`."""
    return int(await arun_steps(redis, deliver_steps(namespace, queue, parent_id)))


# -- chains and groups: dependency graphs enqueued in one call -------------------------------


@dataclass(frozen=True, slots=True)
class Chain:
    """A chain as enqueued: its links in order (see :meth:`rq_sched.Client.chain`)."""

    links: list[TaskInfo]


@dataclass(frozen=True, slots=True)
class Group:
    """A group as enqueued: its members and the callback released when all are final."""

    members: list[TaskInfo]
    callback: TaskInfo


LinkState = Literal["waiting", "pending", "running", "completed", "archived", "gone"]


@dataclass(frozen=True, slots=True)
class ChainStatus:
    """Where a chain is: ``state`` "running", "completed" or "failed"; a failed chain stopped at
    link ``stopped_at`` (from 0) with ``error``; ``links`` holds each link's state ("gone":
    finished and not kept, or deleted)."""

    state: Literal["running", "completed", "failed"]
    links: list[LinkState]
    stopped_at: int | None = None
    error: str | None = None


def chain_steps(namespace: str, links: Sequence[Prepared]) -> Steps:
    """Hold links 2..n, each on the one before, then enqueue link 1: nothing runs unless the
    whole chain was written."""
    if len(links) < 2:
        raise ValidationError(f"a chain needs at least 2 tasks, got {len(links)}")
    for link in links[1:]:
        check_holdable(link)
    _check_distinct(links)
    yield from _check_free(namespace, links)
    for before, link in itertools.pairwise(links):
        yield from hold_steps(
            namespace, link, [(before.queue, before.id)], "cancel", parents_new=True
        )
    yield from _enqueue_steps(namespace, links[0])


def group_steps(
    namespace: str, members: Sequence[Prepared], callback: Prepared, policy: Policy
) -> Steps:
    """Hold the callback on every member, then enqueue the members."""
    if not members or len(members) > MAX_PARENTS:
        raise ValidationError(f"a group needs 1 to {MAX_PARENTS} members, got {len(members)}")
    check_holdable(callback)
    for member in members:
        if member.message.unique is not None:
            raise ValidationError(f"group member {member.id!r}: unique members are not supported")
    _check_distinct([*members, callback])
    yield from _check_free(namespace, [*members, callback])
    parents = [(m.queue, m.id) for m in members]
    yield from hold_steps(namespace, callback, parents, policy, parents_new=True)
    for member in members:
        yield from _enqueue_steps(namespace, member)


def _check_distinct(tasks: Sequence[Prepared]) -> None:
    refs = [(t.queue, t.id) for t in tasks]
    if len(set(refs)) != len(refs):
        raise ValidationError("a chain or group names the same task (queue and id) twice")


def _check_free(namespace: str, tasks: Sequence[Prepared]) -> Steps:
    """Refuse a chain or group before writing anything when one of its ids is taken (live,
    held, or completed and kept): a refusal found only at the last enqueue left the tasks held
    before it linked to the task that holds the id, to run when that one ends.

    Raises:
        TaskIdConflictError: an id is taken.
    """
    for task in tasks:
        held, data, _, archived, _ = yield ops.task_brief(QueueKeys(namespace, task.queue), task.id)
        if held or (data is not None and not archived):
            raise error_for_code(CONFLICT, queue=task.queue, task_id=task.id)


def _enqueue_steps(namespace: str, task: Prepared) -> Steps:
    code = yield ops.enqueue(QueueKeys(namespace, task.queue), task)
    if code < 0:
        raise error_for_code(code, queue=task.queue, task_id=task.id)


def chain_status_steps(namespace: str, chain: Chain) -> Steps:
    """Read each link's state and say where the chain is."""
    states: list[LinkState] = []
    stopped_at: int | None = None
    error: str | None = None
    for index, link in enumerate(chain.links):
        reply = yield ops.task_brief(QueueKeys(namespace, link.queue), link.id)
        state, data = _link_state(reply)
        states.append(state)
        if state == "archived" and stopped_at is None:
            stopped_at = index
            error = decode(data, task_id=link.id).last_error if data else None
    if stopped_at is not None:
        return ChainStatus("failed", states, stopped_at, error)
    done = states[-1] in ("completed", "gone")
    return ChainStatus("completed" if done else "running", states)


def _link_state(reply: list[Any]) -> tuple[LinkState, bytes | None]:
    held, data, active, archived, completed = reply
    if held:
        return "waiting", None
    if data is None:
        return "gone", None
    if archived:
        return "archived", data
    if completed:
        return "completed", data
    return ("running" if active else "pending"), data
