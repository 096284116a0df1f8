"""What the inspector returns beyond a single task or queue, and how any of it becomes JSON.

The dashboard's API and the CLI's ``--json`` output both go through :func:`jsonable`, so the two
show the same field names. Payloads are user data of any msgpack type: :func:`payload_text` and
:func:`payload_preview` turn them into text for display (never into markup).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

# PREVIEW_CHARS, payload_preview, payload_text: re-exported; the one preview is in rq_sched.models.
from rq_sched.models import PREVIEW_CHARS as PREVIEW_CHARS  # noqa: PLC0414
from rq_sched.models import (
    QueueInfo,
    ScheduleEntryInfo,
    ScheduleRecord,
    ServerInfo,
    TaskInfo,
    TaskState,
    WorkerInfo,
    json_default,
)
from rq_sched.models import payload_preview as payload_preview  # noqa: PLC0414
from rq_sched.models import payload_text as payload_text  # noqa: PLC0414
from rq_sched.models import result_text as result_text  # noqa: PLC0414

ERROR_PREVIEW_CHARS = 200
"""Longest last-error text in a task list (its first line only)."""


@dataclass(frozen=True, slots=True)
class QueueStats:
    """A queue's counts plus what costs an extra round trip: latency and memory."""

    info: QueueInfo
    latency: float
    """Seconds the oldest pending task has waited since it was enqueued (0 when none)."""
    oldest_pending_id: str | None
    memory_bytes: int | None = None
    """Estimate from MEMORY USAGE of the queue's fixed keys; None unless asked for."""
    shards: tuple[QueueStats, ...] = ()
    """A sharded queue's stats per physical queue (shard order, then its base queue and any
    other layout left); empty for a queue that is not sharded."""


@dataclass(frozen=True, slots=True)
class DailyStats:
    """Processed and failed counts of one UTC day."""

    day: str
    processed: int
    failed: int


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """One row of a task list: enough to recognise a task and decide what to do with it."""

    id: str
    queue: str
    state: TaskState
    type: str
    payload_preview: str
    retried: int
    max_retry: int
    last_error: str | None
    """First line of the last error, cut to ERROR_PREVIEW_CHARS."""
    last_failed_at: datetime | None
    enqueued_at: datetime | None
    next_process_at: datetime | None
    """Due time of scheduled and retry tasks."""
    score_at: datetime | None
    """The time the state's sorted set holds: lease expiry (active), due (scheduled, retry),
    archived at (archived), record expiry (completed); None for pending."""
    lost_count: int = 0


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page of a state's task list (page numbers start at 1)."""

    queue: str
    state: TaskState
    page: int
    size: int
    total: int
    tasks: list[TaskSummary]
    task_type: str | None = None
    """The type filter, if any: then ``total`` counts the matches among ``scanned`` tasks."""
    scanned: int | None = None
    """With a type filter: how many tasks of the state were looked at."""
    complete: bool = True
    """False when a type filter stopped at its scan limit before the end of the state."""

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))


@dataclass(frozen=True, slots=True)
class BulkResult:
    """Outcome of a bulk action on every task of one state."""

    queue: str
    state: TaskState
    action: str
    done: int
    """Tasks the action applied to."""
    skipped: int
    """Tasks that changed state or vanished meanwhile and were left alone."""
    trimmed: int = 0
    """Archived tasks (the oldest) the archive's trim deleted to stay within the queue's
    limits while this action archived tasks; 0 for other actions."""
    remaining: int | None = None
    """With a limit: how many tasks are still in the state afterwards (None without one)."""


@dataclass(frozen=True, slots=True)
class SelectionResult:
    """Outcome of one action on a list of chosen task ids."""

    queue: str
    action: str
    done: list[str]
    """Ids the action applied to."""
    failed: dict[str, str]
    """Id -> why the action did not apply (not found, wrong state)."""


@dataclass(frozen=True, slots=True)
class TypeBreakdown:
    """Tasks per type and state of one queue, counted over the first ``sampled[state]`` tasks
    of each state (a bounded read, exact when ``sampled`` equals the state's size)."""

    queue: str
    sampled: dict[str, int]
    totals: dict[str, int]
    types: dict[str, dict[str, int]]
    """type -> state -> count within the sample."""


@dataclass(frozen=True, slots=True)
class MinutePoint:
    """One minute of a queue (or of all queues summed): None where no sample was taken."""

    minute: datetime
    processed: int | None
    failed: int | None
    size: int | None
    """Pending + scheduled + retry + active when the minute was sampled."""
    latency: float | None
    """Seconds the oldest pending task had waited (the worst queue when summed)."""


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """A live worker server (its heartbeat has not expired) and the tasks it runs."""

    info: ServerInfo
    heartbeat_expires_at: datetime
    workers: list[WorkerInfo]


@dataclass(frozen=True, slots=True)
class SchedulerEntry:
    """A periodic entry with its most recent fires, newest first."""

    info: ScheduleEntryInfo
    history: list[ScheduleRecord]
    outcomes: list[str] = dataclasses.field(default_factory=list)
    """The state each fire's task is in now (``gone`` once deleted or trimmed; ``error`` when
    the fire enqueued nothing; ``skipped`` when the entry was paused), in the order of
    ``history``."""
    paused: bool = False
    """An operator paused the entry: every scheduler skips its ticks until it is resumed."""


@dataclass(frozen=True, slots=True)
class SchedulerStatus:
    """Live scheduler instances and every published entry."""

    instances: list[str]
    entries: list[SchedulerEntry]


@dataclass(frozen=True, slots=True)
class RedisNode:
    """The INFO fields an operator looks at first, for one Redis node."""

    address: str
    info: dict[str, str]


def error_preview(error: str | None) -> str | None:
    """First line of an error text, shortened for a list."""
    if not error:
        return error
    first = error.strip().splitlines()[0] if error.strip() else error
    return first if len(first) <= ERROR_PREVIEW_CHARS else first[: ERROR_PREVIEW_CHARS - 1] + "…"


def jsonable(value: Any) -> Any:
    """Plain JSON data for any inspector result: dataclasses become objects, times ISO 8601
    strings (UTC), enums their value, bytes text (or base64), payloads stay as given."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass_dict(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return json_default(value) if isinstance(value, bytes) else value


def _dataclass_dict(value: Any) -> dict[str, Any]:
    out = {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    for cls in reversed(type(value).__mro__):  # a base class's properties too
        for name, attr in vars(cls).items():
            if isinstance(attr, property):  # derived fields such as QueueInfo.size
                out[name] = jsonable(getattr(value, name))
    return out


def task_json(info: TaskInfo) -> dict[str, Any]:
    """A task as JSON data, with its payload and result also as display text."""
    data: dict[str, Any] = jsonable(info)
    data["payload_text"] = payload_text(info.payload)
    data["result_text"] = result_text(info.result) if info.result is not None else None
    return data
