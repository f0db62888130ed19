"""Retention: delete personal data at the legal limit, by collection time, whole days at once.

For a table kept ``m`` calendar months, the cutoff is the latest collection time whose limit
has passed at ``as_of`` (:func:`pipeline.retention.cutoff`: 2026-08-31 + 6 months =
2027-02-28, so at 2027-02-28 the cutoff is 2026-08-31, not 2026-08-28). No row collected at
or before the cutoff may survive; rows of the cutoff's own UTC day go with it (up to one day
early, never late). So every row collected before the start of the day after the cutoff's day
is deleted, one day per transaction (oldest first, so an interrupted run has deleted a prefix
and the next run goes on), then :func:`pipeline.maintain.purge.purge` makes it physically
unreadable, then :func:`sweep` removes whatever file is left in an expired day folder that no
snapshot references (a killed writer's or a killed compaction's uncommitted files, which hold
personal data too).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from pipeline import retention
from pipeline.lake.catalog import CATALOG, Lake, quote_ident
from pipeline.maintain.inventory import DataFiles
from pipeline.maintain.purge import META

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cutoff:
    """Where retention cuts one table."""

    table: str
    column: str
    months: int
    as_of: datetime
    cutoff: datetime  # rows collected at or before this are past the limit
    delete_before: datetime  # start of the day after the cutoff's day: delete below this

    @property
    def first_kept_day(self) -> date:
        return self.delete_before.date()

    @property
    def limit_seconds(self) -> float:
        """The limit as it stands at ``as_of`` (calendar months vary in length)."""
        return (self.as_of - self.cutoff).total_seconds()


def cutoff_for(table: str, column: str, months: int, as_of: datetime) -> Cutoff:
    """The retention cutoff of ``table`` kept ``months`` months, as of ``as_of`` (aware)."""
    cut = retention.cutoff(as_of, months)
    return Cutoff(table, column, months, as_of.astimezone(UTC), cut, retention.delete_before(cut))


def expired_days(lake: Lake, cut: Cutoff) -> dict[date, int]:
    """Rows to delete per UTC collection day (a scan pruned to the expired days)."""
    col = quote_ident(cut.column)
    found = lake.execute(
        f"SELECT CAST(date_trunc('day', {col}) AS DATE), count(*) "
        f"FROM {CATALOG}.{quote_ident(cut.table)} WHERE {col} < ? GROUP BY 1 ORDER BY 1",
        [cut.delete_before],
    ).fetchall()
    return {day: int(n) for day, n in found}


def delete_day(lake: Lake, cut: Cutoff, day: date) -> int:
    """Delete the table's rows of ``day`` (all before ``delete_before``) in one transaction."""
    col = quote_ident(cut.column)
    name = f"{CATALOG}.{quote_ident(cut.table)}"
    start = datetime.combine(day, time(), UTC)
    end = min(start + timedelta(days=1), cut.delete_before)

    def body() -> int:
        (n,) = lake.execute(
            f"SELECT count(*) FROM {name} WHERE {col} >= ? AND {col} < ?", [start, end]
        ).fetchone() or (0,)
        if n:
            lake.execute(f"DELETE FROM {name} WHERE {col} >= ? AND {col} < ?", [start, end])
        return int(n)

    return lake.retrying(f"retention {cut.table} {day}", body, transaction=True)


def delete_expired(
    lake: Lake,
    cut: Cutoff,
    progress: Callable[[date, int], None] = lambda _d, _n: None,
) -> dict[date, int]:
    """Delete every expired day of one table, oldest first; rows deleted per day."""
    deleted: dict[date, int] = {}
    for day in sorted(expired_days(lake, cut)):
        deleted[day] = delete_day(lake, cut, day)
        logger.debug("retention: %s %s deleted (%d rows)", cut.table, day, deleted[day])
        progress(day, deleted[day])
    # Rows of a day below the oldest found (a late write between the scan and now) wait for
    # the next run; verify() reports them.
    return deleted


def _referenced(lake: Lake) -> set[str]:
    """Base names of every file the catalog still knows (live, old or scheduled)."""
    names: set[str] = set()
    for sql in (
        f"SELECT path FROM {META}.ducklake_data_file",
        f"SELECT path FROM {META}.ducklake_delete_file",
        f"SELECT path FROM {META}.ducklake_files_scheduled_for_deletion",
    ):
        names.update(Path(str(p)).name for (p,) in lake.execute(sql).fetchall())
    return names


def sweep(lake: Lake, cuts: Mapping[str, Cutoff]) -> int:
    """Remove unreferenced files (and then empty folders) in expired day folders, on a local
    data path or in a bucket.

    Runs after purge. No writer legitimately writes there any more (ingest refuses expired
    reads; compaction skips expired days), so an unreferenced file there is a dead writer's
    leftover, whatever its age. Referenced files are left alone: they mean a row survived,
    which :func:`pipeline.maintain.verify.verify` reports.
    """
    files = DataFiles(lake.storage)
    keep = _referenced(lake)
    removed = 0
    for table, cut in cuts.items():
        for day, refs in files.by_day(table).items():
            if day >= cut.first_kept_day:
                continue
            for ref in refs:
                if ref.rsplit("/", 1)[-1] not in keep:
                    files.remove(ref)
                    removed += 1
            files.tidy(table, day)
    return removed
