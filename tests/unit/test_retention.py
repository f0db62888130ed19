"""The legal clock: calendar months, cutoffs, expiry on arrival, the log and view windows."""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.retention import (
    add_months,
    analyst_window,
    cutoff,
    expired_on_arrival,
    expiry,
    log_cutoff,
    months_before,
    shortest_span_days,
)

instants = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)


@pytest.mark.parametrize(
    ("now", "months", "last_expired"),
    [
        # The limit of 2026-06-06 10:00 passed at 10:00 today; retention deleted that whole day.
        ("2026-12-06T10:00:00Z", 6, "2026-06-06T23:59:59.999999Z"),
        ("2026-12-06T00:00:01Z", 6, "2026-06-06T23:59:59.999999Z"),
        # Month end: 2026-08-31 + 6 months = 2027-02-28, so August's last days are all due.
        ("2027-02-28T12:00:00Z", 6, "2026-08-31T23:59:59.999999Z"),
        ("2026-03-31T08:00:00Z", 1, "2026-02-28T23:59:59.999999Z"),
    ],
)
def test_cutoff_is_the_end_of_the_day_retention_deletes(
    now: str, months: int, last_expired: str
) -> None:
    last = expired_on_arrival(datetime.fromisoformat(now), months)
    assert last == datetime.fromisoformat(last_expired)
    assert last.tzinfo == UTC


def test_the_day_after_the_cutoff_day_is_kept() -> None:
    last = expired_on_arrival(datetime(2026, 12, 6, 10, 0, tzinfo=UTC), 6)
    assert datetime(2026, 6, 7, 0, 0, tzinfo=UTC) > last
    assert datetime(2026, 6, 6, 23, 59, 59, tzinfo=UTC) <= last


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (dt.date(2026, 8, 31), 6, dt.date(2027, 2, 28)),
        (dt.date(2027, 8, 31), 6, dt.date(2028, 2, 29)),
        (dt.date(2026, 1, 15), 6, dt.date(2026, 7, 15)),
        (dt.date(2026, 12, 31), 2, dt.date(2027, 2, 28)),
        (dt.date(2026, 7, 1), 6, dt.date(2027, 1, 1)),
    ],
)
def test_calendar_month_arithmetic(day: dt.date, months: int, expected: dt.date) -> None:
    assert add_months(day, months) == expected


def test_shortest_six_months_is_181_days() -> None:
    assert shortest_span_days(6) == 181
    assert shortest_span_days(1) == 28


@given(as_of=instants, months=st.integers(1, 6))
def test_months_before_is_the_latest_instant_past_its_limit(as_of: datetime, months: int) -> None:
    last = months_before(as_of, months)
    assert expiry(last, months) <= as_of
    assert expiry(last + timedelta(days=1), months) > as_of


def test_expiry_is_calendar_months_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    # 2026-09-01 01:00 at UTC+2 is 2026-08-31 23:00 UTC: the August clamp applies.
    assert expiry(datetime(2026, 9, 1, 1, tzinfo=plus_two), 6) == datetime(
        2027, 2, 28, 23, tzinfo=UTC
    )


@pytest.mark.parametrize("offset_h", [0, 5, -7])
def test_every_cutoff_is_taken_in_utc_whatever_the_zone_given(offset_h: int) -> None:
    """The dry run once dropped the UTC conversion of the log cutoff; one function now."""
    at_utc = datetime(2027, 3, 1, 2, 30, tzinfo=UTC)
    local = at_utc.astimezone(timezone(timedelta(hours=offset_h)))
    assert log_cutoff(local, 3) == log_cutoff(at_utc, 3) == datetime(2026, 12, 1, 2, 30, tzinfo=UTC)
    assert cutoff(local, 6) == cutoff(at_utc, 6) == datetime(2026, 9, 1, 2, 30, tzinfo=UTC)
    assert expired_on_arrival(local, 6) == expired_on_arrival(at_utc, 6)


def test_log_cutoff_has_no_month_end_rule() -> None:
    at = datetime(2027, 2, 28, 12, tzinfo=UTC)
    assert log_cutoff(at, 6) == datetime(2026, 8, 28, 12, tzinfo=UTC)
    assert cutoff(at, 6) == datetime(2026, 8, 31, 12, tzinfo=UTC)


def test_analyst_window_is_the_shorter_of_age_and_legal_limit() -> None:
    now = datetime(2026, 12, 6, 10, tzinfo=UTC)
    assert analyst_window(now, 6, 30) == now - timedelta(days=30)
    assert analyst_window(now, 1, 90) == datetime(2026, 11, 6, 10, tzinfo=UTC)


def test_naive_times_are_refused() -> None:
    for call in (
        lambda: cutoff(datetime(2026, 1, 1), 6),
        lambda: log_cutoff(datetime(2026, 1, 1), 6),
        lambda: expiry(datetime(2026, 1, 1), 6),
    ):
        with pytest.raises(ValueError, match="time zone"):
            call()
