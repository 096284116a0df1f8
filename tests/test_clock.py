"""Epoch seconds to stored milliseconds: the conversion every score and timestamp goes through."""

from __future__ import annotations

from datetime import UTC, datetime

from rq_sched.clock import ManualClock, from_ms, to_ms


def test_a_millisecond_later_is_the_next_millisecond() -> None:
    # 1_800_000_000.001 * 1000 is 1_800_000_000_000.9998 in binary floating point; truncating
    # it gave two calls a millisecond apart the same stamp, so the second read as a resend.
    clock = ManualClock()
    stamps = []
    for _ in range(1000):
        clock.advance(0.001)
        stamps.append(to_ms(clock.now()))
    assert stamps == list(range(stamps[0], stamps[0] + 1000))


def test_milliseconds_survive_a_round_trip() -> None:
    for ms in (0, 1, 290, 1_800_000_000_289, 1_800_000_000_290, 4_102_444_800_000):
        assert to_ms(from_ms(ms).timestamp()) == ms
    assert to_ms(datetime(2027, 1, 1, 0, 0, 0, 290_000, tzinfo=UTC).timestamp()) % 1000 == 290
