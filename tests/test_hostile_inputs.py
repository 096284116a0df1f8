"""Hostile inputs at the public API: each case must fail with a clear ValidationError before
anything is written to Redis (regressions found by a review that played the hostile user)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import pytest
import redis

from rq_sched import Client
from rq_sched.errors import ValidationError


class _OddTz(tzinfo):
    def dst(self, dt: datetime | None) -> None:
        return None

    def tzname(self, dt: datetime | None) -> str:
        return "odd"


class _RaisingTz(_OddTz):
    def utcoffset(self, dt: datetime | None) -> timedelta:
        raise RuntimeError("tz database unavailable")


class _OutOfRangeTz(_OddTz):
    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=30)


class _TextTz(_OddTz):
    def utcoffset(self, dt: datetime | None) -> Any:
        return "+01:00"


def _written(r: redis.Redis, namespace: str) -> list[bytes]:
    return sorted(r.scan_iter(match=f"{namespace}:*"))


FAR_FUTURE = datetime.max.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "options",
    [
        {"process_at": FAR_FUTURE},
        {"deadline": FAR_FUTURE},
        {"process_at": datetime(2030, 1, 1, tzinfo=_RaisingTz())},
        {"process_at": datetime(2030, 1, 1, tzinfo=_OutOfRangeTz())},
        {"deadline": datetime(2030, 1, 1, tzinfo=_TextTz())},
        {"timeout": 10**400},
        {"process_in": 10**400},
        {"unique": -(10**400)},
    ],
    ids=[
        "process_at-year-9999",
        "deadline-year-9999",
        "tzinfo-raises",
        "tzinfo-offset-out-of-range",
        "tzinfo-returns-text",
        "timeout-10e400",
        "process_in-10e400",
        "unique-minus-10e400",
    ],
)
def test_enqueue_refuses_before_writing(
    client: Client, r: redis.Redis, namespace: str, options: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        client.enqueue("t", **options)
    assert _written(r, namespace) == []


@pytest.mark.parametrize("size", [True, "512", float("nan"), 0, -1])
def test_client_refuses_bad_max_payload_bytes(r: redis.Redis, size: Any) -> None:
    with pytest.raises(ValidationError, match="max_payload_bytes"):
        Client(r, max_payload_bytes=size)
