"""Periodic entries: what one is, how it is validated, and loading a set of them from TOML.

An :class:`Entry` is checked completely when it is built (spec, time zone, queue, task options,
payload encodability), so a scheduler never holds an entry that would fail at its first tick.
Every error names the entry. The same key names serve ``Scheduler.add(...)`` keyword arguments,
mappings returned by an app's entry function, and the ``[[entry]]`` tables of a config file::

    [[entry]]
    name = "nightly-report"          # required, unique; the entry id is derived from it
    spec = "30 2 * * *"              # required; see rq_sched.scheduler.cron
    type = "report:nightly"          # required; the task type
    payload = { format = "pdf" }     # optional, any TOML value
    queue = "reports"                # default "default"
    timezone = "Europe/Berlin"       # default "UTC"
    misfire = "run_once"             # "skip" (default) or "run_once"
    grace = "1h"                     # run_once: how late a missed tick may still run
    max_retry = 3                    # task options, by their enqueue names:
    timeout = "10m"                  #   max_retry, timeout, deadline, unique, retention, headers
    deadline = "2h"                  #   (deadline is relative to the tick)

Durations are seconds (numbers) or strings such as ``"90s"``, ``"10m"``, ``"1h30m"``, ``"1d"``.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from rq_sched.clock import from_ms
from rq_sched.durations import duration_seconds
from rq_sched.errors import ValidationError
from rq_sched.models import NewTask
from rq_sched.options import DEFAULT_MAX_PAYLOAD_BYTES, Prepared, check_queue, check_type, prepare
from rq_sched.scheduler.cron import Schedule, parse_spec, zone

MISFIRE_POLICIES = ("skip", "run_once")
DEFAULT_GRACE_S = 3600.0
MAX_NAME_CHARS = 200
TASK_OPTIONS = ("max_retry", "timeout", "deadline", "unique", "retention", "headers")
ENTRY_KEYS = (
    "name",
    "spec",
    "type",
    "payload",
    "queue",
    "timezone",
    "misfire",
    "grace",
    *TASK_OPTIONS,
)
REQUIRED_KEYS = ("name", "spec", "type")
_DURATION_KEYS = ("grace", "timeout", "deadline", "unique", "retention")
_SAFE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def entry_id(name: str) -> str:
    """The stable id of the entry called ``name``: the name itself when it is short and made of
    ``[A-Za-z0-9_.-]``, else a readable slug plus a hash of the full name. Task ids of its ticks are
    ``cron:<entry id>:<fire time ms>``, so the id never contains ``:``."""
    if _SAFE_ID.fullmatch(name):
        return name
    slug = _UNSAFE_CHARS.sub("_", name).strip("_")[:40] or "entry"
    digest = hashlib.blake2b(name.encode(), digest_size=5).hexdigest()
    return f"{slug}-{digest}"


def tick_task_id(entry_id: str, fire_ms: int) -> str:
    """The task id of one tick: equal in every scheduler process, so duplicates collide."""
    return f"cron:{entry_id}:{fire_ms}"


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One periodic entry, validated on construction. Durations are in seconds.

    Raises:
        ValidationError: any field is invalid; the message names the entry.
    """

    name: str
    spec: str
    type: str
    payload: Any = None
    queue: str = "default"
    timezone: str = "UTC"
    misfire: str = "skip"
    grace: float = DEFAULT_GRACE_S
    """For ``misfire="run_once"``: the newest missed tick still runs if at most this late."""
    max_retry: int = 25
    timeout: float | None = None
    deadline: float | None = None
    """Seconds after the tick after which the task must not run any more."""
    unique: float | None = None
    retention: float | None = None
    headers: dict[str, str] | None = None
    id: str = field(init=False)
    schedule: Schedule = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValidationError(
                f"schedule entry name must be a non-empty string, got {self.name!r}"
            )
        if len(self.name) > MAX_NAME_CHARS:
            raise ValidationError(
                f"schedule entry name is {len(self.name)} chars; the limit is {MAX_NAME_CHARS}"
            )
        if not self.name.isprintable():
            # A lone surrogate cannot be stored as UTF-8; control characters would rewrite an
            # operator's terminal when the CLI lists the entry.
            raise ValidationError(
                f"schedule entry name {self.name!r} has a lone surrogate or control character; "
                "name it with printable text, e.g. 'nightly-report'"
            )
        try:
            self._validate()
        except ValidationError as exc:
            raise ValidationError(f"schedule entry {self.name!r}: {exc}") from None

    def _validate(self) -> None:
        object.__setattr__(self, "id", entry_id(self.name))
        zone(self.timezone)
        object.__setattr__(self, "schedule", parse_spec(self.spec, self.timezone))
        check_type(self.type)
        check_queue(self.queue)
        if self.misfire not in MISFIRE_POLICIES:
            raise ValidationError(
                f"misfire must be one of {', '.join(map(repr, MISFIRE_POLICIES))}, "
                f"got {self.misfire!r}"
            )
        duration_seconds(self.grace, "grace", allow_zero=False, allow_text=False)
        if self.deadline is not None:
            duration_seconds(self.deadline, "deadline", allow_zero=False, allow_text=False)
        probe_ms = self.schedule.next_after(0)  # any tick will do: this checks options and payload
        self.prepare(tick_task_id(self.id, probe_ms), probe_ms, probe_ms)

    def prepare(self, task_id: str, fire_ms: int, now_ms: int) -> Prepared:
        """The task for the tick at ``fire_ms``, enqueued at ``now_ms``.

        Raises:
            ValidationError: the task cannot be built (e.g. its deadline has passed).
        """
        deadline = from_ms(fire_ms + round(self.deadline * 1000)) if self.deadline else None
        options = {name: getattr(self, name) for name in TASK_OPTIONS if name != "deadline"}
        task = NewTask(
            type=self.type,
            payload=self.payload,
            queue=self.queue,
            task_id=task_id,
            deadline=deadline,
            **options,
        )
        return prepare(task, now_ms=now_ms, max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES)


def entry_from_mapping(data: Mapping[str, Any], *, where: str = "") -> Entry:
    """Build an :class:`Entry` from config keys (see the module docstring).

    Args:
        data: the entry's keys and values.
        where: where it came from, for error messages (e.g. ``"schedule.toml, entry #2"``).

    Raises:
        ValidationError: a key is unknown or missing, or a value is invalid.
    """
    label = _label(data, where)
    if not isinstance(data, Mapping):
        raise ValidationError(f"{label}: expected a table of entry keys, got {data!r}")
    unknown = [key for key in data if key not in ENTRY_KEYS]
    if unknown:
        raise ValidationError(f"{label}: {_unknown_message(str(unknown[0]))}")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise ValidationError(f"{label}: missing required key {missing[0]!r}")
    values = dict(data)
    try:
        for key in _DURATION_KEYS:
            if values.get(key) is not None:
                values[key] = duration_seconds(values[key], key)
        return Entry(**values)
    except ValidationError as exc:
        problem = str(exc)
        own_prefix = f"schedule entry {values.get('name')!r}: "
        if problem.startswith(own_prefix):
            problem = problem[len(own_prefix) :]
        raise ValidationError(f"{label}: {problem}") from None
    except TypeError as exc:  # a value of the wrong type where a dataclass field expects another
        raise ValidationError(f"{label}: {exc}") from None


def build_entry(
    name: str,
    spec: str,
    type: str,
    payload: Any = None,
    *,
    queue: str = "default",
    timezone: str = "UTC",
    misfire: str = "skip",
    grace: timedelta | float | str | None = None,
    **task_options: Any,
) -> Entry:
    """An :class:`Entry` from ``Scheduler.add``-style arguments (durations may be timedeltas).

    Raises:
        ValidationError: an option is unknown or a value is invalid.
    """
    data: dict[str, Any] = {
        "name": name,
        "spec": spec,
        "type": type,
        "payload": payload,
        "queue": queue,
        "timezone": timezone,
        "misfire": misfire,
        **task_options,
    }
    if grace is not None:
        data["grace"] = grace
    return entry_from_mapping(data)


def check_unique_names(entries: Iterable[Entry], *, where: str = "") -> list[Entry]:
    """The entries as a list, if no two share a name or an id.

    Raises:
        ValidationError: a duplicate, named in the message.
    """
    seen: dict[str, Entry] = {}
    result = []
    prefix = f"{where}: " if where else ""
    for entry in entries:
        other = seen.get(entry.id)
        if other is not None:
            what = "name" if other.name == entry.name else f"id {entry.id!r} as {other.name!r}"
            raise ValidationError(
                f"{prefix}duplicate schedule entry {entry.name!r}: another entry has the same "
                f"{what}; entry names must be unique"
            )
        seen[entry.id] = entry
        result.append(entry)
    return result


def load_config(path: Path) -> list[Entry]:
    """Read and validate every ``[[entry]]`` of the TOML file at ``path``.

    Raises:
        ValidationError: the file is unreadable, not TOML, or an entry is invalid (the message
            names the file and the entry).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError(
            f"cannot read schedule config {path}: {exc.strerror or exc}"
        ) from None
    return parse_config(text, source=str(path))


def parse_config(text: str, *, source: str = "<config>") -> list[Entry]:
    """Validate the entries of TOML ``text`` (see :func:`load_config`).

    Raises:
        ValidationError: the text is not TOML or an entry is invalid.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"{source} is not valid TOML: {exc}") from None
    extra = [key for key in data if key != "entry"]
    if extra:
        raise ValidationError(
            f"{source}: unknown top-level key {extra[0]!r}; the file holds only [[entry]] tables"
        )
    tables = data.get("entry", [])
    if not isinstance(tables, list):
        raise ValidationError(f"{source}: 'entry' must be an array of tables: write [[entry]]")
    entries = [
        entry_from_mapping(table, where=f"{source}, entry #{number}")
        for number, table in enumerate(tables, start=1)
    ]
    return check_unique_names(entries, where=source)


def _label(data: object, where: str) -> str:
    name = data.get("name") if isinstance(data, Mapping) else None
    named = f"schedule entry {name!r}" if isinstance(name, str) else "schedule entry"
    return f"{named} ({where})" if where else named


def _unknown_message(key: str) -> str:
    close = difflib.get_close_matches(key, ENTRY_KEYS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown option {key!r}{hint} Known options: {', '.join(ENTRY_KEYS)}"
