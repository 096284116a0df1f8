"""The dq wire format on its own: body wrapping, ids, delay rounding, argument checks."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from rq_sched.dq import Beanstalk, DqConfigError, JobRef, wire
from rq_sched.keys import dq_dedup


def test_wrap_writes_decimal_nanoseconds_slash_body() -> None:
    assert wire.wrap(b"hello", 1717000000123456789) == b"1717000000123456789/hello"


def test_unwrap_returns_target_and_raw_body_even_with_slashes_in_it() -> None:
    parts = wire.unwrap(b"1717000000123456789/a/b/c")
    assert parts.at_ns == 1717000000123456789
    assert parts.body == b"a/b/c"
    assert parts.at == datetime(2024, 5, 29, 16, 26, 40, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("wrapped", "at_ns"),
    [(b"+5/x", 5), (b"-5/x", -5), (b"00000000000000000001/x", 1), (b"0/", 0)],
)
def test_unwrap_accepts_what_go_strconv_parseint_accepts(wrapped: bytes, at_ns: int) -> None:
    assert wire.unwrap(wrapped).at_ns == at_ns


@pytest.mark.parametrize(
    "wrapped",
    [
        b"hello",  # no separator
        b"/hello",  # empty time
        b"12a/hello",  # not digits
        b" 12/hello",  # Python's int() would accept spaces; Go's ParseInt does not
        b"1_000/hello",  # nor underscores
        b"000000000000000000001/x",  # separator after the first 21 bytes
        b"99999999999999999999/x",  # beyond int64
    ],
)
def test_unwrap_rejects_what_go_rejects(wrapped: bytes) -> None:
    with pytest.raises(wire.UnwrapError):
        wire.unwrap(wrapped)


def test_dedup_key_is_plain_hex_md5_of_the_whole_wrapped_body() -> None:
    wrapped = b"1717000000123456789/hello"
    assert dq_dedup(wrapped) == hashlib.md5(wrapped).hexdigest()


@pytest.mark.parametrize(
    ("ns", "seconds"),
    [(0, 0), (-5, 0), (1, 1), (999_999_999, 1), (1_000_000_000, 1), (1_200_000_000, 2)],
)
def test_delay_rounds_up_to_whole_seconds_so_jobs_never_fire_early(ns: int, seconds: int) -> None:
    assert wire.delay_seconds(ns) == seconds


def test_durations_convert_exactly() -> None:
    assert wire.duration_ns(timedelta(seconds=1, microseconds=5)) == 1_000_005_000
    assert wire.duration_ns(1.2) == 1_200_000_000
    assert wire.duration_ns(0) == 0


@pytest.mark.parametrize("bad", [-1, -0.001, timedelta(seconds=-1), float("nan"), "5", 2.0**40])
def test_bad_delays_are_refused_with_a_clear_error(bad: object) -> None:
    with pytest.raises(DqConfigError, match="delay"):
        wire.duration_ns(bad)  # type: ignore[arg-type]


def test_to_ns_is_exact_and_refuses_naive_datetimes() -> None:
    when = datetime(2024, 5, 29, 18, 26, 40, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert wire.to_ns(when) == 1717000000123456000
    with pytest.raises(DqConfigError, match="naive"):
        wire.to_ns(datetime(2024, 5, 29))


def test_ids_round_trip_and_tubes_may_contain_slashes() -> None:
    refs = [JobRef("127.0.0.1:11300", "a/b", 42), JobRef("127.0.0.1:11301", "tube", 17)]
    joined = wire.join_ids(refs)
    assert joined == "127.0.0.1:11300/a/b/42,127.0.0.1:11301/tube/17"
    assert wire.split_ids(joined) == refs


@pytest.mark.parametrize("bad", ["", "127.0.0.1:11300/tube", "x/y/z", "redis/q/123", "h:1/t/x"])
def test_malformed_ids_are_refused(bad: str) -> None:
    with pytest.raises(DqConfigError):
        wire.split_ids(bad)


@pytest.mark.parametrize(
    ("endpoint", "tube"),
    [("localhost", "t"), ("host:0", "t"), (":11300", "t"), ("h:11300", ""), ("h:11300", "a b")],
)
def test_bad_endpoints_and_tubes_are_refused(endpoint: str, tube: str) -> None:
    with pytest.raises(DqConfigError):
        Beanstalk(endpoint, tube)


def test_ipv6_endpoints_parse() -> None:
    assert Beanstalk("[::1]:11300", "t").address == ("::1", 11300)
