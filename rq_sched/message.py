"""The task message: what is stored per task in Redis, and its msgpack encoding.

A message is a msgpack array, version first, with positional fields so that no field names are
stored per task. Trailing fields that hold their default are left off, and the decoder fills them
in, which keeps pending tasks small and lets later versions append fields.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from rq_sched.errors import CorruptTaskError

VERSION = 1
MAX_ERROR_CHARS = 4096
"""Longest error text (message plus traceback) kept on a task; the tail is cut."""


@dataclass(frozen=True, slots=True)
class TaskMessage:
    """One task as stored in ``{q}:msg``. Times are integer epoch milliseconds."""

    type: str
    payload: Any
    max_retry: int = 25
    retried: int = 0
    timeout: float = 0.0
    """Seconds a single attempt may run; 0 means no per-attempt timeout."""
    deadline: int = 0
    """Epoch ms after which the task must not run; 0 means none."""
    retention: int = 0
    """Seconds to keep the task as completed after success; 0 deletes it at once."""
    unique: str | None = None
    """Digest of the uniqueness lock this task holds, if it was enqueued with ``unique=``."""
    headers: dict[str, str] | None = None
    enqueued_at: int = 0
    last_error: str | None = None
    last_failed_at: int = 0

    def encode(self) -> bytes:
        """The msgpack bytes stored in Redis."""
        timeout = self.timeout
        tail = (
            self.max_retry,
            self.retried,
            int(timeout) if timeout == int(timeout) else timeout,  # 30 packs in 1 byte, 30.0 in 9
            self.deadline,
            self.retention,
            self.unique,
            self.headers,
            self.last_error,
            self.last_failed_at,
        )
        if tail == _DEFAULT_TAIL:  # a fresh task with default options: the common case
            fields: list[Any] = [VERSION, self.type, self.payload, self.enqueued_at]
        else:
            fields = [VERSION, self.type, self.payload, self.enqueued_at, *tail]
        while len(fields) > _REQUIRED and fields[-1] == _DEFAULTS[len(fields) - 1]:
            fields.pop()
        return _packer().pack(fields)

    def failed(self, error: str, at_ms: int) -> TaskMessage:
        """A copy recording one more failed attempt with ``error`` (cut to MAX_ERROR_CHARS)."""
        if len(error) > MAX_ERROR_CHARS:
            error = "…" + error[-MAX_ERROR_CHARS:]
        return replace(self, retried=self.retried + 1, last_error=error, last_failed_at=at_ms)


# Stored order: version, type, payload, enqueued_at, max_retry, retried, timeout, deadline,
# retention, unique, headers, last_error, last_failed_at. Fields that a fresh task leaves at
# their default come last, so a pending task stores only the first four.
_REQUIRED = 3  # version, type, payload
_DEFAULTS: tuple[Any, ...] = (VERSION, "", None, 0, 25, 0, 0, 0, 0, None, None, None, 0)
_DEFAULT_TAIL = _DEFAULTS[4:]
_local = threading.local()


def _packer() -> msgpack.Packer:
    # A Packer per thread: reusing one saves building it per message, and threads (sync
    # handlers, the janitor) must not share one.
    try:
        packer: msgpack.Packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(use_bin_type=True)
    return packer


def decode(data: bytes, *, task_id: str = "?") -> TaskMessage:
    """Decode stored bytes into a message.

    Raises:
        CorruptTaskError: the bytes are not a message this version understands.
    """
    try:
        fields = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise CorruptTaskError(f"task {task_id!r}: stored message is not msgpack ({exc})") from exc
    if not isinstance(fields, list) or len(fields) < _REQUIRED:
        raise CorruptTaskError(f"task {task_id!r}: stored message is not a task array")
    if fields[0] != VERSION:
        raise CorruptTaskError(
            f"task {task_id!r}: message version {fields[0]!r} is not supported by this rq_sched "
            f"(reads version {VERSION}); upgrade rq_sched on this host"
        )
    fields.extend(_DEFAULTS[len(fields) :])
    try:
        message = TaskMessage(
            type=fields[1],
            payload=fields[2],
            enqueued_at=fields[3],
            max_retry=fields[4],
            retried=fields[5],
            timeout=float(fields[6]),
            deadline=fields[7],
            retention=fields[8],
            unique=fields[9],
            headers=fields[10],
            last_error=fields[11],
            last_failed_at=fields[12],
        )
    except (TypeError, ValueError) as exc:
        raise CorruptTaskError(f"task {task_id!r}: malformed message ({exc})") from exc
    if not isinstance(message.type, str):
        raise CorruptTaskError(f"task {task_id!r}: task type is not a string")
    return message
