"""Validating enqueue arguments and turning them into a stored message.

Every check says what was wrong and what to pass instead; nothing reaches Redis until all pass.
Naive datetimes are rejected rather than guessed at: a task queue spans hosts and time zones,
and a silently wrong due time is worse than an error.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import re
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import msgpack

from rq_sched.clock import from_ms, to_ms
from rq_sched.durations import MAX_DURATION_S, duration_seconds
from rq_sched.errors import PayloadTooLargeError, ValidationError
from rq_sched.message import TaskMessage
from rq_sched.models import NewTask, TaskInfo, TaskState

MAX_TYPE_CHARS = 255
MAX_QUEUE_CHARS = 100
MAX_TASK_ID_CHARS = 200
MAX_RETRY = 2**31 - 1
"""The most retries a task may ask for (fits the 32-bit integers every reader handles)."""
DOT_SEGMENTS = (".", "..")
"""Refused as queue names and task ids: URLs of the dashboard API would lose them."""
SHARD_SUFFIX = re.compile(r"~(\d{1,2})of(\d{1,2})-(\d{1,5})\Z")
"""How a sub-queue's name ends (``rq_sched.shards``); refused in the names of new queues."""
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
            key=message.key,
        )


@lru_cache(maxsize=256)
def _datetime(ms: int) -> datetime:
    # Tasks enqueued together share their timestamps; datetimes are immutable, so share them.
    return from_ms(ms)


_ID_BATCH = 256
_spare_ids: deque[str] = deque()


def new_task_id() -> str:
    """A compact random id: 72 bits from ``os.urandom`` as 12 URL-safe characters.

    An id never starts with ``-``, so that it can be pasted after a command-line verb
    (``rq-sched task default <id>``) without being read as an option; the first character
    ``-`` becomes ``x``, which costs about 0.03 bits of the 72.
    """
    try:
        return _spare_ids.popleft()
    except IndexError:
        # One urandom call and one base64 pass for a batch of ids: 9 bytes encode to exactly
        # 12 characters, so the batch's encoding splits into ids without padding.
        text = base64.urlsafe_b64encode(os.urandom(9 * _ID_BATCH)).decode()
        ids = [text[i : i + 12] for i in range(0, len(text), 12)]
        _spare_ids.extend("x" + i[1:] if i[0] == "-" else i for i in ids)
        return _spare_ids.popleft()


# A forked child must not hand out the ids its parent has in stock.
os.register_at_fork(after_in_child=_spare_ids.clear)


def check_queue(queue: object) -> str:
    """Validate the name of a queue tasks are written to (enqueue, schedule entries, dq).

    Stricter than :func:`check_stored_queue`: new names may not be ``.``/``..`` or contain
    ``/``, so every name works as one URL path segment and inside dq ids, nor end like a
    shard of a sharded queue (``~2of3-17``, see :mod:`rq_sched.shards`), so no queue of a
    user's can ever be one of those.
    """
    queue = check_stored_queue(queue)
    if queue in DOT_SEGMENTS:
        raise ValidationError(
            "queue name may not be '.' or '..'; use letters, digits and . _ : - for example"
        )
    if "/" in queue:
        # The dashboard's URLs and the dq bridge's "redis/<queue>/<id>" ids split on '/'.
        raise ValidationError(
            f"queue name {queue!r} may not contain '/'; use : or - to build names, e.g. 'a:b'"
        )
    if SHARD_SUFFIX.search(queue):
        raise ValidationError(
            f"queue name {queue!r} ends like a shard of a sharded queue (~<i>of<n>-<salt>); "
            "enqueue to the queue's own name, or pick a name without that ending"
        )
    return queue


def check_stored_queue(queue: object) -> str:
    """Validate the name of a queue that may already exist (workers, inspector, dashboard).

    Only what the key layout needs: a non-empty printable name without braces (they would
    break the ``{queue}`` hash tag). Names that :func:`check_queue` now refuses for new tasks
    but that older versions stored (``a/b``, ``..``) stay readable and workable.
    """
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
    problem = _type_problem(task_type)
    if problem:
        raise ValidationError(problem)
    return task_type


@lru_cache(maxsize=1024)
def _type_problem(task_type: str) -> str:
    """What is wrong with a non-empty type name ("" if nothing); cached like queue names."""
    if len(task_type) > MAX_TYPE_CHARS:
        return f"task type is {len(task_type)} chars; the limit is {MAX_TYPE_CHARS}"
    return _text_problem(task_type, "task type")


def _text_problem(text: str, what: str) -> str:
    # A lone surrogate cannot be encoded as UTF-8 (it would fail deep in msgpack); control
    # characters would rewrite an operator's terminal when the CLI prints the value.
    if text.isprintable():
        return ""
    return (
        f"{what} {text!r} has a lone surrogate or control character; pass printable text "
        "(letters, digits, punctuation, spaces)"
    )


def _seconds(value: timedelta | float, name: str, *, allow_zero: bool) -> float:
    return duration_seconds(value, name, allow_zero=allow_zero, allow_text=False)


def aware_ms(value: datetime, name: str) -> int:
    """An aware datetime as epoch ms; naive datetimes are refused."""
    if not isinstance(value, datetime):
        raise ValidationError(f"{name} must be a datetime, got {value!r}")
    try:
        offset = value.utcoffset()
        ms = to_ms(value.timestamp()) if offset is not None else 0
    except Exception as exc:  # a user's tzinfo runs arbitrary code: any error is theirs
        raise ValidationError(
            f"{name}'s tzinfo failed ({type(exc).__name__}: {exc}); pass a datetime with "
            "timezone.utc or a zoneinfo.ZoneInfo"
        ) from exc
    if offset is None:
        raise ValidationError(
            f"{name} is a naive datetime; pass an aware one, e.g. "
            "datetime.now(timezone.utc) or datetime(..., tzinfo=ZoneInfo('Europe/Berlin'))"
        )
    return ms


def future_ms(value: datetime, name: str, now_ms: int) -> int:
    """:func:`aware_ms` of a time at most :data:`MAX_DURATION_S` ahead of ``now_ms``.

    The bound keeps every stored time a date Python can show again (``datetime.max`` would be
    written, then fail to come back as a datetime) and an exact integer in Lua's doubles.
    """
    ms = aware_ms(value, name)
    if ms - now_ms > MAX_DURATION_S * 1000:
        raise ValidationError(
            f"{name} {value} is more than {MAX_DURATION_S} seconds (100 years) ahead; "
            "pass a nearer time"
        )
    return ms


def due_ms(process_in: timedelta | float | None, process_at: datetime | None, now_ms: int) -> int:
    """When the task becomes ready, in ms; 0 for now."""
    if process_in is not None and process_at is not None:
        raise ValidationError("pass process_in or process_at, not both")
    if process_at is not None:
        due = future_ms(process_at, "process_at", now_ms)
    elif process_in is not None:
        due = now_ms + int(_seconds(process_in, "process_in", allow_zero=True) * 1000)
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
    for key, value in headers.items():
        # A name is an identifier (``traceparent``): printable, like a task type. A value may
        # be any text (the CLI and dashboard escape it) that UTF-8 can encode.
        problem = _text_problem(key, "header name") if key else "a header name may not be empty"
        if problem:
            raise ValidationError(problem)
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValidationError(
                f"header {key!r} has a lone surrogate in its value {value!r}; pass text that "
                "UTF-8 can encode"
            ) from None
    return dict(headers) or None


MAX_KEY_CHARS = 256
"""The longest fairness key accepted (``enqueue(key=...)``)."""


def check_key(key: object) -> str:
    """Validate a fairness key (``enqueue(key="tenant:42")``).

    Raises:
        ValidationError: not a non-empty str of at most :data:`MAX_KEY_CHARS` chars, or it
            holds a control character or a lone surrogate.
    """
    if not isinstance(key, str) or not key:
        raise ValidationError(
            f"key must be a non-empty str such as 'tenant:42' (or None for no key), got {key!r}"
        )
    if len(key) > MAX_KEY_CHARS:
        raise ValidationError(
            f"key is {len(key)} chars; the limit is {MAX_KEY_CHARS} (pass an id, not a document)"
        )
    problem = _text_problem(key, "key")
    if problem:
        raise ValidationError(problem)
    return key


def refuse_key_with(key: object, depends_on: object, group: object) -> None:
    """A fairness key cannot go with ``depends_on`` or ``group``.

    Raises:
        ValidationError: ``key`` is given with one of them.
    """
    if key is not None and (depends_on is not None or group is not None):
        raise ValidationError(
            "key= cannot be combined with depends_on= or group= (a held or aggregated task "
            "is not served by key); enqueue the keyed task without them"
        )


def check_task_id(task_id: object) -> str:
    """Validate a user-supplied task id."""
    if not isinstance(task_id, str) or not task_id or len(task_id) > MAX_TASK_ID_CHARS:
        raise ValidationError(
            f"task_id must be a non-empty str of at most {MAX_TASK_ID_CHARS} chars, got {task_id!r}"
        )
    if task_id in DOT_SEGMENTS:
        raise ValidationError("task_id may not be '.' or '..'; pick another id")
    problem = _text_problem(task_id, "task_id")
    if problem:
        raise ValidationError(problem)
    return task_id


def check_stored_id(task_id: object, what: str = "task id") -> str:
    """Validate the id of a task (or entry) that may already exist, for reads and operator
    actions: a non-empty str that UTF-8 can encode (a lone surrogate, e.g. from JSON's
    ``"\\ud800"``, can name no stored key). Looser than :func:`check_task_id`, so ids older
    versions stored stay reachable.

    Raises:
        ValidationError: it is not.
    """
    if not isinstance(task_id, str) or not task_id:
        raise ValidationError(f"{what} must be a non-empty str, got {task_id!r}")
    try:
        task_id.encode()
    except UnicodeEncodeError:
        raise ValidationError(
            f"{what} {task_id!r} has a lone surrogate, so no stored {what} can match it; "
            "pass the id as the task list shows it"
        ) from None
    return task_id


def check_count(value: object, name: str) -> int:
    """``value`` if it is an int (not a bool), for page numbers, sizes, days and limits.

    Raises:
        ValidationError: it is not.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(f"{name} must be an int, got {value!r}")
    return value


def check_max_retry(max_retry: object) -> int:
    """Validate ``max_retry``: an int from 0 to :data:`MAX_RETRY`."""
    if not isinstance(max_retry, int) or isinstance(max_retry, bool) or max_retry < 0:
        raise ValidationError(f"max_retry must be an int >= 0, got {max_retry!r}")
    if max_retry > MAX_RETRY:
        raise ValidationError(f"max_retry must be at most {MAX_RETRY}, got {max_retry!r}")
    return max_retry


def retention_seconds(retention: timedelta | float) -> int:
    """Retention as the whole seconds the message stores, rounded up (keep at least as long
    as asked); a retention below one second would round to "not kept", so it is refused."""
    value = _seconds(retention, "retention", allow_zero=True)
    if 0 < value < 1:
        raise ValidationError(
            f"retention is kept in whole seconds: pass 0 or at least 1 second, got {retention!r}"
        )
    return math.ceil(value)


def prepare(task: NewTask, *, now_ms: int, max_payload_bytes: int) -> Prepared:
    """Validate every enqueue argument of ``task`` and build the message; the one path from
    arguments to a stored task for the clients, ``enqueue_many`` and the scheduler.

    Raises:
        ValidationError: an argument is malformed (the message says which and what to pass).
        PayloadTooLargeError: the encoded task exceeds ``max_payload_bytes``.
    """
    task_type, payload = task.type, task.payload
    check_type(task_type)
    check_queue(task.queue)
    check_max_retry(task.max_retry)
    # Options left at None skip their checks: this runs once per task on the enqueue hot path.
    unique_ttl = _seconds(task.unique, "unique", allow_zero=False) if task.unique is not None else 0
    deadline_ms = 0
    if task.deadline is not None:
        deadline_ms = future_ms(task.deadline, "deadline", now_ms)
        if deadline_ms <= now_ms:
            raise ValidationError(
                f"deadline {task.deadline} has already passed; pass a future time"
            )
    timeout = task.timeout
    message = TaskMessage(
        task_type,
        payload,
        task.max_retry,
        0,
        _seconds(timeout, "timeout", allow_zero=False) if timeout is not None else 0.0,
        deadline_ms,
        retention_seconds(task.retention) if task.retention is not None else 0,
        unique_digest(task_type, payload) if unique_ttl else None,
        check_headers(task.headers) if task.headers is not None else None,
        now_ms,
        key=check_key(task.key) if task.key is not None else None,
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
    process_in, process_at = task.process_in, task.process_at
    return Prepared(
        check_task_id(task.task_id) if task.task_id is not None else new_task_id(),
        task.queue,
        message,
        encoded,
        due_ms(process_in, process_at, now_ms)
        if process_in is not None or process_at is not None
        else 0,
        max(1, int(unique_ttl * 1000)) if unique_ttl else 0,
    )
