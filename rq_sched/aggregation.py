"""Task aggregation (asynq's groups): tasks enqueued with ``group=`` wait together, and an
aggregator registered on the router turns each batch into one task.

A group is due when a grace period passes with no new task, when a maximum delay has passed
since its oldest task, or at once when it reaches a maximum size. The enqueue script computes
that due time and announces it on the queue's marker, as a scheduled task's, so a worker's
:class:`~rq_sched.worker.aggregator.Aggregator` wakes for it without polling. The batch is read,
aggregated, and committed in one script that removes exactly the entries read, only if they are
still the group's head: of two servers racing for a group, or an aggregator re-run after a
crash, exactly one commits. See docs/workflows.md, "Task aggregation".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import msgpack

from rq_sched.durations import duration_seconds
from rq_sched.errors import ValidationError
from rq_sched.models import NewTask
from rq_sched.options import Prepared
from rq_sched.task import Task

MAX_GROUP_CHARS = 200
"""Longest group name."""

Aggregate = Callable[[str, list[Task]], NewTask | Awaitable[NewTask | None] | None]
"""``aggregate(group, tasks)``: the one task to enqueue for a batch of the group's tasks (its
``queue`` is replaced by the group's queue; its ``task_id`` defaults to one derived from the
batch, so a batch is enqueued once), or None to drop the batch. May be ``async``; a plain
function runs in a thread."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupLimits:
    """When a group is aggregated: ``grace`` seconds after its newest task, at most
    ``max_delay`` seconds after its oldest (None: no limit), or at once at ``max_size`` tasks
    (None: no limit; also the most tasks one aggregation takes)."""

    grace: timedelta | float = 60.0
    max_delay: timedelta | float | None = None
    max_size: int | None = None

    def __post_init__(self) -> None:
        duration_seconds(self.grace, "group grace", allow_zero=False, allow_text=False)
        if self.max_delay is not None:
            duration_seconds(self.max_delay, "group max_delay", allow_zero=False, allow_text=False)
        size = self.max_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValidationError(f"group max_size must be an int >= 1 or None, got {size!r}")

    def as_ms(self) -> tuple[int, int, int]:
        """(grace ms, max delay ms or 0, max size or 0), as the scripts take them."""
        grace = duration_seconds(self.grace, "group grace", allow_text=False)
        delay = (
            0
            if self.max_delay is None
            else duration_seconds(self.max_delay, "group max_delay", allow_text=False)
        )
        return round(grace * 1000), round(delay * 1000), self.max_size or 0


DEFAULT_LIMITS = GroupLimits()
"""Used by an enqueue when no aggregator has stored the queue's limits yet."""


@dataclass(frozen=True, slots=True)
class Aggregation:
    """An aggregator and its limits, as registered on a router."""

    aggregate: Aggregate
    limits: GroupLimits


def check_group(group: object) -> str:
    """``group`` if it is a usable group name.

    Raises:
        ValidationError: not a non-empty printable str of at most MAX_GROUP_CHARS chars.
    """
    if not isinstance(group, str) or not group or len(group) > MAX_GROUP_CHARS:
        raise ValidationError(
            f"group must be a non-empty str of at most {MAX_GROUP_CHARS} chars, got {group!r}"
        )
    if not group.isprintable():
        raise ValidationError(f"group {group!r} must be printable text")
    return group


def check_groupable(task: Prepared) -> None:
    """A grouped task runs as part of its batch: it cannot wait for a time or a lock.

    Raises:
        ValidationError: the task has ``process_in`` / ``process_at`` or ``unique``.
    """
    if task.due_ms or task.message.unique is not None:
        raise ValidationError(
            f"task {task.id!r}: group= cannot be combined with process_in / process_at or "
            "unique (the group decides when its tasks run)"
        )


def entry(task: Prepared) -> bytes:
    """A group entry: msgpack ``[id, message]``."""
    return bytes(msgpack.packb([task.id, task.encoded], use_bin_type=True))


def read_entry(data: bytes) -> tuple[str, bytes]:
    """``(id, message)`` of a group entry."""
    task_id, message = msgpack.unpackb(data, raw=False)
    return str(task_id), bytes(message)
