"""The stored task message: lossless round trip, compact encoding, refusal of garbage."""

from __future__ import annotations

import msgpack
import pytest

from rq_sched import CorruptTaskError
from rq_sched.message import MAX_ERROR_CHARS, VERSION, TaskMessage, decode, unique_of

EVERY_FIELD = TaskMessage(
    type="report",
    payload={"n": [1, 2], "raw": b"\x00"},
    max_retry=3,
    retried=2,
    timeout=30.5,
    deadline=1_800_000_100_000,
    retention=600,
    unique="abc123",
    headers={"trace": "t1"},
    enqueued_at=1_800_000_000_000,
    last_error="boom",
    last_failed_at=1_800_000_050_000,
)


@pytest.mark.parametrize(
    "message",
    [
        EVERY_FIELD,
        TaskMessage(type="t", payload=None),
        TaskMessage(type="t", payload=b"x", timeout=30.0),
        TaskMessage(type="t", payload=b"x", enqueued_at=5, last_failed_at=9),
    ],
)
def test_round_trip_keeps_every_field(message: TaskMessage) -> None:
    assert decode(message.encode()) == message


def test_fresh_task_stores_only_version_type_payload_and_time() -> None:
    message = TaskMessage(type="email:send", payload=b"p" * 100, enqueued_at=1_800_000_000_000)
    fields = [VERSION, "email:send", b"p" * 100, 1_800_000_000_000]
    assert message.encode() == msgpack.packb(fields, use_bin_type=True)
    assert len(message.encode()) == 124  # fits Redis's 128-byte allocation class


def test_whole_second_timeout_is_stored_as_an_integer() -> None:
    encoded = TaskMessage(type="t", payload=None, timeout=30.0).encode()
    assert msgpack.unpackb(encoded)[6] == 30
    assert decode(encoded).timeout == 30.0
    assert isinstance(decode(encoded).timeout, float)


def test_failed_records_the_attempt_and_cuts_long_errors() -> None:
    failed = EVERY_FIELD.failed("x" * (MAX_ERROR_CHARS + 10) + "END", at_ms=7)
    assert (failed.retried, failed.last_failed_at) == (3, 7)
    assert failed.last_error is not None
    assert failed.last_error.startswith("…") and failed.last_error.endswith("END")
    assert len(failed.last_error) == MAX_ERROR_CHARS + 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xc1", "not msgpack"),
        (msgpack.packb({"type": "t"}), "not a task array"),
        (msgpack.packb([VERSION, "t"]), "not a task array"),
        (msgpack.packb([99, "t", None]), "version 99 is not supported"),
        (msgpack.packb([VERSION, 5, None]), "task type is not a string"),
        (msgpack.packb([VERSION, "t", None, 0, 25, 0, "soon"]), "malformed message"),
    ],
)
def test_garbage_is_a_corrupt_task(data: bytes, message: str) -> None:
    with pytest.raises(CorruptTaskError, match=message):
        decode(data, task_id="x1")


def _fields(**changes: object) -> bytes:
    """A full version-1 array with one or more fields replaced by position name."""
    order = [
        "version", "type", "payload", "enqueued_at", "max_retry", "retried", "timeout",
        "deadline", "retention", "unique", "headers", "last_error", "last_failed_at",
    ]  # fmt: skip
    values: list[object] = [VERSION, "t", b"p", 1, 25, 0, 0, 0, 0, None, None, None, 0]
    for name, value in changes.items():
        values[order.index(name)] = value
    return bytes(msgpack.packb(values, use_bin_type=True))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_fields(max_retry="3"), "max_retry"),
        (_fields(retried="1"), "retried"),
        (_fields(deadline="soon"), "deadline"),
        (_fields(retention="600"), "retention"),
        (_fields(enqueued_at=b"x"), "enqueued_at"),
        (_fields(last_failed_at=1.5), "last_failed_at"),
        (_fields(max_retry=True), "max_retry"),
        (_fields(max_retry=-1), "max_retry"),
        (_fields(deadline=2**63), "deadline"),
        (_fields(timeout="30"), "timeout"),
        (_fields(timeout=float("inf")), "timeout"),
        (_fields(timeout=float("nan")), "timeout"),
        (_fields(timeout=-1), "timeout"),
        (_fields(unique=5), "unique"),
        (_fields(headers=["a"]), "headers"),
        (_fields(headers={"a": 1}), "headers"),
        (_fields(last_error=b"x"), "last_error"),
        (_fields(version=True), "version"),
        (_fields(payload={(1, 2): "list key"}), "not msgpack"),
        (b"\x93\x01\xa1t\x81\x91\x01\xa1x", "not msgpack"),  # a map whose key is a list
        (msgpack.packb([VERSION, "t", None]) + b"\x00", "not msgpack"),  # trailing bytes
        (b"", "not msgpack"),
    ],
)
def test_every_field_type_is_checked(data: bytes, message: str) -> None:
    with pytest.raises(CorruptTaskError, match=message):
        decode(data, task_id="x1")


def test_unique_digest_is_salvaged_from_a_message_that_no_longer_decodes() -> None:
    assert unique_of(_fields(unique="abc", deadline="soon")) == "abc"
    assert unique_of(_fields(unique=5)) is None
    assert unique_of(b"\xc1") is None
