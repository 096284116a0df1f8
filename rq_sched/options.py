"""Validating enqueue arguments and turning them into a stored message.

Every check says what was wrong and what to pass instead; nothing reaches Redis until all pass.
Naive datetimes are rejected rather than guessed at: a task queue spans hosts and time zones,
and a silently wrong due time is worse than an error.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import msgpack

from rq_sched.clock import from_ms, to_ms
from rq_sched.errors import PayloadTooLargeError, ValidationError
from rq_sched.message import TaskMessage
from rq_sched.models import TaskInfo, TaskState

MAX_TYPE_CHARS = 255
MAX_QUEUE_CHARS = 100
MAX_TASK_ID_CHARS = 200
DEFAULT_MAX_PAYLOAD_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated task, ready for the enqueue script."""

    id: str
    queue: str
    message: TaskMessage
    encoded: bytes
    due_ms: int
    """0 when the task is ready now."""
    unique_ttl_ms: int

    def info(self, now_ms: int) -> TaskInfo:
        message = self.message
        scheduled = self.due_ms > 0
        due = _datetime(self.due_ms) if scheduled else None
        return TaskInfo(
            id=self.id,
            queue=self.queue,
            type=message.type,
            state=TaskState.SCHEDULED if scheduled else TaskState.PENDING,
            process_at=due or _datetime(now_ms),
            payload=message.payload,
            max_retry=message.max_retry,
            next_process_at=due,
            timeout=message.timeout or None,
            deadline=_datetime(message.deadline) if message.deadline else None,
            retention=float(message.retention) or None,
            unique=message.unique is not None,
            headers=dict(message.headers) if message.headers else {},
            enqueued_at=_datetime(message.enqueued_at),
        )


@lru_cache(maxsize=256)
def _datetime(ms: int) -> datetime:
    # Tasks enqueued together share their timestamps; datetimes are immutable, so share them.
    return from_ms(ms)


_ID_BATCH = 256
_spare_ids: deque[str] = deque()


def new_task_id() -> str:
    """A compact random id: 72 bits from ``os.urandom`` as 12 URL-safe characters."""
    try:
        return _spare_ids.popleft()
    except IndexError:
        # One urandom call and one base64 pass for a batch of ids: 9 bytes encode to exactly
        # 12 characters, so the batch's encoding splits into ids without padding.
        text = base64.urlsafe_b64encode(os.urandom(9 * _ID_BATCH)).decode()
        _spare_ids.extend(text[i : i + 12] for i in range(12, len(text), 12))
        return text[:12]


# A forked child must not hand out the ids its parent has in stock.
os.register_at_fork(after_in_child=_spare_ids.clear)


def check_queue(queue: object) -> str:
    """Validate a queue name; braces would break the ``{queue}`` hash tag of its keys."""
    if not isinstance(queue, str) or not queue:
        raise ValidationError(f"queue must be a non-empty str, got {queue!r}")
    problem = _queue_problem(queue)
    if problem:
        raise ValidationError(problem)
    return queue


@lru_cache(maxsize=1024)
def _queue_problem(queue: str) -> str:
    """What is wrong with a non-empty queue name ("" if nothing); cached, since a producer
    names the same few queues again and again."""
    if len(queue) > MAX_QUEUE_CHARS:
        return f"queue name is {len(queue)} chars; the limit is {MAX_QUEUE_CHARS}"
    if "{" in queue or "}" in queue or not queue.isprintable() or any(c.isspace() for c in queue):
        return (
            f"queue name {queue!r} may not contain braces, spaces or control characters; "
            "use letters, digits and . _ : - for example"
        )
    return ""


def check_type(task_type: object) -> str:
    """Validate a task type name."""
    if not isinstance(task_type, str) or not task_type:
        raise ValidationError(f"task type must be a non-empty str, got {task_type!r}")
    if len(task_type) > MAX_TYPE_CHARS:
        raise ValidationError(f"task type is {len(task_type)} chars; the limit is {MAX_TYPE_CHARS}")
    return task_type


def seconds(value: timedelta | float | int | None, name: str, *, allow_zero: bool = False) -> float:
    """A duration argument as seconds; None gives 0."""
    if value is None:
        return 0.0
    if isinstance(value, timedelta):
        result = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        result = float(value)
    else:
        raise ValidationError(f"{name} must be a timedelta or a number of seconds, got {value!r}")
    if result < 0 or (result == 0 and not allow_zero):
        raise ValidationError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return result


def aware_ms(value: datetime, name: str) -> int:
    """An aware datetime as epoch ms; naive datetimes are refused."""
    if not isinstance(value, datetime):
        raise ValidationError(f"{name} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            f"{name} is a naive datetime; pass an aware one, e.g. "
            "datetime.now(timezone.utc) or datetime(..., tzinfo=ZoneInfo('Europe/Berlin'))"
        )
    return to_ms(value.timestamp())


def due_ms(process_in: timedelta | float | None, process_at: datetime | None, now_ms: int) -> int:
    """When the task becomes ready, in ms; 0 for now."""
    if process_in is not None and process_at is not None:
        raise ValidationError("pass process_in or process_at, not both")
    if process_at is not None:
        due = aware_ms(process_at, "process_at")
    elif process_in is not None:
        due = now_ms + int(seconds(process_in, "process_in", allow_zero=True) * 1000)
    else:
        return 0
    return due if due > now_ms else 0


def encode_payload(payload: Any) -> bytes:
    """The msgpack encoding of a payload, with a clear error when it cannot be encoded."""
    try:
        return msgpack.packb(payload, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValidationError(
            f"payload cannot be encoded with msgpack ({exc}); pass bytes, str, numbers, bools, "
            "None, or lists and dicts of those (convert dates and objects first)"
        ) from exc


def unique_digest(task_type: str, payload: Any) -> str:
    """The uniqueness lock digest: the same type and payload give the same lock."""
    digest = hashlib.blake2b(task_type.encode(), digest_size=12)
    digest.update(b"\0")
    digest.update(encode_payload(payload))
    return digest.hexdigest()


def check_headers(headers: object) -> dict[str, str] | None:
    if headers is None:
        return None
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ValidationError(f"headers must be a dict of str to str, got {headers!r}")
    return dict(headers) or None


def check_task_id(task_id: object) -> str:
    if not isinstance(task_id, str) or not task_id or len(task_id) > MAX_TASK_ID_CHARS:
        raise ValidationError(
            f"task_id must be a non-empty str of at most {MAX_TASK_ID_CHARS} chars, got {task_id!r}"
        )
    return task_id


def prepare(
    task_type: str,
    payload: Any,
    *,
    queue: str,
    process_in: timedelta | float | None,
    process_at: datetime | None,
    max_retry: int,
    timeout: timedelta | float | None,
    deadline: datetime | None,
    unique: timedelta | float | None,
    task_id: str | None,
    retention: timedelta | float | None,
    headers: dict[str, str] | None,
    now_ms: int,
    max_payload_bytes: int,
) -> Prepared:
    """Validate every enqueue argument and build the message.

    Raises:
        ValidationError: an argument is malformed (the message says which and what to pass).
        PayloadTooLargeError: the encoded task exceeds ``max_payload_bytes``.
    """
    check_type(task_type)
    check_queue(queue)
    if not isinstance(max_retry, int) or isinstance(max_retry, bool) or max_retry < 0:
        raise ValidationError(f"max_retry must be an int >= 0, got {max_retry!r}")
    # Options left at None skip their checks: this runs once per task on the enqueue hot path.
    unique_ttl = seconds(unique, "unique") if unique is not None else 0.0
    deadline_ms = 0
    if deadline is not None:
        deadline_ms = aware_ms(deadline, "deadline")
        if deadline_ms <= now_ms:
            raise ValidationError(f"deadline {deadline} has already passed; pass a future time")
    message = TaskMessage(
        task_type,
        payload,
        max_retry,
        0,
        seconds(timeout, "timeout") if timeout is not None else 0.0,
        deadline_ms,
        int(seconds(retention, "retention", allow_zero=True)) if retention is not None else 0,
        unique_digest(task_type, payload) if unique_ttl else None,
        check_headers(headers) if headers is not None else None,
        now_ms,
    )
    try:
        encoded = message.encode()
    except (TypeError, ValueError, OverflowError):
        encode_payload(payload)  # raises the explanatory ValidationError
        raise
    if len(encoded) > max_payload_bytes:
        raise PayloadTooLargeError(
            f"task {task_type!r} encodes to {len(encoded)} bytes; the limit is {max_payload_bytes} "
            "(Client(max_payload_bytes=...)). Store large data elsewhere and pass a reference."
        )
    return Prepared(
        check_task_id(task_id) if task_id is not None else new_task_id(),
        queue,
        message,
        encoded,
        due_ms(process_in, process_at, now_ms)
        if process_in is not None or process_at is not None
        else 0,
        max(1, int(unique_ttl * 1000)) if unique_ttl else 0,
    )
