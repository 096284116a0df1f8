"""The stored task message: lossless round trip, compact encoding, refusal of garbage."""

from __future__ import annotations

import msgpack
import pytest

from rq_sched import CorruptTaskError
from rq_sched.message import MAX_ERROR_CHARS, VERSION, TaskMessage, decode

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
