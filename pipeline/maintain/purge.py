"""Physical purge: after rows were DELETEd, make them unreadable anywhere under the lake path.

A DuckLake ``DELETE`` only records a delete file in the catalog; the row stays inside its
Parquet data file, older snapshots still reach it (time travel), the catalog keeps min/max
column statistics that may be the deleted value itself, and SQLite keeps deleted records in
free pages and in its WAL. :func:`purge` removes all of that, in this order:

1. **Rewrite** every data file that carries deletes (``ducklake_rewrite_data_files`` with a
   delete threshold of 0): the new file holds only the live rows; the old one is now
   referenced by older snapshots only.
2. **Expire** every snapshot older than the newest one (``ducklake_expire_snapshots``): no time
   travel reaches a deleted row any more, and the old files are scheduled for deletion.
3. **Clean up** all files scheduled for deletion (``ducklake_cleanup_old_files``) and files
   no snapshot knows, older than ``orphan_grace`` (``ducklake_delete_orphaned_files``;
   younger ones may belong to a writer that has not committed yet).
4. **Recompute table-level statistics** of text columns from the live files' statistics.
   DuckLake widens ``ducklake_table_column_stats`` on insert and never narrows it, so a
   deleted plate can stay there as a table's min or max for ever.
5. **Compact the catalog**: SQLite ``secure_delete``, ``VACUUM`` (rebuilds the file without
   free pages) and ``wal_checkpoint(TRUNCATE)`` (empties the WAL).

Each step is idempotent, so a purge killed at any point is finished by the next one. Readers
holding a snapshot from before step 2 may find its files gone in step 3 and must re-run their
query; that is the price of deleting on time rather than late.

Files of the data path that no snapshot references and that are younger than
``orphan_grace`` survive one run (they may be an ingest writer's uncommitted batch). Retention
sweeps expired day folders regardless of age (:mod:`pipeline.maintain.retention`).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import duckdb

from pipeline.errors import LakeConflict
from pipeline.lake.catalog import CATALOG, Lake, RetryPolicy, is_write_conflict

logger = logging.getLogger(__name__)

# The catalog database as DuckLake attaches it beside the lake (read here, never written).
META = f"__ducklake_metadata_{CATALOG}"
DEFAULT_ORPHAN_GRACE = timedelta(hours=1)
_T = TypeVar("_T")


@dataclass(frozen=True)
class PurgeReport:
    """What one purge did (counts only; never a value from the rows)."""

    files_rewritten: int
    snapshots_expired: int
    files_removed: int
    orphans_removed: int
    stats_recomputed: int
    catalog_bytes: int  # size of the catalog database after VACUUM


def purge(
    lake: Lake,
    *,
    now: datetime,
    orphan_grace: timedelta = DEFAULT_ORPHAN_GRACE,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> PurgeReport:
    """Make rows already DELETEd from ``lake`` physically unreadable (steps in the module doc).

    ``now`` is the wall-clock time of the call (injectable for tests): snapshots committed
    before it, and before the rewrite of step 1, are expired; unreferenced files last modified
    before ``now - orphan_grace`` are deleted.

    >>> lake.con.execute("DELETE FROM plate_reads WHERE plate = ?", [plate])  # doctest: +SKIP
    >>> purge(lake, now=datetime.now(UTC))  # doctest: +SKIP
    """
    if lake.read_only:
        raise ValueError("purge needs a lake opened for writing")
    policy = retry or RetryPolicy()
    con = lake.con

    def call(sql: str, params: list[object]) -> list[tuple[object, ...]]:
        return _retrying(policy, sleep, sql, lambda: con.execute(sql, params).fetchall())

    rewritten = call(  # 1
        f"SELECT * FROM ducklake_rewrite_data_files('{CATALOG}', delete_threshold => 0)", []
    )
    files_rewritten = sum(int(str(row[2])) for row in rewritten)
    # 2. Everything but the newest snapshot, even when `now` lags the rewrite's commit.
    (newest,) = con.execute(
        f"SELECT max(snapshot_time) FROM {META}.ducklake_snapshot"
    ).fetchone() or (None,)
    expire_before = max(now, _as_datetime(newest) + timedelta(microseconds=1))
    expired = call(
        f"SELECT * FROM ducklake_expire_snapshots('{CATALOG}', older_than => ?)",
        [expire_before],
    )
    removed = call(  # 3
        f"SELECT * FROM ducklake_cleanup_old_files('{CATALOG}', cleanup_all => true)", []
    )
    orphans = call(
        f"SELECT * FROM ducklake_delete_orphaned_files('{CATALOG}', older_than => ?)",
        [now - orphan_grace],
    )
    catalog = lake.path / "catalog.sqlite"
    recomputed = _recompute_text_stats(catalog, policy, sleep)  # 4
    size = _compact_sqlite(catalog, policy, sleep)  # 5
    report = PurgeReport(
        files_rewritten=files_rewritten,
        snapshots_expired=len(expired),
        files_removed=len(removed),
        orphans_removed=len(orphans),
        stats_recomputed=recomputed,
        catalog_bytes=size,
    )
    logger.info("purge: %s", report)
    return report


def _as_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _retrying(
    policy: RetryPolicy, sleep: Callable[[float], None], what: str, once: Callable[[], _T]
) -> _T:
    for attempt in range(policy.attempts):
        try:
            return once()
        except duckdb.Error as exc:
            if not is_write_conflict(exc):
                raise
            sleep(policy.delay(attempt))
    raise LakeConflict(f"{what.split('(', maxsplit=1)[0]}: {policy.attempts} attempts conflicted")


# Table-level min/max of text columns, recomputed from the statistics of the live files
# (lexicographic min/max of text is the same in SQLite and DuckDB: byte order). Tables that
# inline rows into the catalog (the internal ones) have no file statistics to go by; they
# hold no personal data.
_RECOMPUTE_TEXT_STATS = """
UPDATE ducklake_table_column_stats AS t SET
  min_value = (
    SELECT min(s.min_value) FROM ducklake_file_column_stats s
    JOIN ducklake_data_file f ON f.data_file_id = s.data_file_id
    WHERE f.end_snapshot IS NULL AND s.table_id = t.table_id AND s.column_id = t.column_id),
  max_value = (
    SELECT max(s.max_value) FROM ducklake_file_column_stats s
    JOIN ducklake_data_file f ON f.data_file_id = s.data_file_id
    WHERE f.end_snapshot IS NULL AND s.table_id = t.table_id AND s.column_id = t.column_id)
WHERE t.table_id NOT IN (SELECT table_id FROM ducklake_inlined_data_tables)
  AND EXISTS (
  SELECT 1 FROM ducklake_column c
  WHERE c.table_id = t.table_id AND c.column_id = t.column_id
    AND c.end_snapshot IS NULL AND lower(c.column_type) = 'varchar')
"""


def _sqlite(catalog: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(catalog), timeout=30, isolation_level=None)
    # Deleted records are overwritten with zeros, not left in free pages.
    db.execute("PRAGMA secure_delete = ON")
    return db


def _recompute_text_stats(
    catalog: Path, policy: RetryPolicy, sleep: Callable[[float], None]
) -> int:
    """Step 4, in one SQLite write transaction; returns the number of rows updated."""
    for attempt in range(policy.attempts):
        db = _sqlite(catalog)
        try:
            db.execute("BEGIN IMMEDIATE")
            changed = db.execute(_RECOMPUTE_TEXT_STATS).rowcount
            db.execute("COMMIT")
            return int(changed)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            sleep(policy.delay(attempt))
        finally:
            db.close()
    raise LakeConflict("recompute catalog statistics: the catalog stayed locked")


def _compact_sqlite(catalog: Path, policy: RetryPolicy, sleep: Callable[[float], None]) -> int:
    """Step 5: VACUUM and empty the WAL; returns the catalog file's size afterwards.

    VACUUM writes a fresh copy of every live page (through the WAL, in WAL mode) and truncates
    the file, so no free page keeps an old record; the TRUNCATE checkpoint copies the WAL into
    the file and cuts the WAL to zero bytes. Both wait for other connections' transactions, so
    a busy result is retried.
    """
    vacuumed = False
    for attempt in range(policy.attempts):
        db = _sqlite(catalog)
        try:
            if not vacuumed:
                db.execute("VACUUM")
                vacuumed = True
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy == 0:
                (pages,) = db.execute("PRAGMA page_count").fetchone()
                (page_size,) = db.execute("PRAGMA page_size").fetchone()
                return int(pages) * int(page_size)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        finally:
            db.close()
        sleep(policy.delay(attempt))
    raise LakeConflict("compact catalog: the catalog stayed busy")
