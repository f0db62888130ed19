"""The legal clock: every retention cutoff and expiry, one function each (pure, UTC).

Personal data is kept a number of *calendar* months from its collection time
(``retention.months``, per table ``retention.tables``); which column is a table's collection
time is :mod:`pipeline.lake.tables`. Everything that decides whether a row, an event or a log
entry is past its limit calls one of these functions:

==========================  =====================================================================
function                    used by
==========================  =====================================================================
:func:`cutoff`              maintenance retention and verification, the access views' legal window
:func:`delete_before`       maintenance retention (whole UTC days)
:func:`expired_on_arrival`  ingest workers (events the nightly run has already deleted the day of)
:func:`expiry`              subject restrictions (capped at the data's own expiry)
:func:`analyst_window`      the analyst role's views (legal window, shortened further)
:func:`log_cutoff`          activity-log retention and its dry run
:func:`shortest_span_days`  Kafka topic retention checks (ms must stay below every month span)
==========================  =====================================================================
"""

from __future__ import annotations

import datetime as dt

_UTC = dt.UTC


def add_months(day: dt.date, months: int) -> dt.date:
    """Calendar-month arithmetic that clamps to the month's end: 2026-08-31 + 6 → 2027-02-28."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    next_month = dt.date(year + (month == 12), month % 12 + 1, 1)
    last_day = (next_month - dt.timedelta(days=1)).day
    return dt.date(year, month, min(day.day, last_day))


def months_before(instant: dt.datetime, months: int) -> dt.datetime:
    """The latest collection time whose ``months``-month limit has passed at ``instant``.

    The inverse of :func:`add_months` on the day, with its clamping: at 2027-02-28 every
    read of 2026-08-28 to 2026-08-31 has reached its limit (2026-08-31 + 6 months =
    2027-02-28), so on the last day of a month the cutoff moves to the last day of the month
    ``months`` before. A plain ``add_months(day, -months)`` would give 2026-08-28 and keep
    three days of reads too long.
    """
    day = instant.date()
    back = add_months(day, -months)
    if (day + dt.timedelta(days=1)).day == 1:  # the instant is on the last day of its month
        back = add_months(back.replace(day=1), 1) - dt.timedelta(days=1)
    return dt.datetime.combine(back, instant.timetz())


def _utc(instant: dt.datetime, name: str) -> dt.datetime:
    if instant.tzinfo is None:
        raise ValueError(f"{name} must carry a time zone")
    return instant.astimezone(_UTC)


def cutoff(as_of: dt.datetime, months: int) -> dt.datetime:
    """The retention cutoff at ``as_of`` (aware) of data kept ``months`` calendar months:
    rows collected at or before it are past their limit (:func:`months_before`, in UTC)."""
    return months_before(_utc(as_of, "as_of"), months)


def delete_before(cut: dt.datetime) -> dt.datetime:
    """Start of the UTC day after the cutoff's day: retention deletes every row collected before
    it, whole days at once (up to one day early, never late)."""
    day_after = cut.astimezone(_UTC).date() + dt.timedelta(days=1)
    return dt.datetime.combine(day_after, dt.time(), _UTC)


def expired_on_arrival(now: dt.datetime, months: int) -> dt.datetime:
    """Events collected at or before this instant are expired on arrival: the end of the UTC
    day of the latest collection time whose limit has passed. Retention deletes whole days, so
    the nightly run has already deleted that day; a row written into it would stay until the
    next run, past its limit (up to one day early, like retention, never late)."""
    return delete_before(cutoff(now, months)) - dt.timedelta(microseconds=1)


def expiry(collected_at: dt.datetime, months: int) -> dt.datetime:
    """When a row collected at ``collected_at`` reaches its ``months``-month limit (UTC)."""
    collected = _utc(collected_at, "collected_at")
    return dt.datetime.combine(add_months(collected.date(), months), collected.timetz())


def analyst_window(now: dt.datetime, months: int, max_age_days: int) -> dt.datetime:
    """Oldest collection time an analyst sees: the legal window, cut to ``max_age_days``."""
    now = _utc(now, "now")
    return max(cutoff(now, months), now - dt.timedelta(days=max_age_days))


def log_cutoff(now: dt.datetime, months: int) -> dt.datetime:
    """Activity-log entries stamped before this are past ``access.log_retention_months``.

    Plain calendar months back from ``now`` (in UTC), without :func:`months_before`'s month-end
    rule, so an entry is kept at least until its limit (up to three days longer at a month's
    end).
    """
    now = _utc(now, "now")
    return dt.datetime.combine(add_months(now.date(), -months), now.timetz())


def shortest_span_days(months: int) -> int:
    """The fewest days that ``months`` calendar months can last, over every start date.

    A topic retention must stay below the legal limit whatever the date, so it is compared with
    the shortest span (181 days for 6 months: 1 September to 1 March in a common year).
    """
    start = dt.date(2025, 1, 1)  # a 4-year window covers every leap pattern
    return min(
        (add_months(start + dt.timedelta(days=i), months) - (start + dt.timedelta(days=i))).days
        for i in range(4 * 366)
    )
