"""Physical purge: after rows were DELETEd, make them unreadable anywhere under the lake path.

A DuckLake ``DELETE`` only records a delete file in the catalog; the row stays inside its
Parquet data file, older snapshots still reach it (time travel), the catalog keeps min/max
column statistics that may be the deleted value itself, and SQLite keeps deleted records in
free pages and in its WAL. :func:`purge` removes all of that, in this order:

0. **Flush inlined rows** (``ducklake_flush_inlined_data``). The offsets and fence tables
   keep their rows inlined in the catalog, and every ingest commit leaves a row version
   behind there that snapshot expiry never removes; only a flush moves them out (into a file
   that the steps below then expire and delete like any other).
1. **Rewrite** every data file that carries deletes (``ducklake_rewrite_data_files`` with a
   delete threshold of 0): the new file holds only the live rows; the old one is now
   referenced by older snapshots only.
2. **Expire** every snapshot older than the newest one (``ducklake_expire_snapshots``): no time
   travel reaches a deleted row any more, and the old files are scheduled for deletion.
3. **Clean up** all files scheduled for deletion (``ducklake_cleanup_old_files``) and files
   no snapshot knows, older than ``orphan_grace`` (``ducklake_delete_orphaned_files``;
   younger ones may belong to a writer that has not committed yet).
4. **Recompute table-level statistics** of every column from the live files' statistics.
   DuckLake widens ``ducklake_table_column_stats`` on insert and does not narrow it when a
   file whose rows were all deleted goes, so a deleted plate, birth date or capture time can
   stay there as a table's min or max for ever.
5. **Compact the catalog**: SQLite ``secure_delete``, ``VACUUM`` (rebuilds the file without
   free pages) and ``wal_checkpoint(TRUNCATE)`` (empties the WAL).

On a PostgreSQL catalog, step 5 is ``VACUUM FULL`` instead, and the planner statistics of
the columns that hold a row's value are turned off and dropped first
(:mod:`pipeline.lake.postgres_catalog`).

Steps 4 and 5 run in a child process (:mod:`pipeline.lake.sqlite_child`) while this
connection has the catalog detached: Python's ``sqlite3`` in the same process as DuckDB's
sqlite extension breaks SQLite's file locking and, on VACUUM, ended in SIGBUS.

Each step is idempotent, so a purge killed at any point is finished by the next one. Readers
holding a snapshot from before step 2 may find its files gone in step 3 and must re-run their
query; that is the price of deleting on time rather than late.

Files of the data path that no snapshot references and that are younger than
``orphan_grace`` survive one run (they may be an ingest writer's uncommitted batch). Retention
sweeps expired day folders regardless of age (:mod:`pipeline.maintain.retention`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.errors import LakeConflict
from pipeline.lake.catalog import CATALOG, METADATA_DB, Lake
from pipeline.lake.postgres_catalog import purge_catalog
from pipeline.lake.sqlite_child import EXIT_BUSY, CatalogTaskFailed, run_task

logger = logging.getLogger(__name__)

META = METADATA_DB  # the catalog database (read here, never written)
# Steps 1-3: the ones that change the history a concurrent transaction's commit checks.
REWRITE_SQL = f"SELECT * FROM ducklake_rewrite_data_files('{CATALOG}', delete_threshold => 0)"
EXPIRE_SQL = f"SELECT * FROM ducklake_expire_snapshots('{CATALOG}', older_than => ?)"
CLEANUP_SQL = f"SELECT * FROM ducklake_cleanup_old_files('{CATALOG}', cleanup_all => true)"
DEFAULT_ORPHAN_GRACE = timedelta(hours=1)


@dataclass(frozen=True)
class PurgeReport:
    """What one purge did (counts only; never a value from the rows)."""

    files_rewritten: int
    snapshots_expired: int
    files_removed: int
    orphans_removed: int
    stats_recomputed: int
    value_columns_unsampled: int  # PostgreSQL: planner statistics turned off (0 once done)
    value_columns_left: int  # PostgreSQL: value columns it could not change (warned; verify fails)
    catalog_bytes: int  # size of the catalog database after VACUUM


def purge(
    lake: Lake,
    *,
    now: datetime,
    orphan_grace: timedelta = DEFAULT_ORPHAN_GRACE,
) -> PurgeReport:
    """Make rows already DELETEd from ``lake`` physically unreadable (steps in the module doc).

    ``now`` is the wall-clock time of the call (injectable for tests): snapshots committed
    before it, and before the rewrite of step 1, are expired; unreferenced files last modified
    before ``now - orphan_grace`` are deleted.

    >>> lake.execute("DELETE FROM plate_reads WHERE plate = ?", [plate])  # doctest: +SKIP
    >>> purge(lake, now=datetime.now(UTC))  # doctest: +SKIP
    """
    if lake.read_only:
        raise ValueError("purge needs a lake opened for writing")

    def call(sql: str, params: list[object]) -> list[tuple[object, ...]]:
        what = sql.split("(", maxsplit=1)[0]
        return lake.retrying(what, lambda: lake.execute(sql, params).fetchall())

    flushed = call(f"SELECT * FROM ducklake_flush_inlined_data('{CATALOG}')", [])  # 0
    logger.debug("purge: %d inlined rows flushed", sum(int(str(row[2])) for row in flushed))
    rewritten = call(REWRITE_SQL, [])  # 1
    files_rewritten = sum(int(str(row[2])) for row in rewritten)
    logger.debug("purge: %d files rewritten", files_rewritten)
    # 2. Everything but the newest snapshot, even when `now` lags the rewrite's commit.
    (newest,) = lake.execute(
        f"SELECT max(snapshot_time) FROM {META}.ducklake_snapshot"
    ).fetchone() or (None,)
    expire_before = max(now, _as_datetime(newest) + timedelta(microseconds=1))
    expired = call(EXPIRE_SQL, [expire_before])
    logger.debug("purge: %d snapshots expired", len(expired))
    removed = call(CLEANUP_SQL, [])  # 3
    orphans = call(
        f"SELECT * FROM ducklake_delete_orphaned_files('{CATALOG}', older_than => ?)",
        [now - orphan_grace],
    )
    logger.debug("purge: %d old and %d orphaned files removed", len(removed), len(orphans))
    if lake.storage.kind == "postgres":
        # Released: an idle connection of our own that still holds a DuckLake table would
        # make VACUUM FULL wait for it for ever.
        with lake.catalog_released():
            pg = purge_catalog(lake.storage)
        recomputed, size = pg.stats_recomputed, pg.catalog_bytes
        unsampled, left = pg.columns_unsampled, len(pg.columns_left)
    else:
        recomputed, size = _purge_sqlite(lake)
        unsampled = left = 0
    report = PurgeReport(
        files_rewritten=files_rewritten,
        snapshots_expired=len(expired),
        files_removed=len(removed),
        orphans_removed=len(orphans),
        stats_recomputed=recomputed,
        value_columns_unsampled=unsampled,
        value_columns_left=left,
        catalog_bytes=size,
    )
    logger.info("purge: %s", report)
    return report


def _purge_sqlite(lake: Lake) -> tuple[int, int]:
    """Steps 4-5 in a child process, with this connection's handle on the catalog released:
    see pipeline/lake/sqlite_child.py for why never in this process."""
    sqlite = lake.storage.sqlite_file
    assert sqlite is not None  # a lake's catalog is SQLite or PostgreSQL
    with lake.catalog_released():
        try:
            done = run_task("purge", sqlite)
        except CatalogTaskFailed as exc:
            if exc.code == EXIT_BUSY:
                raise LakeConflict("compact catalog: the catalog stayed busy") from exc
            raise
    return int(done["stats_recomputed"]), int(done["catalog_bytes"])


def _as_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))
