"""Spec parsing and next-fire computation: cron with and without seconds, names, @every, time
zones, and daylight saving time (checked against a brute-force minute scan)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from rq_sched.errors import ValidationError
from rq_sched.scheduler.cron import (
    CronSchedule,
    IntervalSchedule,
    duration_seconds,
    parse_duration_ms,
    parse_spec,
)

NY = "America/New_York"
BERLIN = "Europe/Berlin"


def ms(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    tz: str = "UTC",
) -> int:
    """Epoch ms of a wall time in ``tz`` (first occurrence if it is repeated)."""
    wall = datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(tz))
    return round(wall.timestamp() * 1000)


def utc(ms_value: int) -> datetime:
    return datetime.fromtimestamp(ms_value / 1000, UTC)


def fires(spec: str, tz: str, after_ms: int, count: int) -> list[int]:
    schedule = parse_spec(spec, tz)
    out = []
    for _ in range(count):
        after_ms = schedule.next_after(after_ms)
        out.append(after_ms)
    return out


def local(ms_value: int, tz: str) -> str:
    """Wall time with its UTC offset, e.g. '2025-11-02 01:30-0400'."""
    return datetime.fromtimestamp(ms_value / 1000, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S%z")


# -- plain cron -------------------------------------------------------------------------------


def test_five_field_spec_fires_at_its_minute() -> None:
    assert fires("15 10 * * *", "UTC", ms(2025, 1, 1), 2) == [
        ms(2025, 1, 1, 10, 15),
        ms(2025, 1, 2, 10, 15),
    ]


def test_next_fire_is_strictly_after_the_given_time() -> None:
    assert fires("15 10 * * *", "UTC", ms(2025, 1, 1, 10, 15), 1) == [ms(2025, 1, 2, 10, 15)]


def test_six_field_spec_has_seconds_first() -> None:
    start = ms(2025, 1, 1, 12, 0, 3)
    assert fires("*/10 * * * * *", "UTC", start, 3) == [
        start + 7000,
        start + 17000,
        start + 27000,
    ]
    assert fires("30 0 12 * * *", "UTC", ms(2025, 1, 1), 1) == [ms(2025, 1, 1, 12, 0, 30)]


def test_fractional_start_times_round_to_the_next_whole_tick() -> None:
    assert fires("* * * * * *", "UTC", ms(2025, 1, 1) + 500, 2) == [
        ms(2025, 1, 1, 0, 0, 1),
        ms(2025, 1, 1, 0, 0, 2),
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("@hourly", (2025, 1, 1, 13, 0)),
        ("@daily", (2025, 1, 2, 0, 0)),
        ("@midnight", (2025, 1, 2, 0, 0)),
        ("@weekly", (2025, 1, 5, 0, 0)),  # 2025-01-05 is a Sunday
        ("@monthly", (2025, 2, 1, 0, 0)),
        ("@yearly", (2026, 1, 1, 0, 0)),
        ("@annually", (2026, 1, 1, 0, 0)),
        ("@HOURLY", (2025, 1, 1, 13, 0)),
    ],
)
def test_named_specs(spec: str, expected: tuple[int, int, int, int, int]) -> None:
    assert fires(spec, "UTC", ms(2025, 1, 1, 12, 30), 1) == [ms(*expected)]


def test_cron_spec_is_read_in_its_time_zone() -> None:
    assert fires("0 9 * * *", "Asia/Tokyo", ms(2025, 5, 31, 12), 1) == [ms(2025, 6, 1, 0, 0)]
    assert fires("0 9 * * *", "Asia/Kolkata", ms(2025, 5, 31, 12), 1) == [ms(2025, 6, 1, 3, 30)]


# -- @every -----------------------------------------------------------------------------------


def test_every_ticks_are_multiples_of_the_interval_since_the_epoch() -> None:
    schedule = parse_spec("@every 30s")
    assert isinstance(schedule, IntervalSchedule)
    assert schedule.next_after(ms(2025, 1, 1, 12, 0, 7) + 500) == ms(2025, 1, 1, 12, 0, 30)
    assert schedule.next_after(ms(2025, 1, 1, 12, 0, 30)) == ms(2025, 1, 1, 12, 1, 0)


def test_every_with_compound_duration() -> None:
    after = fires("@every 1h30m", "UTC", ms(2025, 1, 1, 0, 10), 2)
    assert after == [ms(2025, 1, 1, 1, 30), ms(2025, 1, 1, 3, 0)]


def test_every_ignores_the_time_zone_and_dst() -> None:
    start = ms(2025, 11, 2, 5, 0)  # the America/New_York fall-back morning, in UTC
    assert fires("@every 1h", NY, start, 3) == [start + 3_600_000 * i for i in (1, 2, 3)]


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [("30s", 30_000), ("1h30m", 5_400_000), ("1.5h", 5_400_000), ("2d", 172_800_000),
     ("500ms", 500), ("1m 30s", 90_000)],
)  # fmt: skip
def test_parse_duration(text: str, expected_ms: int) -> None:
    assert parse_duration_ms(text) == expected_ms


@pytest.mark.parametrize("text", ["", "10", "5 parsecs", "1h-30m", "h", "-5s"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(ValidationError, match="not a duration"):
        parse_duration_ms(text)


def test_duration_seconds_accepts_numbers_timedeltas_and_strings() -> None:
    assert duration_seconds(90, "grace") == 90.0
    assert duration_seconds(timedelta(minutes=2), "grace") == 120.0
    assert duration_seconds("1m30s", "grace") == 90.0
    with pytest.raises(ValidationError, match="grace"):
        duration_seconds(True, "grace")
    with pytest.raises(ValidationError, match="negative"):
        duration_seconds(-1, "grace")


# -- bad specs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("61 * * * *", "invalid cron spec"),
        ("* * *", "has 3 fields"),
        ("0 0 1 1 * 2030 *", "has 7 fields"),
        ("@reboot", "unknown named spec"),
        ("@every", "give an interval"),
        ("@every 0s", "at least 1s"),
        ("@every 500ms", "at least 1s"),
        ("@every 99999999999d", "at most 100 years"),
        ("@every 5 parsecs", "not a duration"),
        ("0 0 30 2 *", "never fires"),
        ("", "non-empty"),
    ],
)
def test_invalid_specs_are_rejected_with_a_reason(spec: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_spec(spec)


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "", "../etc/passwd", "utc+2"])
def test_unknown_time_zones_are_rejected(tz: str) -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        parse_spec("* * * * *", tz)


# -- daylight saving time ---------------------------------------------------------------------


@pytest.mark.parametrize(("tz", "day"), [(NY, (2025, 3, 9)), (BERLIN, (2025, 3, 30))])
def test_fixed_time_in_the_spring_forward_gap_fires_once_after_the_gap(
    tz: str, day: tuple[int, int, int]
) -> None:
    got = fires("30 2 * * *", tz, ms(*day, tz=tz), 2)
    assert [local(t, tz) for t in got] == [
        f"{day[0]}-{day[1]:02d}-{day[2]:02d} 03:00:00{'-0400' if tz == NY else '+0200'}",
        f"{day[0]}-{day[1]:02d}-{day[2] + 1:02d} 02:30:00{'-0400' if tz == NY else '+0200'}",
    ]


def test_several_skipped_times_collapse_into_one_fire() -> None:
    got = fires("0,20,40 2 * * *", NY, ms(2025, 3, 9, tz=NY), 2)
    assert [local(t, NY) for t in got] == ["2025-03-09 03:00:00-0400", "2025-03-10 02:00:00-0400"]


@pytest.mark.parametrize(
    ("tz", "spec", "day", "first", "next_day"),
    [
        (NY, "30 1 * * *", (2025, 11, 2), "2025-11-02 01:30:00-0400", "2025-11-03 01:30:00-0500"),
        (BERLIN, "30 2 * * *", (2025, 10, 26), "2025-10-26 02:30:00+0200",
         "2025-10-27 02:30:00+0100"),
    ],
)  # fmt: skip
def test_fixed_time_in_the_repeated_hour_fires_once(
    tz: str, spec: str, day: tuple[int, int, int], first: str, next_day: str
) -> None:
    got = fires(spec, tz, ms(*day, tz=tz), 2)
    assert [local(t, tz) for t in got] == [first, next_day]


def test_croniter_alone_would_fire_the_repeated_time_twice() -> None:
    # The behaviour CronSchedule corrects; if croniter changes, revisit the module docstring.
    it = croniter("30 1 * * *", datetime(2025, 11, 2, tzinfo=ZoneInfo(NY)), ret_type=float)
    assert [local(round(it.get_next(float) * 1000), NY) for _ in range(2)] == [
        "2025-11-02 01:30:00-0400",
        "2025-11-02 01:30:00-0500",
    ]


def test_started_in_the_second_pass_a_fixed_time_waits_for_the_next_day() -> None:
    second_pass = ms(2025, 11, 2, 6, 10)  # 01:10 EST, after 01:30 EDT has fired
    assert [local(t, NY) for t in fires("30 1 * * *", NY, second_pass, 1)] == [
        "2025-11-03 01:30:00-0500"
    ]


def test_every_hour_specs_follow_real_time_through_the_repeated_hour() -> None:
    got = fires("*/30 * * * *", NY, ms(2025, 11, 2, tz=NY), 6)
    assert [local(t, NY)[11:] for t in got] == [
        "00:30:00-0400",
        "01:00:00-0400",
        "01:30:00-0400",
        "01:00:00-0500",
        "01:30:00-0500",
        "02:00:00-0500",
    ]
    assert {b - a for a, b in itertools.pairwise(got)} == {1_800_000}


def test_every_hour_specs_skip_the_missing_hour_in_spring() -> None:
    got = fires("30 * * * *", BERLIN, ms(2025, 3, 30, tz=BERLIN), 3)
    assert [local(t, BERLIN)[11:] for t in got] == [
        "00:30:00+0100",
        "01:30:00+0100",
        "03:30:00+0200",
    ]
    assert {b - a for a, b in itertools.pairwise(got)} == {3_600_000}


def test_seconds_spec_follows_real_time_across_fall_back() -> None:
    start = ms(2025, 11, 2, 5, 59, 30)  # 01:59:30 EDT
    got = fires("*/20 * * * * *", NY, start, 4)
    assert got == [start + 10_000, start + 30_000, start + 50_000, start + 70_000]
    assert local(got[2], NY) == "2025-11-02 01:00:20-0500"


def _reference_minutes(spec: str, tz_name: str, start: datetime, hours: int) -> list[int]:
    """Brute force over every real minute, using croniter only to match naive wall times:
    the documented rule, written independently of CronSchedule."""
    tz = ZoneInfo(tz_name)
    schedule = parse_spec(spec, tz_name)
    assert isinstance(schedule, CronSchedule)
    out = []
    begin = round(start.timestamp()) // 60 * 60
    for minute in range(hours * 60):
        instant = begin + minute * 60
        wall = datetime.fromtimestamp(instant, tz)
        before = datetime.fromtimestamp(instant - 60, tz).replace(tzinfo=None)
        naive = wall.replace(tzinfo=None)
        hit = croniter.match(spec, naive) and (schedule.every_hour or wall.fold == 0)
        if not hit and not schedule.every_hour and naive - before > timedelta(minutes=1):
            skipped = (before + timedelta(minutes=k) for k in range(1, 180))
            hit = any(croniter.match(spec, t) for t in skipped if t < naive)
        if hit:
            out.append(instant * 1000)
    return out


@pytest.mark.parametrize(
    "spec",
    ["30 2 * * *", "30 1 * * *", "*/15 * * * *", "0,30 1-3 * * *", "45 * * * *", "@hourly",
     "0 2 * * *", "*/20 1 * * *"],
)  # fmt: skip
@pytest.mark.parametrize(
    ("tz", "day"),
    [
        (NY, datetime(2025, 3, 8, 20, tzinfo=UTC)),
        (NY, datetime(2025, 11, 1, 20, tzinfo=UTC)),
        (BERLIN, datetime(2025, 3, 29, 20, tzinfo=UTC)),
        (BERLIN, datetime(2025, 10, 25, 20, tzinfo=UTC)),
        ("Australia/Lord_Howe", datetime(2025, 4, 5, 10, tzinfo=UTC)),  # 30-minute DST shift
        ("Australia/Lord_Howe", datetime(2025, 10, 4, 10, tzinfo=UTC)),
    ],
)
def test_next_fire_matches_a_brute_force_scan_over_dst_days(
    spec: str, tz: str, day: datetime
) -> None:
    hours = 16
    expected = _reference_minutes(spec, tz, day, hours)
    end = round(day.timestamp()) * 1000 + hours * 3_600_000
    schedule = parse_spec(spec, tz)
    got, after = [], round(day.timestamp()) * 1000 - 1
    while (after := schedule.next_after(after)) < end:
        got.append(after)
    assert [local(t, tz) for t in got] == [local(t, tz) for t in expected]
