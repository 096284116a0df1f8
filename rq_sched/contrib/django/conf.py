"""The ``RQ_SCHED`` Django setting: read, checked and turned into one frozen dataclass.

::

    RQ_SCHED = {
        "URL": "redis://localhost:6379/0",  # the only key most projects set
        "NAMESPACE": "rqs",
        "CLUSTER": False,
        "MAX_PAYLOAD_BYTES": 512 * 1024,
        "ROUTER": "myapp.tasks:router",     # what `manage.py rqsched_worker` serves
        "QUEUES": {"critical": 6, "default": 3, "low": 1},
        "CONCURRENCY": 10,
        "PROCESSES": 0,
        "SCHEDULE": "schedule.toml",        # `manage.py rqsched_scheduler`: a TOML file ...
        "SCHEDULE_APP": "myapp.schedule:scheduler",  # ... and/or entries from code
        "DASHBOARD_READ_ONLY": False,
    }

Every key is optional. An unknown key or a value of the wrong type raises
``ImproperlyConfigured`` when Django starts (the app's ``ready()``), naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from rq_sched.errors import ValidationError
from rq_sched.keys import DEFAULT_NAMESPACE, check_namespace
from rq_sched.ops import ArchiveLimits
from rq_sched.options import DEFAULT_MAX_PAYLOAD_BYTES

SETTING = "RQ_SCHED"
DEFAULT_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The checked ``RQ_SCHED`` setting; field ``x_y`` is key ``X_Y``."""

    url: str = DEFAULT_URL
    namespace: str = DEFAULT_NAMESPACE
    cluster: bool = False
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    router: str | None = None
    queues: Mapping[str, int] = field(default_factory=lambda: {"default": 1})
    concurrency: int = 10
    processes: int = 0
    schedule: str | None = None
    schedule_app: str | None = None
    dashboard_read_only: bool = False
    archive_max_size: int = 10_000
    """Archived tasks kept per queue (every server of a queue should keep the same)."""
    archive_max_age: int = 90 * 86400
    """Seconds an archived task is kept."""
    lease: int = 10
    """Seconds of a worker's lease on a task (renewed while its handler runs)."""

    def __post_init__(self) -> None:
        for name, kind in _TYPES.items():
            value = getattr(self, name)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValidationError(
                    f"{SETTING}[{name.upper()!r}] must be {_KIND_NAMES[name]}, got {value!r}"
                )
        check_namespace(self.namespace)
        ArchiveLimits(max_size=self.archive_max_size, max_age_s=self.archive_max_age)
        if self.lease < 1:
            raise ValidationError(f"{SETTING}['LEASE'] must be >= 1 second, got {self.lease!r}")
        for queue, weight in self.queues.items():
            if not isinstance(queue, str) or not isinstance(weight, int) or weight < 1:
                raise ValidationError(
                    f"{SETTING}['QUEUES'] maps queue names to weights >= 1, e.g. "
                    f"{{'default': 1}}; got {queue!r}: {weight!r}"
                )

    @property
    def queues_text(self) -> str:
        """The queues as ``rq-sched worker --queues`` takes them (``critical=6,default=1``)."""
        return ",".join(f"{name}={weight}" for name, weight in self.queues.items())


_TYPES: dict[str, type | tuple[type, ...]] = {
    "url": str,
    "namespace": str,
    "cluster": bool,
    "max_payload_bytes": int,
    "router": (str, type(None)),
    "queues": Mapping,
    "concurrency": int,
    "processes": int,
    "schedule": (str, type(None)),
    "schedule_app": (str, type(None)),
    "dashboard_read_only": bool,
    "archive_max_size": int,
    "archive_max_age": int,
    "lease": int,
}
_KIND_NAMES = {
    name: "a str or None" if isinstance(kind, tuple) else f"a {kind.__name__}"
    for name, kind in _TYPES.items()
}


def settings() -> Settings:
    """The ``RQ_SCHED`` setting, checked (read anew each call: tests override settings).

    Raises:
        ImproperlyConfigured: the setting is not a dict, has an unknown key or a bad value.
    """
    raw: Any = getattr(django_settings, SETTING, {})
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(f"{SETTING} must be a dict, got {raw!r}")
    known = {name.upper(): name for name in _TYPES}
    unknown = sorted(str(key) for key in raw if key not in known)
    if unknown:
        raise ImproperlyConfigured(
            f"{SETTING} has unknown key(s) {unknown}; the keys are {sorted(known)}"
        )
    try:
        return Settings(**{known[key]: value for key, value in raw.items()})
    except ValidationError as exc:
        raise ImproperlyConfigured(str(exc)) from exc
