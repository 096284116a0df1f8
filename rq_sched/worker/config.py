"""Worker server configuration: one frozen, keyword-only dataclass, validated on construction."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from rq_sched.backoff import Backoff, default_backoff
from rq_sched.durations import duration_seconds
from rq_sched.errors import ValidationError
from rq_sched.flow import FlowLimits, check_limits
from rq_sched.keys import DEFAULT_NAMESPACE, check_namespace
from rq_sched.ops import ArchiveLimits
from rq_sched.options import check_stored_queue
from rq_sched.router import Middleware


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """How a worker server runs. Every duration is in seconds.

    ``queues`` maps queue names to weights: with ``strict_priority=False`` a queue of weight 6 is
    asked first about six times as often as one of weight 1; with ``strict_priority=True`` a
    queue is asked only when every heavier queue is empty. A sharded queue (``rq_sched.shards``)
    is named once: the server serves its shards and its base queue, which share its weight.
    """

    queues: Mapping[str, int] = field(default_factory=lambda: {"default": 1})
    strict_priority: bool = False
    concurrency: int = 10
    """Handlers running at once (async tasks, threads and child processes together)."""
    processes: int = 0
    """0: sync handlers run in threads. N > 0: every sync handler runs in a child process,
    at most N at once (handlers registered with ``process=True`` always do)."""
    lease_duration: float = 10.0
    """A dequeued task's lease; renewed every third of it while the handler runs. A worker
    that dies loses its tasks' leases, and they run again soon after it expires."""
    shutdown_timeout: float = 10.0
    batch_size: int = 100
    """Most tasks taken from Redis in one call."""
    idle_timeout: float = 30.0
    """Longest single blocking wait for a wake-up; after it, queues are checked anyway."""
    forward_sweep_interval: float = 30.0
    """Safety sweep for due tasks whose wake-up was lost (normally forwarded on time)."""
    recover_interval: float = 4.0
    heartbeat_interval: float = 5.0
    janitor_interval: float = 60.0
    archive_limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    flow: Mapping[str, FlowLimits] = field(default_factory=dict)
    """Flow limits per queue (rate limit, concurrency cap; see :mod:`rq_sched.flow`), stored
    in Redis when the server starts; an operator may change them at run time until the next
    start of a server that sets them."""
    backoff: Backoff = default_backoff
    middleware: tuple[Middleware, ...] = ()
    namespace: str = DEFAULT_NAMESPACE
    loop_failures_allowed: int = 5
    """Unexpected failures one background loop may have within ``loop_failure_window`` before
    the server calls itself unhealthy, stops and exits non-zero (each is restarted until then)."""
    loop_failure_window: float = 60.0

    def __post_init__(self) -> None:
        check_namespace(self.namespace)
        if not isinstance(self.queues, Mapping):
            raise ValidationError(
                f"queues must map queue names to weights, e.g. {{'default': 1}}, "
                f"got {self.queues!r}"
            )
        if not self.queues:
            raise ValidationError("queues must name at least one queue, e.g. {'default': 1}")
        for name, weight in self.queues.items():
            check_stored_queue(name)
            if not _is_int(weight) or weight < 1:
                raise ValidationError(f"queue {name!r}: weight must be an int >= 1, got {weight!r}")
        for name in ("concurrency", "batch_size", "loop_failures_allowed"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValidationError(f"{name} must be an int >= 1, got {value!r}")
            if value > MAX_COUNT:
                raise ValidationError(f"{name} must be an int from 1 to {MAX_COUNT}, got {value!r}")
        if not _is_int(self.processes) or self.processes < 0:
            raise ValidationError(f"processes must be an int >= 0, got {self.processes!r}")
        for name in (
            "lease_duration",
            "idle_timeout",
            "forward_sweep_interval",
            "recover_interval",
            "heartbeat_interval",
            "janitor_interval",
            "loop_failure_window",
        ):
            _check_duration(self, name, allow_zero=False)
        _check_duration(self, "shutdown_timeout", allow_zero=True)
        _check_archive_limits(self.archive_limits)
        _check_flow(self.flow, self.queues)

    @property
    def process_slots(self) -> int:
        """How many child processes may run handlers at once."""
        return self.processes or os.cpu_count() or 1


def _check_archive_limits(limits: object) -> None:
    if not isinstance(limits, ArchiveLimits):
        raise ValidationError(
            "archive_limits must be rq_sched.ArchiveLimits(max_size=..., max_age_s=...), "
            f"got {limits!r}"
        )


def _check_flow(flow: object, queues: Mapping[str, int]) -> None:
    if not isinstance(flow, Mapping):
        raise ValidationError(
            f"flow must map queue names to rq_sched.FlowLimits(...), got {flow!r}"
        )
    for queue, limits in flow.items():
        if queue not in queues:
            raise ValidationError(
                f"flow names queue {queue!r}, which this server does not serve "
                f"(its queues: {', '.join(queues)})"
            )
        check_limits(limits)


def parse_queues(text: str) -> dict[str, int]:
    """Parse ``critical=6,default=3,low=1`` (a bare name has weight 1).

    Raises:
        ValidationError: malformed text, with what was expected.
    """
    queues: dict[str, int] = {}
    for part in text.split(","):
        name, _, weight = part.strip().partition("=")
        if not name:
            raise ValidationError(
                f"bad --queues {text!r}; expected e.g. critical=6,default=3,low=1"
            )
        try:
            queues[check_stored_queue(name)] = int(weight) if weight else 1
        except ValueError as exc:
            raise ValidationError(f"bad weight in --queues {part!r}: {exc}") from exc
    return queues


MAX_COUNT = 100_000
"""The largest concurrency, batch size or failure allowance a server accepts."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_duration(config: ServerConfig, name: str, *, allow_zero: bool) -> None:
    """The one duration check (finite, in range); a timedelta is stored as seconds."""
    seconds = duration_seconds(getattr(config, name), name, allow_zero=allow_zero, allow_text=False)
    object.__setattr__(config, name, seconds)
