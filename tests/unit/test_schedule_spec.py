"""Schedule specs: validation, cron and interval evaluation, DST, combining (protocol §1.2)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dwtrio.errors import ValidationFailedError
from dwtrio.protocol.schedule_spec import (
    Interval,
    ScheduleSpec,
    duration_seconds,
    parse_instant,
    parse_spec,
    spec_from_json,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def cron(expr: str, tz: str = "UTC") -> ScheduleSpec:
    return parse_spec({"cron_expressions": [expr], "timezone": tz})


def interval(every: str, offset: str | None = None) -> ScheduleSpec:
    item = {"every": every} if offset is None else {"every": every, "offset": offset}
    return parse_spec({"intervals": [item]})


def errors_of(raw: Any) -> dict[str, list[str]]:
    with pytest.raises(ValidationFailedError) as caught:
        parse_spec(raw)
    assert caught.value.http_status == 422
    return caught.value.errors


def window(spec: ScheduleSpec, start: datetime, end: datetime, limit: int = 100) -> list[datetime]:
    return spec.occurrences(start, end, limit=limit)


# --- cron syntax ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("macro", "after", "expected"),
    [
        ("@yearly", utc(2026, 3, 4, 5, 6), utc(2027, 1, 1)),
        ("@annually", utc(2026, 3, 4, 5, 6), utc(2027, 1, 1)),
        ("@monthly", utc(2026, 3, 4, 5, 6), utc(2026, 4, 1)),
        ("@weekly", utc(2026, 3, 4, 5, 6), utc(2026, 3, 8)),  # 2026-03-08 is a Sunday
        ("@daily", utc(2026, 3, 4, 5, 6), utc(2026, 3, 5)),
        ("@midnight", utc(2026, 3, 4, 5, 6), utc(2026, 3, 5)),
        ("@hourly", utc(2026, 3, 4, 5, 6), utc(2026, 3, 4, 6)),
        ("@HOURLY", utc(2026, 3, 4, 5, 6), utc(2026, 3, 4, 6)),
    ],
)
def test_macros(macro: str, after: datetime, expected: datetime) -> None:
    spec = cron(macro)
    assert spec.next_after(after) == expected
    assert spec.cron_expressions == (macro,)  # kept as sent


def test_month_and_day_names() -> None:
    spec = cron("0 12 * FEB,mar MON-wed")
    got = window(spec, utc(2026, 1, 1), utc(2026, 4, 1))
    assert got[0] == utc(2026, 2, 2, 12)  # first Monday of February 2026
    assert {t.month for t in got} == {2, 3}
    assert {t.weekday() for t in got} == {0, 1, 2}
    assert all(t.hour == 12 and t.minute == 0 for t in got)


def test_ranges_steps_and_lists() -> None:
    spec = cron("0-10/5,30,45-47 8-9 * * *")
    got = window(spec, utc(2026, 5, 1, 8), utc(2026, 5, 1, 9))
    assert [t.minute for t in got] == [0, 5, 10, 30, 45, 46, 47]
    assert [
        t.minute for t in window(cron("*/20 * * * *"), utc(2026, 5, 1), utc(2026, 5, 1, 1))
    ] == [
        0,
        20,
        40,
    ]
    hours = window(cron("0 */6 * * *"), utc(2026, 5, 1), utc(2026, 5, 2))
    assert [t.hour for t in hours] == [0, 6, 12, 18]


@pytest.mark.parametrize("sunday", ["0", "7", "SUN", "sun"])
def test_sunday_as_0_and_7(sunday: str) -> None:
    got = window(cron(f"0 0 * * {sunday}"), utc(2026, 3, 1), utc(2026, 3, 31))
    assert got == [
        utc(2026, 3, 1),
        utc(2026, 3, 8),
        utc(2026, 3, 15),
        utc(2026, 3, 22),
        utc(2026, 3, 29),
    ]


def test_dom_dow_or_rule() -> None:
    # Both fields restricted: the 13th OR any Friday.
    got = window(cron("0 0 13 * 5"), utc(2026, 2, 1), utc(2026, 3, 1))
    assert [t.day for t in got] == [6, 13, 20, 27]  # Fridays of Feb 2026, plus the 13th (a Friday)
    got = window(cron("0 0 1 * MON"), utc(2026, 6, 1), utc(2026, 7, 1))
    assert [t.day for t in got] == [1, 8, 15, 22, 29]  # June 1st is a Monday too
    got = window(cron("0 0 2 * MON"), utc(2026, 6, 1), utc(2026, 7, 1))
    assert [t.day for t in got] == [1, 2, 8, 15, 22, 29]
    # A wildcard in one of them means the other one alone decides.
    got = window(cron("0 0 * * MON"), utc(2026, 6, 1), utc(2026, 7, 1))
    assert [t.day for t in got] == [1, 8, 15, 22, 29]
    got = window(cron("0 0 2 * *"), utc(2026, 6, 1), utc(2026, 7, 1))
    assert [t.day for t in got] == [2]


def test_cron_next_is_strictly_after() -> None:
    spec = cron("*/15 * * * *")
    assert spec.next_after(utc(2026, 1, 1, 10, 15)) == utc(2026, 1, 1, 10, 30)
    assert spec.next_after(utc(2026, 1, 1, 10, 14, 59, 999999)) == utc(2026, 1, 1, 10, 15)
    assert spec.next_after(utc(2026, 1, 1, 10, 15, 0, 1)) == utc(2026, 1, 1, 10, 30)
    assert cron("@daily").next_after(utc(2026, 1, 1)) == utc(2026, 1, 2)


def test_cron_in_a_timezone_and_any_reference_offset() -> None:
    spec = cron("0 9 * * *", "Asia/Tokyo")
    result = spec.next_after(utc(2026, 1, 1, 12))
    assert result == utc(2026, 1, 2, 0)
    assert result is not None and result.tzinfo is UTC
    # The reference instant may carry any offset.
    plus_two = datetime(2026, 1, 1, 14, tzinfo=timezone(timedelta(hours=2)))
    assert spec.next_after(plus_two) == utc(2026, 1, 2, 0)
    assert cron("0 9 * * *", "America/New_York").next_after(utc(2026, 1, 1)) == utc(2026, 1, 1, 14)


def test_naive_reference_is_refused() -> None:
    with pytest.raises(ValueError):
        cron("@daily").next_after(datetime(2026, 1, 1))


# --- DST -----------------------------------------------------------------------------
def test_berlin_spring_forward() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
    in_gap = window(cron("30 2 * * *", "Europe/Berlin"), utc(2026, 3, 28), utc(2026, 3, 31))
    assert in_gap == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]
    assert in_gap[1].astimezone(BERLIN).hour == 3  # runs at the transition, once
    fixed = window(cron("0 9 * * *", "Europe/Berlin"), utc(2026, 3, 28), utc(2026, 3, 31))
    assert fixed == [utc(2026, 3, 28, 8), utc(2026, 3, 29, 7), utc(2026, 3, 30, 7)]
    # A wildcard-hour job just follows elapsed time: the 02:xx hour does not exist.
    hourly = window(cron("0 * * * *", "Europe/Berlin"), utc(2026, 3, 28, 23), utc(2026, 3, 29, 3))
    assert [t.astimezone(BERLIN).hour for t in hourly] == [0, 1, 3, 4]


def test_berlin_fall_back() -> None:
    # 2026-10-25: 03:00 CEST goes back to 02:00 CET (01:00 UTC); 02:xx happens twice.
    spec = cron("30 2 * * *", "Europe/Berlin")
    got = window(spec, utc(2026, 10, 24), utc(2026, 10, 27))
    assert got == [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    # Asked during the second pass (02:10 CET, after the 02:30 CEST run): no second run.
    assert spec.next_after(utc(2026, 10, 25, 1, 10)) == utc(2026, 10, 26, 1, 30)
    # A wildcard-minute job runs through both passes.
    quarter = window(cron("*/30 2 * * *", "Europe/Berlin"), utc(2026, 10, 25), utc(2026, 10, 26))
    assert quarter == [
        utc(2026, 10, 25, 0, 0),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 1, 0),
        utc(2026, 10, 25, 1, 30),
    ]


def test_new_york_spring_forward() -> None:
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
    spec = cron("15 2 * * *", "America/New_York")
    got = window(spec, utc(2026, 3, 7, 12), utc(2026, 3, 10))
    assert got == [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 15)]
    assert got[0].astimezone(NEW_YORK).strftime("%H:%M %Z") == "03:00 EDT"
    fixed = window(cron("0 12 * * *", "America/New_York"), utc(2026, 3, 7), utc(2026, 3, 9))
    assert fixed == [utc(2026, 3, 7, 17), utc(2026, 3, 8, 16)]


def test_new_york_fall_back() -> None:
    # 2026-11-01: 02:00 EDT goes back to 01:00 EST (06:00 UTC); 01:xx happens twice.
    spec = cron("30 1 * * *", "America/New_York")
    got = window(spec, utc(2026, 10, 31, 12), utc(2026, 11, 3))
    assert got == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    assert spec.next_after(utc(2026, 11, 1, 6, 10)) == utc(2026, 11, 2, 6, 30)


# --- intervals -----------------------------------------------------------------------
def test_interval_without_offset_fires_on_the_epoch_grid() -> None:
    spec = interval("PT30M")
    assert spec.next_after(utc(2026, 1, 1, 10, 7)) == utc(2026, 1, 1, 10, 30)
    assert spec.next_after(utc(2026, 1, 1, 10, 30)) == utc(2026, 1, 1, 11, 0)  # strictly after


def test_interval_with_offset() -> None:
    spec = interval("PT30M", "PT5M")
    assert spec.next_after(utc(2026, 1, 1, 10, 7)) == utc(2026, 1, 1, 10, 35)
    assert spec.next_after(utc(2026, 1, 1, 10, 35)) == utc(2026, 1, 1, 11, 5)
    assert spec.next_after(utc(2026, 1, 1, 10, 0)) == utc(2026, 1, 1, 10, 5)
    # An offset larger than the period still lands on the same grid.
    assert interval("PT1H", "PT2H30M").next_after(utc(2026, 1, 1, 10)) == utc(2026, 1, 1, 10, 30)


def test_interval_timezone_plays_no_part() -> None:
    spec = parse_spec({"intervals": [{"every": "PT1H"}], "timezone": "Asia/Kolkata"})
    assert spec.next_after(utc(2026, 1, 1, 10, 7)) == utc(2026, 1, 1, 11)


def test_interval_weeks_years_and_months() -> None:
    # The epoch was a Thursday, so a weekly grid lands on Thursdays 00:00 UTC.
    weekly = interval("P1W").next_after(utc(2026, 1, 1, 12))
    assert weekly == utc(2026, 1, 8)
    assert weekly is not None and weekly.weekday() == 3
    assert interval("P1Y").next_after(utc(1970, 6, 1)) == utc(1971, 1, 1)  # 365 days
    assert interval("P1Y").next_after(utc(1972, 6, 1)) == utc(1972, 12, 31)  # 1972 is a leap year
    assert interval("P1M").next_after(utc(1970, 1, 5)) == utc(1970, 1, 31)  # 30 days
    assert interval("P1D", "PT6H").next_after(utc(2026, 1, 1, 7)) == utc(2026, 1, 2, 6)


def test_interval_sub_second_reference() -> None:
    spec = interval("PT1S")
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert spec.next_after(epoch + timedelta(seconds=10.5)) == epoch + timedelta(seconds=11)
    assert spec.next_after(epoch + timedelta(seconds=10)) == epoch + timedelta(seconds=11)
    assert spec.next_after(utc(2026, 1, 1) - timedelta(microseconds=1)) == utc(2026, 1, 1)
    assert interval("PT2S", "PT1S").next_after(
        epoch + timedelta(seconds=10.5)
    ) == epoch + timedelta(seconds=11)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT30M", 1800),
        ("PT5M", 300),
        ("P1W", 604800),
        ("P2W", 1209600),
        ("P1Y", 365 * 86400),
        ("P1M", 30 * 86400),
        ("P1D", 86400),
        ("PT1H", 3600),
        ("PT45S", 45),
        ("PT0S", 0),
        ("P1Y2M3DT4H5M6S", 365 * 86400 + 60 * 86400 + 3 * 86400 + 4 * 3600 + 5 * 60 + 6),
        ("P1W2D", 9 * 86400),
        ("PT36H", 129600),
    ],
)
def test_duration_seconds(text: str, seconds: int) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "P",
        "PT",
        "30M",
        "PT1.5S",
        "PT1,5S",
        "pt30m",
        "PT30",
        "P1H",
        "PT1D",
        "P1M1Y",
        " PT1S",
        "PT-1S",
        "P" + "1" * 70 + "D",
    ],
)
def test_duration_seconds_refuses(text: str) -> None:
    assert duration_seconds(text) is None


def test_interval_property_random() -> None:
    rng = random.Random(20260420)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for _ in range(2000):
        every = rng.choice([1, 7, 60, 3600, 86400, rng.randint(1, 10**7)])
        offset = rng.randint(0, 3 * every)
        after = epoch + timedelta(
            seconds=rng.randint(0, 4 * 10**9), microseconds=rng.randint(0, 999999)
        )
        spec = ScheduleSpec((), (Interval(every, offset),), "UTC")
        got = spec.next_after(after)
        assert got is not None
        assert after < got <= after + timedelta(seconds=every)
        seconds = int((got - epoch).total_seconds())
        assert got == epoch + timedelta(seconds=seconds)
        assert (seconds - offset) % every == 0


# --- combining and windows -----------------------------------------------------------
def test_earliest_candidate_wins() -> None:
    spec = parse_spec(
        {"cron_expressions": ["0 12 * * *", "45 10 * * *"], "intervals": [{"every": "PT2H"}]}
    )
    assert spec.next_after(utc(2026, 1, 1, 10)) == utc(2026, 1, 1, 10, 45)
    assert spec.next_after(utc(2026, 1, 1, 10, 45)) == utc(2026, 1, 1, 12)
    assert spec.next_after(utc(2026, 1, 1, 12)) == utc(2026, 1, 1, 14)


def test_coinciding_occurrences_are_not_duplicated() -> None:
    spec = parse_spec(
        {
            "cron_expressions": ["0 * * * *", "@hourly"],
            "intervals": [{"every": "PT30M"}, {"every": "PT1H"}],
        }
    )
    got = window(spec, utc(2026, 1, 1, 10), utc(2026, 1, 1, 12))
    assert got == [
        utc(2026, 1, 1, 10),
        utc(2026, 1, 1, 10, 30),
        utc(2026, 1, 1, 11),
        utc(2026, 1, 1, 11, 30),
    ]


def test_window_is_start_inclusive_end_exclusive_and_limited() -> None:
    spec = interval("PT1H")
    got = window(spec, utc(2026, 1, 1, 10), utc(2026, 1, 1, 13))
    assert got == [utc(2026, 1, 1, 10), utc(2026, 1, 1, 11), utc(2026, 1, 1, 12)]
    assert window(spec, utc(2026, 1, 1, 10, 0, 0, 1), utc(2026, 1, 1, 12)) == [utc(2026, 1, 1, 11)]
    assert window(spec, utc(2026, 1, 1, 10), utc(2026, 1, 1, 23), limit=2) == [
        utc(2026, 1, 1, 10),
        utc(2026, 1, 1, 11),
    ]
    assert window(spec, utc(2026, 1, 1, 10), utc(2026, 1, 1, 23), limit=0) == []
    assert window(spec, utc(2026, 1, 1, 10), utc(2026, 1, 1, 10)) == []
    assert window(cron("0 0 1 1 *"), utc(2026, 1, 2), utc(2026, 12, 31)) == []


def test_nothing_yields_none() -> None:
    # Valid 29 Feb job, asked past what a datetime can hold.
    assert cron("0 0 29 2 *").next_after(utc(9996, 3, 1)) is None
    assert interval("P1Y").next_after(utc(9999, 12, 31)) is None


# --- validation ----------------------------------------------------------------------
def test_defaults_and_shape() -> None:
    spec = parse_spec({"cron_expressions": ["@hourly"]})
    assert spec == ScheduleSpec(("@hourly",), (), "UTC")
    spec = parse_spec(
        {"intervals": [{"every": "PT30M", "offset": "PT5M"}], "timezone": "Europe/Berlin"}
    )
    assert spec.intervals == (Interval(1800, 300, "PT30M", "PT5M"),)
    assert spec.timezone == "Europe/Berlin"


def test_empty_spec() -> None:
    errors = errors_of({"timezone": "UTC"})
    assert list(errors) == ["spec"]
    assert "at least one cron expression or interval" in errors["spec"][0]
    assert list(errors_of({"cron_expressions": [], "intervals": []})) == ["spec"]


def test_spec_must_be_an_object() -> None:
    assert list(errors_of(["@hourly"])) == ["spec"]
    with pytest.raises(ValidationFailedError) as caught:
        parse_spec("x", path="body.spec")
    assert list(caught.value.errors) == ["body.spec"]


def test_arrays_must_be_arrays() -> None:
    errors = errors_of({"cron_expressions": "@hourly", "intervals": {"every": "PT1H"}})
    assert errors["spec.cron_expressions"] == ["The cron expressions field must be an array."]
    assert errors["spec.intervals"] == ["The intervals field must be an array."]


@pytest.mark.parametrize(
    ("expression", "needle"),
    [
        ("61 * * * *", "'61 * * * *' is not valid: bad minute."),
        ("0 25 * * *", "bad hour"),
        ("0 0 32 * *", "bad day-of-month"),
        ("0 0 31 2 *", "bad day-of-month"),
        ("0 0 * 13 *", "bad month"),
        ("0 0 * * 8", "bad day-of-week"),
        ("* * * *", "4 fields"),
        ("0 0 0 * * *", "seconds field is not supported"),
        ("@reboot", "unknown macro"),
        ("   ", "must not be blank"),
        ("", "must not be blank"),
        ("x" * 257, "may not be greater than 256 characters"),
    ],
)
def test_invalid_cron(expression: str, needle: str) -> None:
    errors = errors_of({"cron_expressions": ["@daily", expression]})
    assert list(errors) == ["spec.cron_expressions.1"]
    assert needle in errors["spec.cron_expressions.1"][0]


def test_non_string_cron() -> None:
    errors = errors_of({"cron_expressions": [5, None]})
    assert set(errors) == {"spec.cron_expressions.0", "spec.cron_expressions.1"}
    assert "must be a string" in errors["spec.cron_expressions.0"][0]


def test_six_field_refused() -> None:
    errors = errors_of({"cron_expressions": ["*/10 * * * * *"]})
    assert "6 fields" in errors["spec.cron_expressions.0"][0]


def test_interval_errors() -> None:
    errors = errors_of(
        {
            "intervals": [
                {"every": "PT1H"},
                {"offset": "PT5M"},
                {"every": "soon", "offset": "later"},
                {"every": "PT0S"},
                "PT1H",
                {"every": 60, "offset": 5},
                {"every": "P" + "1" * 64 + "D"},
            ]
        }
    )
    assert errors["spec.intervals.1.every"] == ["The every field is required."]
    assert "'soon' is not a valid ISO-8601 duration" in errors["spec.intervals.2.every"][0]
    assert "'later' is not a valid ISO-8601 duration" in errors["spec.intervals.2.offset"][0]
    assert "longer than zero seconds" in errors["spec.intervals.3.every"][0]
    assert "must be an object" in errors["spec.intervals.4"][0]
    assert "must be a string" in errors["spec.intervals.5.every"][0]
    assert "must be a string" in errors["spec.intervals.5.offset"][0]
    assert "64 characters" in errors["spec.intervals.6.every"][0]
    assert "spec.intervals.0" not in errors and "spec.intervals.0.every" not in errors
    assert "spec" not in errors


def test_zero_offset_is_fine() -> None:
    assert interval("PT1H", "PT0S").intervals == (Interval(3600, 0, "PT1H", "PT0S"),)


def test_too_many_items() -> None:
    errors = errors_of(
        {"cron_expressions": ["@hourly"] * 21, "intervals": [{"every": "PT1H"}] * 21}
    )
    assert "more than 20" in errors["spec.cron_expressions"][0]
    assert "more than 20" in errors["spec.intervals"][0]
    parse_spec({"cron_expressions": ["@hourly"] * 20, "intervals": [{"every": "PT1H"}] * 20})


@pytest.mark.parametrize(
    ("tz", "needle"),
    [
        ("Mars/Olympus_Mons", "'Mars/Olympus_Mons' is not a known IANA time zone"),
        ("Europe", "not a known IANA time zone"),
        ("Europe/Berlin ", "not a known IANA time zone"),
        ("../../etc/passwd", "not a known IANA time zone"),
        ("/etc/localtime", "not a known IANA time zone"),
        ("localtime", "not a known IANA time zone"),
        ("", "not a known IANA time zone"),
        ("A" * 65, "64 characters"),
        (3, "must be a string"),
    ],
)
def test_bad_timezone(tz: Any, needle: str) -> None:
    errors = errors_of({"cron_expressions": ["@hourly"], "timezone": tz})
    assert list(errors) == ["spec.timezone"]
    assert needle in errors["spec.timezone"][0]


def test_every_problem_is_reported_at_once() -> None:
    errors = errors_of(
        {
            "cron_expressions": ["61 * * * *", "0 0 * * *", "0 0 0 * * *"],
            "intervals": [{"every": "PT0S", "offset": "x"}, {"every": "PT1H"}],
            "timezone": "Nowhere/Special",
        }
    )
    assert set(errors) == {
        "spec.cron_expressions.0",
        "spec.cron_expressions.2",
        "spec.intervals.0.every",
        "spec.intervals.0.offset",
        "spec.timezone",
    }
    with pytest.raises(ValidationFailedError) as caught:
        parse_spec({"cron_expressions": ["61 * * * *"], "timezone": "Nowhere/Special"})
    assert caught.value.message.endswith("(and 1 more error)")


def test_every_message_is_a_sentence() -> None:
    errors = errors_of(
        {
            "cron_expressions": ["61 * * * *", 3, "@nope", ""],
            "intervals": [{}, {"every": "x", "offset": "y"}, 4],
            "timezone": "Nowhere/Special",
        }
    )
    for messages in errors.values():
        for message in messages:
            assert message[0].isupper() and message.endswith(".")


# --- storage -------------------------------------------------------------------------
def test_as_json_keeps_what_was_sent() -> None:
    spec = parse_spec(
        {"intervals": [{"every": "PT30M"}, {"every": "P1D", "offset": "PT6H"}], "extra": 1}
    )
    assert spec.as_json() == {
        "intervals": [{"every": "PT30M"}, {"every": "P1D", "offset": "PT6H"}],
        "timezone": "UTC",
    }
    spec = parse_spec(
        {
            "cron_expressions": ["@hourly", "15 7 * * 1-5"],
            "intervals": [],
            "timezone": "Europe/Berlin",
        }
    )
    assert spec.as_json() == {
        "cron_expressions": ["@hourly", "15 7 * * 1-5"],
        "intervals": [],
        "timezone": "Europe/Berlin",
    }
    built = ScheduleSpec(("@daily",), (Interval(90, 30),), "UTC")
    assert built.as_json() == {
        "cron_expressions": ["@daily"],
        "intervals": [{"every": "PT90S", "offset": "PT30S"}],
        "timezone": "UTC",
    }


@pytest.mark.parametrize(
    "raw",
    [
        {
            "cron_expressions": ["15 7 * * 1-5", "@hourly"],
            "intervals": [{"every": "PT30M", "offset": "PT5M"}],
            "timezone": "Europe/Berlin",
        },
        {"intervals": [{"every": "P1W"}]},
        {"cron_expressions": ["0 9 * * *"], "timezone": "Asia/Tokyo"},
    ],
)
def test_as_json_round_trip(raw: dict[str, Any]) -> None:
    spec = parse_spec(raw)
    stored = spec.as_json()
    again = spec_from_json(stored)
    assert again == spec
    assert again.as_json() == stored
    assert again.next_after(utc(2026, 1, 1)) == spec.next_after(utc(2026, 1, 1))


def test_spec_from_json_refuses_garbage() -> None:
    with pytest.raises(ValidationFailedError):
        spec_from_json({"cron_expressions": ["nope"]})


# --- instants ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-04-20T00:00:00Z", utc(2026, 4, 20)),
        ("2026-04-20T02:00:00+02:00", utc(2026, 4, 20)),
        ("2026-04-20T00:00:00", utc(2026, 4, 20)),
        ("2026-04-20T00:00:00.250000+00:00", utc(2026, 4, 20, 0, 0, 0, 250000)),
        ("2026-04-19T20:00:00-04:00", utc(2026, 4, 20)),
    ],
)
def test_parse_instant(text: str, expected: datetime) -> None:
    got = parse_instant(text)
    assert got == expected
    assert got is not None and got.tzinfo is UTC


@pytest.mark.parametrize(
    "text", [None, 5, "", "yesterday", "2026-13-01T00:00:00Z", "2026-04-20T25:00:00Z"]
)
def test_parse_instant_refuses(text: Any) -> None:
    assert parse_instant(text) is None
