"""Pure planning of a maintenance run: retention cutoffs, statistics periods, compaction days."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.maintain.compact import plan_compaction
from pipeline.maintain.inventory import DayFiles, day_of_path
from pipeline.maintain.retention import cutoff_for
from pipeline.maintain.stats import TRAFFIC, TRIPS, plan_statistics
from pipeline.retention import add_months

instants = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)


def _limit_of(collected: datetime, months: int) -> datetime:
    """When a row collected at ``collected`` reaches its limit (calendar months, clamped)."""
    return datetime.combine(add_months(collected.date(), months), collected.timetz())


@pytest.mark.parametrize(
    ("as_of", "cutoff", "delete_before"),
    [
        # 2026-08-31 + 6 months = 2027-02-28: on that day the reads of Aug 28-31 are due.
        (datetime(2027, 2, 28, 12, tzinfo=UTC), datetime(2026, 8, 31, 12, tzinfo=UTC),
         datetime(2026, 9, 1, tzinfo=UTC)),
        (datetime(2027, 2, 27, 12, tzinfo=UTC), datetime(2026, 8, 27, 12, tzinfo=UTC),
         datetime(2026, 8, 28, tzinfo=UTC)),
        (datetime(2026, 9, 30, 0, tzinfo=UTC), datetime(2026, 3, 31, 0, tzinfo=UTC),
         datetime(2026, 4, 1, tzinfo=UTC)),
        (datetime(2028, 8, 29, 5, tzinfo=UTC), datetime(2028, 2, 29, 5, tzinfo=UTC),
         datetime(2028, 3, 1, tzinfo=UTC)),
    ],
)  # fmt: skip
def test_cutoff_examples(as_of: datetime, cutoff: datetime, delete_before: datetime) -> None:
    cut = cutoff_for("plate_reads", "captured_at", 6, as_of)
    assert (cut.cutoff, cut.delete_before) == (cutoff, delete_before)


@given(collected=instants, as_of=instants, months=st.integers(1, 6))
def test_retention_is_never_late_and_at_most_a_day_early(
    collected: datetime, as_of: datetime, months: int
) -> None:
    cut = cutoff_for("plate_reads", "captured_at", months, as_of)
    deleted = collected < cut.delete_before
    if _limit_of(collected, months) <= as_of:
        assert deleted  # past its limit: gone in this run
    if deleted:
        assert _limit_of(collected, months) <= as_of + timedelta(days=1)


def test_cutoff_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="time zone"):
        cutoff_for("plate_reads", "captured_at", 6, datetime(2026, 1, 1))


def _files(day: date, files: int = 3, deletes: int = 0, sig: str = "x") -> DayFiles:
    return DayFiles(day, files, deletes, rows=10, newest_ingest=sig)


def test_statistics_plan_closed_days_and_weeks_only() -> None:
    days = {date(2026, 3, d): _files(date(2026, 3, d)).signature for d in range(1, 10)}
    grace = timedelta(hours=2)
    as_of = datetime(2026, 3, 9, 1, 59, tzinfo=UTC)  # Mar 8 ends + 2 h = Mar 9 02:00
    plan = plan_statistics(
        as_of=as_of, grace=grace, first_kept_day=date(2026, 1, 1), day_signatures=days, done={}
    )
    assert [d for d, _ in plan.traffic_days] == [date(2026, 3, d) for d in range(1, 8)]
    assert plan.trip_weeks == ()  # no week's 30-day window has closed
    later = datetime(2026, 4, 9, 3, tzinfo=UTC)  # week of Mar 2: Mar 9 + 30 d + 2 h passed
    plan = plan_statistics(
        as_of=later, grace=grace, first_kept_day=date(2026, 1, 1), day_signatures=days, done={}
    )
    assert [w for w, _ in plan.trip_weeks] == [date(2026, 2, 23), date(2026, 3, 2)]
    assert plan.pending == len(plan.traffic_days) + 2


def test_statistics_recomputed_on_change_unless_the_day_is_expiring() -> None:
    day, old = date(2026, 3, 2), date(2026, 3, 1)
    done = {(TRAFFIC, day): "before", (TRAFFIC, old): "before", (TRIPS, date(2026, 2, 23)): "s"}
    plan = plan_statistics(
        as_of=datetime(2026, 3, 20, tzinfo=UTC),
        grace=timedelta(hours=2),
        first_kept_day=day,
        day_signatures={day: "after", old: "after"},
        done=done,
    )
    assert [d for d, _ in plan.traffic_days] == [day]  # old keeps its statistics as they are


def test_compaction_plan_skips_open_expired_and_single_file_days() -> None:
    days = {
        date(2026, 3, 1): _files(date(2026, 3, 1), files=5),  # expired
        date(2026, 3, 2): _files(date(2026, 3, 2), files=1),  # one file already
        date(2026, 3, 3): _files(date(2026, 3, 3), files=1, deletes=1),  # carries deletes
        date(2026, 3, 4): _files(date(2026, 3, 4), files=4),
        date(2026, 3, 5): _files(date(2026, 3, 5), files=9),  # not closed yet
    }
    tasks = plan_compaction(
        "plate_reads",
        "captured_at",
        days,
        as_of=datetime.combine(date(2026, 3, 6), time(1), UTC),
        grace=timedelta(hours=2),
        first_kept_day=date(2026, 3, 2),
        min_files=2,
    )
    assert [(t.day, t.files) for t in tasks] == [(date(2026, 3, 3), 1), (date(2026, 3, 4), 4)]


def test_day_of_path() -> None:
    assert day_of_path("main/plate_reads/year=2026/month=3/day=7/f.parquet") == date(2026, 3, 7)
    assert day_of_path("main/traffic_stats/f.parquet") is None
