"""go-queue dq's wire format: job bodies, job ids, put parameters and delay rounding.

These are a contract with Go services on the same tubes; every value here matches go-queue's
``dq`` package byte for byte:

- body: the target time as decimal Unix nanoseconds, ``/``, then the raw body;
- id: ``endpoint/tube/jobid``, the replicas' ids joined by ``,``;
- put: priority 2, TTR 5 s, delay in whole seconds.

One deliberate difference: dq truncates the delay to whole seconds, so its jobs become ready up
to a second *before* the time written in their body. :func:`delay_seconds` rounds up instead,
so a job never fires early (and at most a second late).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rq_sched.dq.errors import DqConfigError
from rq_sched.dq.errors import UnwrapError as UnwrapError  # noqa: PLC0414 - re-export

PUT_PRIORITY = 2
"""Priority of every put (go-queue's ``PriNormal``)."""
TTR_SECONDS = 5
"""Time to run of every put (go-queue's ``defaultTimeToRun``)."""
ID_SEP = ","
TIME_SEP = b"/"
DEDUP_TTL_MS = 3_600_500
"""TTL of the consumer's dedup key: go-queue's 3600 s lock plus its 500 ms tolerance."""
STALE_AFTER = timedelta(minutes=30)
"""go-queue's consumer drops jobs reserved more than this long after their target time."""
MAX_DELAY_SECONDS = 2**32 - 1
"""beanstalkd keeps delays as an unsigned 32-bit count of seconds."""

_NS = 1_000_000_000
_INT64_MAX = 2**63 - 1
# go-queue looks for the separator in the first len(str(now_ns)) + 2 bytes: 21 until 2286.
_MAX_CHECK_BYTES = 21
_TIME_PREFIX = re.compile(rb"[+-]?[0-9]+")


@dataclass(frozen=True, slots=True)
class Unwrapped:
    """A wrapped body taken apart."""

    at_ns: int
    """Target time, Unix nanoseconds."""
    body: bytes
    """The raw body the producer passed."""

    @property
    def at(self) -> datetime:
        """Target time as an aware UTC datetime (microsecond precision)."""
        return datetime.fromtimestamp(0, tz=UTC) + timedelta(microseconds=self.at_ns // 1000)


def wrap(body: bytes, at_ns: int) -> bytes:
    """``<at_ns>/<body>``, the body dq puts on the wire."""
    return b"%d/%s" % (at_ns, body)


def unwrap(wrapped: bytes) -> Unwrapped:
    """Split a wrapped body as go-queue's consumer does.

    The ``/`` must sit within the first 21 bytes and be preceded by a base-10 int64 (an
    optional sign, then digits).

    Raises:
        UnwrapError: the body does not have that shape.
    """
    pos = wrapped.find(TIME_SEP, 0, _MAX_CHECK_BYTES)
    if pos < 0:
        raise UnwrapError(f"no '/' in the first {_MAX_CHECK_BYTES} bytes: {wrapped[:40]!r}")
    prefix = wrapped[:pos]
    if not _TIME_PREFIX.fullmatch(prefix):
        raise UnwrapError(f"time prefix {prefix!r} is not a base-10 integer")
    at_ns = int(prefix)
    if not -_INT64_MAX - 1 <= at_ns <= _INT64_MAX:
        raise UnwrapError(f"time prefix {prefix!r} does not fit in an int64")
    return Unwrapped(at_ns, wrapped[pos + 1 :])


def to_ns(when: datetime) -> int:
    """An aware datetime as exact Unix nanoseconds.

    Raises:
        DqConfigError: ``when`` is naive.
    """
    if not isinstance(when, datetime):
        raise DqConfigError(f"expected a datetime, got {type(when).__name__}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise DqConfigError(
            f"datetime {when.isoformat()} is naive; pass an aware one, "
            "e.g. datetime.now(timezone.utc) + timedelta(minutes=5)"
        )
    since_epoch = when - datetime.fromtimestamp(0, tz=UTC)
    return since_epoch // timedelta(microseconds=1) * 1000


def duration_ns(delay: timedelta | float, what: str = "delay") -> int:
    """A non-negative delay (timedelta or seconds) as integer nanoseconds.

    Raises:
        DqConfigError: the delay is negative, not a number, or too long for beanstalkd.
    """
    if isinstance(delay, timedelta):
        ns = delay // timedelta(microseconds=1) * 1000
    elif isinstance(delay, int) and not isinstance(delay, bool):
        ns = delay * _NS  # exact: an int of any size (10**400) reaches the range checks below
    elif isinstance(delay, float):
        if not math.isfinite(delay):
            raise DqConfigError(f"{what} must be a finite number of seconds, got {delay!r}")
        ns = round(delay * _NS)
    else:
        raise DqConfigError(f"{what} must be a timedelta or seconds, got {type(delay).__name__}")
    if ns < 0:
        raise DqConfigError(f"{what} must be >= 0, got {delay!r}")
    if ns > MAX_DELAY_SECONDS * _NS:
        raise DqConfigError(f"{what} {delay!r} is longer than beanstalkd's {MAX_DELAY_SECONDS} s")
    return ns


def delay_seconds(remaining_ns: int) -> int:
    """Whole seconds of beanstalkd delay for a job due in ``remaining_ns``: rounded up (a job
    must never become ready before its target time), clamped to beanstalkd's range."""
    if remaining_ns <= 0:
        return 0
    return min(-(-remaining_ns // _NS), MAX_DELAY_SECONDS)


@dataclass(frozen=True, slots=True)
class JobRef:
    """One replica of a job: which node and tube hold it, under which beanstalkd id."""

    endpoint: str
    tube: str
    job_id: int

    def __str__(self) -> str:
        return f"{self.endpoint}/{self.tube}/{self.job_id}"

    @classmethod
    def parse(cls, text: str) -> JobRef:
        """Parse ``endpoint/tube/jobid``. The tube may itself contain ``/`` (beanstalkd allows
        it), so the endpoint is the first field and the job id the last.

        Raises:
            DqConfigError: ``text`` is not of that form.
        """
        endpoint, _, rest = text.partition("/")
        tube, _, job_id = rest.rpartition("/")
        if not tube or not job_id.isdigit() or ":" not in endpoint:
            raise DqConfigError(
                f"job id {text!r} is not 'host:port/tube/jobid' (as Producer.delay/at return)"
            )
        return cls(endpoint, tube, int(job_id))


def join_ids(refs: list[JobRef]) -> str:
    """The id a producer returns: the replicas' ids joined by ``,``."""
    return ID_SEP.join(str(ref) for ref in refs)


def split_ids(ids: str) -> list[JobRef]:
    """Parse the id a producer returned.

    Raises:
        DqConfigError: ``ids`` is empty or one of its parts is malformed.
    """
    if not isinstance(ids, str) or not ids.strip():
        raise DqConfigError(f"ids must be the non-empty string a put returned, got {ids!r}")
    return [JobRef.parse(part) for part in ids.split(ID_SEP)]
