"""Plain data returned to and accepted from users: task states, task info, queue info."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class TaskState(StrEnum):
    """Where a task is in its lifecycle."""

    PENDING = "pending"
    ACTIVE = "active"
    SCHEDULED = "scheduled"
    RETRY = "retry"
    ARCHIVED = "archived"
    COMPLETED = "completed"


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A snapshot of one task. ``enqueue`` fills what it knows; the inspector fills the rest."""

    id: str
    queue: str
    type: str
    state: TaskState
    process_at: datetime | None
    """When the task was (or will be) ready to run."""
    payload: Any = None
    max_retry: int = 25
    retry_count: int = 0
    last_error: str | None = None
    last_failed_at: datetime | None = None
    next_process_at: datetime | None = None
    """When a scheduled or retry task is due next; None in other states."""
    timeout: float | None = None
    deadline: datetime | None = None
    retention: float | None = None
    unique: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    enqueued_at: datetime | None = None
    lease_expires_at: datetime | None = None
    """For active tasks: when the worker's lease runs out unless renewed."""
    lost_count: int = 0
    """Times a worker took this task and vanished (lease expired)."""
    result: bytes | None = None
    """What the handler wrote, kept with the completed task when it has retention."""
    expires_at: datetime | None = None
    """For completed tasks: when the kept record is dropped."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NewTask:
    """One task for :meth:`Client.enqueue_many`; the fields mirror ``enqueue``'s arguments."""

    type: str
    payload: Any = None
    queue: str = "default"
    process_in: timedelta | float | None = None
    process_at: datetime | None = None
    max_retry: int = 25
    timeout: timedelta | float | None = None
    deadline: datetime | None = None
    unique: timedelta | float | None = None
    task_id: str | None = None
    retention: timedelta | float | None = None
    headers: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """Counts and flags of one queue."""

    queue: str
    pending: int
    active: int
    scheduled: int
    retry: int
    archived: int
    completed: int
    paused: bool
    processed: int
    failed: int
    processed_today: int
    failed_today: int

    @property
    def size(self) -> int:
        """Tasks not yet finished: pending, active, scheduled and retry."""
        return self.pending + self.active + self.scheduled + self.retry
