"""Debounce and throttle on enqueue, keyed by a dedup key of the caller's choosing.

- **Debounce** (:meth:`rq_sched.Client.debounce`): the first call under a key enqueues a task
  that waits ``window`` before it runs; every call under the same key while it waits replaces
  its message with the newest (payload, headers, options), so one task runs per window with the
  latest data. Once it is due, the next call starts a new window. One script
  (``lua/debounce.lua``) checks and replaces, so concurrent producers cannot both add a task.
- **Throttle** (:meth:`rq_sched.Client.throttle`): the first call under a key in a ``window``
  enqueues its task; the rest in that window are dropped and reported to the caller with the id
  of the task that was kept. The window is a lock with a TTL taken atomically by the enqueue
  script (as for ``unique=``), but it is not released when the task finishes: the window is
  time, not the task's life.

Neither takes ``unique=`` (they are already deduplicating) nor, for debounce, ``process_in`` /
``process_at`` (the window is the delay).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rq_sched import scripts
from rq_sched.durations import duration_seconds
from rq_sched.errors import ValidationError, error_for_code
from rq_sched.keys import QueueKeys
from rq_sched.models import NewTask
from rq_sched.options import Prepared
from rq_sched.scripts import Call

MAX_KEY_CHARS = 1000
"""The longest dedup key accepted (it is hashed into the Redis key name)."""
KEY_KEPT_MS = 60_000
"""How long a debounce key outlives its task's due time (the task's state is checked anyway)."""


@dataclass(frozen=True, slots=True)
class Debounced:
    """What a debounce call did."""

    id: str
    """The task that will run for this window."""
    replaced: bool
    """True: a task was already waiting under the key, and now carries this call's message."""


@dataclass(frozen=True, slots=True)
class Throttled:
    """What a throttle call did."""

    id: str | None
    """The task kept for this window: this call's own, or (``dropped``) the earlier one (None
    if that window ended just as this call was dropped)."""
    dropped: bool
    """True: this call's task was not enqueued (a task was kept in this window already)."""


def check_key(key: object) -> str:
    """``key`` if it is a usable dedup key (a non-empty str of at most 1000 characters)."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
        raise ValidationError(
            f"key must be a non-empty str of at most {MAX_KEY_CHARS} characters, such as "
            f"'user:42', got {key!r}"
        )
    return key


def check_window(window: object) -> int:
    """``window`` (a timedelta or seconds, at least 1 ms) in ms."""
    seconds = duration_seconds(window, "window", allow_zero=False, allow_text=False)
    return max(1, round(seconds * 1000))


def refuse_options(kind: str, options: dict[str, Any]) -> None:
    """Raise for an option that a debounce or throttle task does not take.

    Raises:
        ValidationError: ``unique`` (either kind), ``process_in`` / ``process_at`` (debounce).
    """
    refused = {"unique"} | ({"process_in", "process_at"} if kind == "debounce" else set())
    given = sorted(name for name in refused if options.get(name) is not None)
    if given:
        raise ValidationError(
            f"{kind} does not take {', '.join(given)}"
            + (": the window is the delay" if kind == "debounce" else "")
        )


def new_task(
    kind: str, task_type: str, payload: Any, window_ms: int, options: dict[str, Any]
) -> NewTask:
    """The task of a debounce or throttle call, its options checked for what does not apply."""
    refuse_options(kind, options)
    if kind == "debounce":
        options = {**options, "process_in": timedelta(milliseconds=window_ms)}
    return NewTask(type=task_type, payload=payload, **options)


def debounce_call(keys: QueueKeys, task: Prepared, key: str) -> Call:
    """Enqueue ``task`` (due at the window's end) or give a waiting task its message."""
    return (
        scripts.load("debounce"),
        (
            keys.msg,
            keys.scheduled,
            keys.marker,
            keys.archived,
            keys.result,
            keys.debounce(key),
            keys.held,
        ),
        (task.id, task.encoded, task.due_ms, task.due_ms - task.message.enqueued_at + KEY_KEPT_MS),
    )


def throttle_call(keys: QueueKeys, task: Prepared, key: str, window_ms: int) -> Call:
    """The enqueue script with the throttle window as its lock (never released by the task)."""
    return (
        scripts.load("enqueue"),
        (
            keys.msg,
            keys.pending,
            keys.scheduled,
            keys.marker,
            keys.archived,
            keys.result,
            keys.throttle(key),
            keys.guard(""),
            keys.held,
            *keys.keyed,
        ),
        (task.id, task.encoded, task.due_ms, window_ms, "", task.message.key or ""),
    )


def debounced(reply: Any, task: Prepared) -> Debounced:
    """The outcome of a :func:`debounce_call`; raises on a failure code."""
    if isinstance(reply, int):
        raise error_for_code(reply, queue=task.queue, task_id=task.id)
    code, task_id = reply[0], reply[1]
    return Debounced(task_id.decode() if isinstance(task_id, bytes) else str(task_id), code == 2)
