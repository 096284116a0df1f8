"""Per-minute samples of every queue for the dashboard's hour and day charts, kept in Redis.

Design (chosen over counters written by the worker's settle scripts, which belong to the hot
path): once a minute a sampler reads what the inspector already reads for the queue list — the
lifetime processed/failed totals, the counts per state and the oldest pending task's wait — and
stores it as one small JSON field per minute in ``ns:{q}:minutes`` (a hash, minute start in ms
-> sample). Processed and failed *per minute* are differences of consecutive totals, so they
are exact whatever the worker did, as long as a sample was taken each minute; a minute with no
sample (no sampler running) reads as a gap, never as a made-up zero.

* Bounded memory: a field older than ``KEEP_MINUTES`` (24 h) is deleted when the minute that
  replaces it is written, and a full sweep runs if the hash ever holds more than a few extra
  fields; about 1,440 fields of ~70 bytes, ~100 KiB per queue.
* Several samplers (two dashboards) never double a minute: ``HSETNX`` keeps the first sample.
* Cost per minute: the two pipelines of ``lists.read_stats`` for all queues plus one pipeline
  of HSETNX/HDEL; reading a day chart is one HMGET of 1,441 fields per queue.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rq_sched.clock import to_ms
from rq_sched.errors import ValidationError
from rq_sched.inspector.lists import read_stats
from rq_sched.inspector.models import MinutePoint
from rq_sched.keys import QueueKeys
from rq_sched.scripts import SyncRedis

MINUTE_MS = 60_000
KEEP_MINUTES = 24 * 60
"""Samples kept per queue: the day chart's span."""
SWEEP_SLACK = 60
"""Extra fields tolerated before a full sweep (left by samplers that stopped for a while)."""
WINDOWS = {"hour": 60, "day": KEEP_MINUTES}
"""Chart windows by name, in minutes."""


def minute_of(now_s: float) -> int:
    """Start (ms) of the minute holding ``now_s``."""
    return to_ms(now_s) // MINUTE_MS * MINUTE_MS


def sample(redis: SyncRedis, queues: Sequence[QueueKeys], now_s: float) -> int:
    """Store this minute's sample of each queue (unless one is already stored); returns how
    many queues got a new sample."""
    if not queues:
        return 0
    minute = minute_of(now_s)
    expired = str(minute - KEEP_MINUTES * MINUTE_MS)
    stats = read_stats(redis, queues, now_s)
    pipe = redis.pipeline(transaction=False)
    for keys, st in zip(queues, stats, strict=True):
        info = st.info
        size = info.pending + info.active + info.scheduled + info.retry
        record = {"p": info.processed, "f": info.failed, "s": size, "l": round(st.latency, 3)}
        pipe.hsetnx(keys.minutes, str(minute), json.dumps(record, separators=(",", ":")))
        pipe.hdel(keys.minutes, expired)
        pipe.hlen(keys.minutes)
    replies = pipe.execute()
    written = 0
    for i, keys in enumerate(queues):
        added, _, length = replies[3 * i : 3 * i + 3]
        written += int(added)
        if int(length) > KEEP_MINUTES + SWEEP_SLACK:
            _sweep(redis, keys, minute)
    return written


def _sweep(redis: SyncRedis, keys: QueueKeys, minute: int) -> None:
    """Delete every sample older than the kept window (after a sampler outage)."""
    oldest = minute - KEEP_MINUTES * MINUTE_MS
    fields: list[Any] = redis.hkeys(keys.minutes)
    # A field that is not a minute (planted, corrupt) is stale too: the sweep removes it.
    stale = [f for f in fields if not _is_int(f) or int(f) <= oldest]
    if stale:
        redis.hdel(keys.minutes, *stale)


def window_minutes(window: str) -> int:
    """Minutes in a chart window.

    Raises:
        ValidationError: not ``hour`` or ``day``.
    """
    if window not in WINDOWS:
        raise ValidationError(f"unknown window {window!r}; use hour or day")
    return WINDOWS[window]


def read(
    redis: SyncRedis, queues: Sequence[QueueKeys], now_s: float, minutes: int
) -> list[MinutePoint]:
    """The last ``minutes`` minutes (oldest first, the current minute last), summed over
    ``queues``: processed/failed from consecutive totals, size summed, latency the worst."""
    last = minute_of(now_s)
    starts = [last - MINUTE_MS * back for back in range(minutes, -1, -1)]  # one extra before
    per_queue: list[list[dict[str, Any] | None]] = []
    if queues:
        pipe = redis.pipeline(transaction=False)
        for keys in queues:
            pipe.hmget(keys.minutes, [str(m) for m in starts])
        per_queue = [[_parse(raw) for raw in reply] for reply in pipe.execute()]
    return [_point(starts, per_queue, i) for i in range(1, len(starts))]


def _parse(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict) or not all(_is_number(record.get(f)) for f in "pfsl"):
        return None  # not a sample this module wrote: shown as a gap, not a failed chart
    return record


def _is_int(text: bytes | str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _point(starts: list[int], per_queue: list[list[dict[str, Any] | None]], i: int) -> MinutePoint:
    at = datetime.fromtimestamp(starts[i] / 1000, UTC)
    now = [q[i] for q in per_queue if q[i] is not None]
    if not now:
        return MinutePoint(at, None, None, None, None)
    processed = failed = 0
    counted = False
    for q in per_queue:
        current, before = q[i], q[i - 1]
        if current is None or before is None:
            continue
        counted = True
        # A total that went down (queue deleted and re-created) restarts from zero.
        processed += max(0, int(current["p"]) - int(before["p"]))
        failed += max(0, int(current["f"]) - int(before["f"]))
    size = sum(int(r["s"]) for r in now if r)
    latency = max(float(r["l"]) for r in now if r)
    if not counted:
        return MinutePoint(at, None, None, size, latency)
    return MinutePoint(at, processed, failed, size, latency)
