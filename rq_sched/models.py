"""Plain data returned to and accepted from users: task states, task info, queue info, and
payloads as display text (the one payload preview)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import msgpack

from rq_sched.clock import from_ms, to_ms
from rq_sched.message import decode_progress

PREVIEW_CHARS = 120
"""Longest payload preview (task lists, schedule entries)."""


class TaskState(StrEnum):
    """Where a task is in its lifecycle."""

    PENDING = "pending"
    ACTIVE = "active"
    SCHEDULED = "scheduled"
    RETRY = "retry"
    ARCHIVED = "archived"
    COMPLETED = "completed"


@dataclass(frozen=True, slots=True)
class AttemptError:
    """The error of one failed attempt of a task."""

    attempt: int
    """1 for the first attempt."""
    failed_at: datetime | None
    error: str


@dataclass(frozen=True, slots=True)
class Progress:
    """The latest progress a running task's handler reported (``task.report_progress``)."""

    value: Any
    message: str | None
    reported_at: datetime


@dataclass(frozen=True, slots=True)
class ParentInfo:
    """One parent of a task released by its dependencies (``depends_on``, a chain's previous
    link, a group's member), as the task received it."""

    queue: str
    id: str
    outcome: str
    """"completed", "archived" or "deleted"."""
    error: str | None = None
    """The parent's error text when it ended archived."""


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
    errors: list[AttemptError] = field(default_factory=list)
    """Errors of the last (up to 10) failed attempts, oldest first; the last one is
    ``last_error`` in full, earlier ones are cut to their last 1024 characters."""
    progress: Progress | None = None
    """For active tasks: the latest progress its handler reported, if any."""
    parents: list[ParentInfo] = field(default_factory=list)
    """For a task released by its dependencies: its parents, in ``depends_on`` order (the
    workflow links the dashboard shows)."""
    key: str | None = None
    """Its fairness key (``enqueue(key=...)``), if any."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NewTask:
    """One task for :meth:`Client.enqueue_many`; the fields mirror ``enqueue``'s arguments.

    ``debounce`` / ``throttle`` with ``window`` make the item behave as
    :meth:`Client.debounce` / :meth:`Client.throttle` with ``key=`` and ``window=`` would (the
    field holds the dedup key); ``enqueue_many`` reports what each such item did in its
    result's ``outcomes``. See docs/flow.md.
    """

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
    key: str | None = None
    shard_key: str | None = None
    debounce: str | None = None
    """A debounce key: the item joins the task waiting under it, or opens a ``window``."""
    throttle: str | None = None
    """A throttle key: the item is dropped if a task was kept under it within ``window``."""
    window: timedelta | float | None = None
    """The debounce or throttle window (timedelta or seconds); only with one of them."""


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
    trimmed: int = 0
    """Archived tasks the archive's size and age limits have deleted, all time."""

    @property
    def size(self) -> int:
        """Tasks not yet finished: pending, active, scheduled and retry."""
        return self.pending + self.active + self.scheduled + self.retry


def _ms(value: datetime | None) -> int | None:
    return to_ms(value.timestamp()) if value is not None else None


def _dt(value: int | None) -> datetime | None:
    return from_ms(value) if value is not None else None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One task running on a server, as its heartbeat reports it (``ns:workers:<server>``)."""

    task_id: str
    task_type: str
    queue: str
    started_at: datetime
    deadline: datetime | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "task_id": self.task_id,
                "task_type": self.task_type,
                "queue": self.queue,
                "started_at": _ms(self.started_at),
                "deadline": _ms(self.deadline),
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkerInfo:
        data = json.loads(text)
        return cls(
            task_id=data["task_id"],
            task_type=data["task_type"],
            queue=data["queue"],
            started_at=_dt(data["started_at"]) or datetime.now(UTC),
            deadline=_dt(data.get("deadline")),
        )


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """A worker server, as its heartbeat reports it (``ns:server:<id>``, with a TTL)."""

    id: str
    host: str
    pid: int
    queues: dict[str, int]
    strict_priority: bool
    concurrency: int
    started_at: datetime
    status: str
    """"running" or "stopping"."""
    active: int = 0
    processed: int = 0
    failed: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "host": self.host,
                "pid": self.pid,
                "queues": self.queues,
                "strict_priority": self.strict_priority,
                "concurrency": self.concurrency,
                "started_at": _ms(self.started_at),
                "status": self.status,
                "active": self.active,
                "processed": self.processed,
                "failed": self.failed,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ServerInfo:
        data = json.loads(text)
        return cls(
            id=data["id"],
            host=data["host"],
            pid=int(data["pid"]),
            queues={str(k): int(v) for k, v in data["queues"].items()},
            strict_priority=bool(data["strict_priority"]),
            concurrency=int(data["concurrency"]),
            started_at=_dt(data["started_at"]) or datetime.now(UTC),
            status=str(data["status"]),
            active=int(data.get("active", 0)),
            processed=int(data.get("processed", 0)),
            failed=int(data.get("failed", 0)),
        )


def encode_cancel(queue: str, task_id: str) -> str:
    """The message published on the cancel channel to cancel an active task on any server."""
    return json.dumps({"queue": queue, "id": task_id})


def decode_cancel(text: str | bytes) -> tuple[str, str]:
    """``(queue, task_id)`` from a cancel message; raises ValueError when malformed."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("queue"), str):
        raise ValueError(f"malformed cancel message: {text!r}")
    return data["queue"], str(data["id"])


@dataclass(frozen=True, slots=True)
class ScheduleEntryInfo:
    """A periodic entry as the scheduler publishes it (``ns:scheduler:entries``, by entry id)."""

    id: str
    name: str
    spec: str
    type: str
    queue: str
    timezone: str
    misfire: str
    payload_preview: str
    """The payload as short text, for display only."""
    next_fire: datetime | None
    prev_fire: datetime | None
    updated_at: datetime

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "name": self.name,
                "spec": self.spec,
                "type": self.type,
                "queue": self.queue,
                "timezone": self.timezone,
                "misfire": self.misfire,
                "payload_preview": self.payload_preview,
                "next_fire": _ms(self.next_fire),
                "prev_fire": _ms(self.prev_fire),
                "updated_at": _ms(self.updated_at),
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ScheduleEntryInfo:
        data = json.loads(text)
        return cls(
            id=data["id"],
            name=data["name"],
            spec=data["spec"],
            type=data["type"],
            queue=data["queue"],
            timezone=data["timezone"],
            misfire=data["misfire"],
            payload_preview=data.get("payload_preview", ""),
            next_fire=_dt(data.get("next_fire")),
            prev_fire=_dt(data.get("prev_fire")),
            updated_at=_dt(data.get("updated_at")) or datetime.now(UTC),
        )


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """One fire of a periodic entry (``ns:scheduler:history:<entry id>``, newest first, capped)."""

    fire_time: datetime
    enqueued_at: datetime
    task_id: str
    queue: str
    error: str | None = None
    """Why nothing was enqueued (e.g. a validation error); None on success."""
    skipped: bool = False
    """The tick came while the entry was paused: nothing was enqueued (``task_id`` is "")."""

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "fire_time": _ms(self.fire_time),
            "enqueued_at": _ms(self.enqueued_at),
            "task_id": self.task_id,
            "queue": self.queue,
            "error": self.error,
        }
        if self.skipped:
            data["skipped"] = True
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> ScheduleRecord:
        data = json.loads(text)
        return cls(
            fire_time=_dt(data["fire_time"]) or datetime.now(UTC),
            enqueued_at=_dt(data["enqueued_at"]) or datetime.now(UTC),
            task_id=data["task_id"],
            queue=data["queue"],
            error=data.get("error"),
            skipped=data.get("skipped") is True,
        )


# -- payloads as text, for display (never markup) ---------------------------------------------


def payload_text(payload: Any) -> str:
    """The whole payload as readable text: JSON pretty-printed, text as is, binary as base64."""
    if isinstance(payload, bytes):
        text = _utf8(payload)
        if text is None:
            return "base64:" + base64.b64encode(payload).decode()
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            return text
    if isinstance(payload, str):
        return payload
    return json.dumps(payload, indent=2, ensure_ascii=False, default=json_default)


def current_progress(stored: bytes | None, token: bytes | None) -> Progress | None:
    """The progress record ``stored`` if it was written under the lease ``token`` in force
    (an earlier run's report, left by a run whose lease expired, is not shown)."""
    if stored is None or token is None:
        return None
    record = decode_progress(stored)
    if record is None or str(record[0]).encode() != token:
        return None
    return Progress(value=record[1], message=record[2], reported_at=from_ms(record[3]))


def result_text(result: bytes) -> str:
    """A kept result as readable text: text (JSON pretty-printed) when it is UTF-8 without
    control characters, else the value it encodes when it is one whole msgpack value (what a
    handler returning a dict, a list or a number stores), else base64."""
    text = _utf8(result)
    if text is not None and all(ch.isprintable() or ch in "\n\r\t" for ch in text):
        return payload_text(result)
    try:
        value = msgpack.unpackb(result, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        return payload_text(result)
    return "msgpack: " + json.dumps(value, indent=2, ensure_ascii=False, default=json_default)


def payload_preview(payload: Any, limit: int = PREVIEW_CHARS) -> str:
    """A one-line, shortened form of :func:`payload_text`."""
    if isinstance(payload, bytes) and _utf8(payload) is None:
        text = f"<{len(payload)} bytes> {payload[:limit].hex()}"
    elif isinstance(payload, bytes | str):
        text = payload_text(payload)
        text = " ".join(text.split()) if text.lstrip().startswith(("{", "[")) else text
    else:
        text = json.dumps(payload, ensure_ascii=False, default=json_default)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def json_default(value: object) -> Any:
    """How bytes (text, or base64) and other non-JSON values appear in JSON."""
    if isinstance(value, bytes):
        text = _utf8(value)
        return text if text is not None else "base64:" + base64.b64encode(value).decode()
    return repr(value)
