"""The task message: what is stored per task in Redis, and its msgpack encoding.

A message is a msgpack array, version first, with positional fields so that no field names are
stored per task. Trailing fields that hold their default are left off, and the decoder fills them
in, which keeps pending tasks small and lets later versions append fields.

**Attempt errors.** A task keeps the error of its last failed attempt (``last_error``, up to
MAX_ERROR_CHARS) and, in the appended field ``errors``, those of up to MAX_EARLIER_ERRORS earlier
attempts as ``(attempt, failed_at ms, text)``, text cut to its first EARLIER_ERROR_CHARS (the
worker writes the exception line first, then the traceback). The field is absent until a task
fails a second time, so a task that never failed (or failed once) stores exactly the bytes it
stored before the field existed; decoders that predate it ignore the extra trailing element, and
this one reads older messages as having none.
Keeping the history in the message rather than in a separate hash means every script that moves
or deletes a task carries or drops it with no change (see docs/core.md).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from rq_sched.errors import CorruptTaskError, ValidationError

VERSION = 1
MAX_ERROR_CHARS = 4096
"""Longest error text (message plus traceback) kept on a task; the tail is cut."""
MAX_EARLIER_ERRORS = 9
"""Earlier attempts' errors kept besides the last one (so the last 10 attempts are shown)."""
EARLIER_ERROR_CHARS = 1024
"""Longest text kept per earlier attempt's error (its head: the exception line comes first)."""

AttemptError = tuple[int, int, str]
"""``(attempt number from 1, failed_at epoch ms, error text)``."""

ParentOutcome = tuple[str, bytes | str | None, str, str]
"""One parent's outcome as a dependant receives it: ``(outcome, data, queue, id)``, outcome
"completed" (data: its result bytes or None), "archived" (data: its error text) or "deleted"
(data: None). See docs/workflows.md."""


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
    errors: tuple[AttemptError, ...] = ()
    """Errors of earlier failed attempts, oldest first, not counting ``last_error``."""
    parents: tuple[ParentOutcome, ...] | None = None
    """For a task released by its dependencies: its parents' outcomes, in the order of its
    ``depends_on``; written by the release script (``lua/dep_report.lua``)."""
    key: str | None = None
    """The fairness key (``enqueue(key=...)``): the queue serves keys round robin and applies
    its per-key limits (docs/flow.md). The dequeue script reads it from the 16th field, so a
    task made ready again by any path keeps its key."""

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
            [list(e) for e in self.errors] if self.errors else None,
            [list(p) for p in self.parents] if self.parents is not None else None,
            self.key,
        )
        if tail == _DEFAULT_TAIL:  # a fresh task with default options: the common case
            fields: list[Any] = [VERSION, self.type, self.payload, self.enqueued_at]
        else:
            fields = [VERSION, self.type, self.payload, self.enqueued_at, *tail]
        while len(fields) > _REQUIRED and fields[-1] == _DEFAULTS[len(fields) - 1]:
            fields.pop()
        return _packer().pack(fields)

    def encode_held(self) -> bytes:
        """The message of a task held by its dependencies, with its last four fields (last
        error, failed at, errors, parents) left for the release script to append: a msgpack
        array header for all HELD_FIELDS fields, then the first ones."""
        timeout = self.timeout
        head = (
            VERSION,
            self.type,
            self.payload,
            self.enqueued_at,
            self.max_retry,
            self.retried,
            int(timeout) if timeout == int(timeout) else timeout,
            self.deadline,
            self.retention,
            self.unique,
            self.headers,
        )
        packer = _packer()
        return b"\x9f" + b"".join(packer.pack(f) for f in head)

    def failed(self, error: str, at_ms: int) -> TaskMessage:
        """A copy recording one more failed attempt with ``error`` (cut to MAX_ERROR_CHARS)."""
        errors = self.errors
        if self.last_error is not None:
            text = _head(self.last_error, EARLIER_ERROR_CHARS)
            earlier = (self.retried, self.last_failed_at, text)
            errors = (*errors, earlier)[-MAX_EARLIER_ERRORS:]
        return replace(
            self,
            retried=self.retried + 1,
            last_error=_tail(error, MAX_ERROR_CHARS),
            last_failed_at=at_ms,
            errors=errors,
        )

    def attempt_errors(self) -> list[AttemptError]:
        """Every kept attempt error, oldest first, the last attempt's (full) error included."""
        out = list(self.errors)
        if self.last_error is not None:
            out.append((self.retried, self.last_failed_at, self.last_error))
        return out


def _tail(text: str, limit: int) -> str:
    return "…" + text[-limit:] if len(text) > limit else text


def _head(text: str, limit: int) -> str:
    return text[:limit] + "…" if len(text) > limit else text


# Stored order: version, type, payload, enqueued_at, max_retry, retried, timeout, deadline,
# retention, unique, headers, last_error, last_failed_at, errors, parents, key. Fields that a
# fresh task leaves at their default come last, so a pending task stores only the first four.
_REQUIRED = 3  # version, type, payload
_DEFAULTS: tuple[Any, ...] = (
    VERSION, "", None, 0, 25, 0, 0, 0, 0, None, None, None, 0, None, None, None
)  # fmt: skip
HELD_FIELDS = 15
"""Fields of a held message once released (``encode_held``: 0x9f is a 15-element array)."""
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
    """Decode stored bytes into a message, checking the shape and the type of every field.

    Raises:
        CorruptTaskError: the bytes are not a message this version understands (not msgpack,
            trailing bytes, a map with an unhashable key, a field of the wrong type or range).
    """
    fields = _unpack(data, task_id)
    if not isinstance(fields, list) or len(fields) < _REQUIRED:
        raise CorruptTaskError(f"task {task_id!r}: stored message is not a task array")
    version = fields[0]
    if type(version) is not int or version != VERSION:
        raise CorruptTaskError(
            f"task {task_id!r}: message version {version!r} is not supported by this rq_sched "
            f"(reads version {VERSION}); upgrade rq_sched on this host"
        )
    fields.extend(_DEFAULTS[len(fields) :])
    if not isinstance(fields[1], str):
        raise CorruptTaskError(f"task {task_id!r}: task type is not a string")
    for index, name, check, expected in _CHECKED_FIELDS:
        if not check(fields[index]):
            raise CorruptTaskError(
                f"task {task_id!r}: malformed message: field {name} holds "
                f"{fields[index]!r}, expected {expected}"
            )
    return TaskMessage(
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
        errors=tuple((e[0], e[1], e[2]) for e in fields[13] or ()),
        parents=None if fields[14] is None else tuple((p[0], p[1], p[2], p[3]) for p in fields[14]),
        key=fields[15],
    )


def unique_of(data: bytes) -> str | None:
    """The uniqueness digest stored in ``data``, read even when the rest does not decode, so
    archiving a corrupt unique task can still release its lock; None if there is none."""
    try:
        fields = _unpack(data, "?")
    except CorruptTaskError:
        return None
    digest = fields[_UNIQUE] if isinstance(fields, list) and len(fields) > _UNIQUE else None
    return digest if isinstance(digest, str) else None


def encode_result(value: object) -> bytes:
    """The bytes stored as a task's result. The contract: ``bytes`` are kept as they are, a
    ``str`` as its UTF-8 bytes (both read back unchanged, as the inspector shows them), and any
    other value as its msgpack encoding (read it back with ``msgpack.unpackb``).

    Raises:
        ValidationError: the value cannot be stored (a ``str`` with lone surrogates, or a value
            msgpack cannot encode), saying what to return instead.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    try:
        if isinstance(value, str):
            return value.encode()
        return bytes(_packer().pack(value))
    except (TypeError, ValueError, OverflowError) as exc:
        # A failed pack can leave the shared packer's buffer half written.
        _local.__dict__.pop("packer", None)
        raise ValidationError(
            f"the task's result {type(value).__name__} cannot be stored ({exc}); return or "
            "write bytes, a str, or a msgpack-encodable value (None, bool, int, float, str, "
            "bytes, and lists and dicts of them)"
        ) from exc


def check_progress(value: object, message: object) -> None:
    """Refuse a progress report that cannot be stored.

    Raises:
        ValidationError: ``message`` is not a str or None, or ``value`` is not msgpack-encodable.
    """
    if message is not None and not isinstance(message, str):
        raise ValidationError(f"progress message must be a str or None, got {message!r}")
    encode_progress(0, value, message, 0)


def encode_progress(token: int, value: object, message: str | None, at_ms: int) -> bytes:
    """A progress report as stored in ``{q}:progress``: msgpack ``[token, value, message, at]``.

    Raises:
        ValidationError: ``value`` (or ``message``) cannot be encoded.
    """
    try:
        return bytes(msgpack.packb([token, value, message, at_ms], use_bin_type=True))
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValidationError(
            f"progress value {type(value).__name__} cannot be stored ({exc}); report a number, "
            "a str, or another msgpack-encodable value"
        ) from exc


def decode_progress(data: bytes) -> tuple[int, Any, str | None, int] | None:
    """``(token, value, message, at ms)`` from :func:`encode_progress`; None when ``data``
    is not such a record (it is then not shown)."""
    try:
        fields = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    if not (isinstance(fields, list) and len(fields) == 4):
        return None
    token, value, message, at_ms = fields
    if type(token) is not int or type(at_ms) is not int or not _optional_str(message):
        return None
    return token, value, message, at_ms


def _unpack(data: bytes, task_id: str) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # TypeError: a map whose key is a list or a map (unhashable in Python).
        raise CorruptTaskError(f"task {task_id!r}: stored message is not msgpack ({exc})") from exc


MAX_MS = 253_402_300_799_999
"""Largest epoch-ms time a message may hold (the end of year 9999, what datetime can show)."""
_UNIQUE = 9


def _count(limit: int) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        return type(value) is int and 0 <= value <= limit

    return check


def _seconds(value: object) -> bool:
    return type(value) in (int, float) and 0 <= value < math.inf  # type: ignore[operator]


def _optional_str(value: object) -> bool:
    return value is None or isinstance(value, str)


def _errors(value: object) -> bool:
    return value is None or (
        isinstance(value, list)
        and len(value) <= MAX_EARLIER_ERRORS
        and all(
            isinstance(e, list)
            and len(e) == 3  # (attempt, failed_at, text)
            and type(e[0]) is int
            and e[0] >= 0
            and type(e[1]) is int
            and 0 <= e[1] <= MAX_MS
            and isinstance(e[2], str)
            for e in value
        )
    )


def _parents(value: object) -> bool:
    return value is None or (
        isinstance(value, list)
        and all(
            isinstance(p, list)
            and len(p) == 4
            and p[0] in ("completed", "archived", "deleted")
            and (p[1] is None or isinstance(p[1], bytes | str))
            and isinstance(p[2], str)
            and isinstance(p[3], str)
            for p in value
        )
    )


def _headers(value: object) -> bool:
    return value is None or (
        isinstance(value, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    )


_MS = "epoch ms (an int >= 0)"
_CHECKED_FIELDS: tuple[tuple[int, str, Callable[[object], bool], str], ...] = (
    # Counts go up to what msgpack holds: the client bounds none of them tighter.
    (3, "enqueued_at", _count(MAX_MS), _MS),
    (4, "max_retry", _count(2**64 - 1), "an int >= 0"),
    (5, "retried", _count(2**64 - 1), "an int >= 0"),
    (6, "timeout", _seconds, "seconds (a finite number >= 0)"),
    (7, "deadline", _count(MAX_MS), _MS),
    (8, "retention", _count(2**64 - 1), "seconds (an int >= 0)"),
    (9, "unique", _optional_str, "a str or nil"),
    (10, "headers", _headers, "a map of str to str, or nil"),
    (11, "last_error", _optional_str, "a str or nil"),
    (12, "last_failed_at", _count(MAX_MS), _MS),
    (13, "errors", _errors, f"nil or up to {MAX_EARLIER_ERRORS} [attempt, epoch ms, text] arrays"),
    (14, "parents", _parents, "nil or [outcome, data, queue, id] arrays"),
    (15, "key", _optional_str, "a str or nil"),
)
