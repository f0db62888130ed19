"""Expired on arrival: the whole UTC day that the nightly retention has already deleted."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.ingest.worker import retention_cutoff


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
    cutoff = retention_cutoff(datetime.fromisoformat(now), months)
    assert cutoff == datetime.fromisoformat(last_expired)
    assert cutoff.tzinfo == UTC


def test_the_day_after_the_cutoff_day_is_kept() -> None:
    cutoff = retention_cutoff(datetime(2026, 12, 6, 10, 0, tzinfo=UTC), 6)
    assert datetime(2026, 6, 7, 0, 0, tzinfo=UTC) > cutoff
    assert datetime(2026, 6, 6, 23, 59, 59, tzinfo=UTC) <= cutoff
