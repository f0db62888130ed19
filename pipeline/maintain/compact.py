"""Compaction: rewrite a closed day's many small files as few large ones, rows sorted.

Ingest writes one file per batch and day, so a busy day ends as hundreds of small files. For
each closed day with at least ``min_files`` files (or with delete files), in ONE transaction:

1. Read the largest row id of the day's rows in the transaction's snapshot.
2. Insert the day's rows again, sorted by the table's sort order (plate then capture time for
   reads; :mod:`pipeline.lake.tables`), in new files of up to the lake's ``target_file_size``.
3. Delete the day's rows with a row id up to the one read in 1: exactly the old rows (rows
   inserted in this transaction get row ids above every committed one).
4. Check the day's row count is unchanged, then commit.

Readers see the old files or the new ones, never both, never neither (one snapshot). A write
conflict (a late read for that day committed meanwhile) re-runs 1-4 on a fresh snapshot, so
the late read is kept. The old files stay until :func:`pipeline.maintain.purge.purge` expires
the snapshots that still reference them. A run killed mid-way leaves at most uncommitted files
(orphans, removed by purge) and a day still to compact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from pipeline.lake.catalog import CATALOG, Lake, quote_ident
from pipeline.lake.tables import LAKE_TABLES
from pipeline.maintain.inventory import DayFiles
from pipeline.maintain.stats import day_start

logger = logging.getLogger(__name__)

# Row groups of tables sorted by more than their day column (plate_reads: plate first): a
# plate lookup reads only the row groups whose plate range holds the plate, so smaller groups
# prune more. Measured on 40 days x 170k reads (loaded
# machine): a lookup took ~55 ms after compaction with 16,384-row groups, 105-196 ms with the
# lake's default of 122,880 (2 groups a day), 167-260 ms before compaction.
SORTED_ROW_GROUP_ROWS = 16_384
SORTED_TABLES = tuple(t.name for t in LAKE_TABLES.values() if t.sort_by)


@dataclass(frozen=True)
class CompactTask:
    table: str
    day_column: str
    day: date
    files: int


def plan_compaction(
    table: str,
    day_column: str,
    days: Mapping[date, DayFiles],
    *,
    as_of: datetime,
    grace: timedelta,
    first_kept_day: date,
    min_files: int,
) -> list[CompactTask]:
    """Closed, unexpired days with ``min_files`` or more files, or with delete files."""
    return [
        CompactTask(table, day_column, d, f.files)
        for d, f in sorted(days.items())
        if as_of >= day_start(d) + timedelta(days=1) + grace
        and d >= first_kept_day
        and (f.files >= min_files or f.delete_files > 0)
    ]


class CompactionChangedRows(RuntimeError):
    """The rewrite would change a day's row count: a bug, so the transaction is rolled back."""


def compact_day(lake: Lake, task: CompactTask) -> int:
    """Rewrite one day (steps 1-4 above); returns the day's row count."""
    name = f"{CATALOG}.{quote_ident(task.table)}"
    col = quote_ident(task.day_column)
    spec = LAKE_TABLES.get(task.table)
    sort = spec.sort_order if spec and spec.sort_order else (task.day_column,)
    order = ", ".join(quote_ident(c) for c in sort)
    start = day_start(task.day)
    bounds = [start, start + timedelta(days=1)]
    where = f"{col} >= ? AND {col} < ?"

    def body() -> int:
        max_id, rows = lake.execute(  # 1
            f"SELECT max(rowid), count(*) FROM {name} WHERE {where}", bounds
        ).fetchone() or (None, 0)
        if not rows:
            return 0
        lake.execute(  # 2
            f"INSERT INTO {name} SELECT * FROM {name} WHERE {where} ORDER BY {order}", bounds
        )
        lake.execute(f"DELETE FROM {name} WHERE {where} AND rowid <= ?", [*bounds, max_id])  # 3
        (after,) = lake.execute(
            f"SELECT count(*) FROM {name} WHERE {where}", bounds
        ).fetchone() or (0,)
        if after != rows:  # 4
            raise CompactionChangedRows(f"{task.table} {task.day}: {rows} rows became {after}")
        return int(rows)

    return lake.retrying(f"compact {task.table} {task.day}", body, transaction=True)


def merge_small_tables(lake: Lake, tables: Sequence[str]) -> None:
    """Let DuckLake merge the small files of unpartitioned tables (statistics)."""
    sql = f"SELECT * FROM ducklake_merge_adjacent_files('{CATALOG}', ?)"
    for table in tables:

        def once(t: str = table) -> None:
            lake.execute(sql, [t]).fetchall()

        lake.retrying(f"merge {table}", once)


def ensure_row_groups(lake: Lake) -> None:
    """Give the tables sorted by more than their day row groups of
    :data:`SORTED_ROW_GROUP_ROWS` (a table option kept in the catalog, set once; ingest files
    get them too)."""
    done = {
        str(entry)
        for (entry,) in lake.execute(
            f"SELECT scope_entry FROM {CATALOG}.options() WHERE option_name = "
            "'parquet_row_group_size' AND scope = 'TABLE' AND value = ?",
            [str(SORTED_ROW_GROUP_ROWS)],
        ).fetchall()
    }
    for table in SORTED_TABLES:
        if f"main.{table}" in done:
            continue

        def once(t: str = table) -> None:
            lake.execute(
                f"CALL {CATALOG}.set_option('parquet_row_group_size', ?, table_name => ?)",
                [SORTED_ROW_GROUP_ROWS, t],
            )

        lake.retrying(f"row groups of {table}", once)


def run_compaction(
    lake: Lake,
    tasks: Sequence[CompactTask],
    progress: Callable[[CompactTask], None] = lambda _t: None,
) -> int:
    """Compact every task; returns the rows rewritten."""
    total = 0
    for task in tasks:
        total += compact_day(lake, task)
        logger.debug("compacted %s %s (%d files)", task.table, task.day, task.files)
        progress(task)
    return total
