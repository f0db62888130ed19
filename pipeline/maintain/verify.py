"""The run checks its own result: nothing collected at or before a table's cutoff is left."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from psycopg import sql

from pipeline.lake.backend import Storage
from pipeline.lake.catalog import CATALOG, Lake, quote_ident
from pipeline.lake.postgres_catalog import VALUE_COLUMNS, connect, ducklake_tables
from pipeline.maintain.inventory import DataFiles
from pipeline.maintain.purge import META
from pipeline.maintain.retention import Cutoff


@dataclass(frozen=True)
class TableCheck:
    table: str
    oldest: datetime | None  # oldest collection time still stored (None: table empty)
    rows_past_limit: int
    files_in_expired_days: int  # any file left in an expired day folder
    # Catalog values at or before it: min statistics (of any file, or the table's) and rows
    # inlined into the catalog database.
    catalog_past_limit: int = 0

    @property
    def ok(self) -> bool:
        return self.rows_past_limit == self.files_in_expired_days == self.catalog_past_limit == 0


# Every min statistic of a table's collection-time column in the catalog, per file (any file
# the catalog still knows, live or not) and for the table: none may be at or before the cutoff.
_STATS_PAST = f"""
SELECT count(*) FROM (
  SELECT s.min_value FROM {META}.ducklake_file_column_stats s
  JOIN {META}.ducklake_column c ON c.table_id = s.table_id AND c.column_id = s.column_id
  JOIN {META}.ducklake_table t ON t.table_id = s.table_id
  WHERE t.table_name = ? AND t.end_snapshot IS NULL AND c.column_name = ?
    AND c.end_snapshot IS NULL
  UNION ALL
  SELECT s.min_value FROM {META}.ducklake_table_column_stats s
  JOIN {META}.ducklake_column c ON c.table_id = s.table_id AND c.column_id = s.column_id
  JOIN {META}.ducklake_table t ON t.table_id = s.table_id
  WHERE t.table_name = ? AND t.end_snapshot IS NULL AND c.column_name = ?
    AND c.end_snapshot IS NULL)
WHERE TRY_CAST(min_value AS TIMESTAMPTZ) <= ?
"""


def verify(lake: Lake, cuts: Mapping[str, Cutoff]) -> list[TableCheck]:
    """For each table: its oldest row and anything left at or before its cutoff, in its rows,
    in the data path (walked or listed) and in the catalog's statistics."""
    files = DataFiles(lake.storage)
    out = []
    for table, cut in cuts.items():
        col = quote_ident(cut.column)
        oldest, past = lake.execute(
            f"SELECT min({col}), count(*) FILTER (WHERE {col} <= ?) "
            f"FROM {CATALOG}.{quote_ident(table)}",
            [cut.cutoff],
        ).fetchone() or (None, 0)
        left = sum(
            len(refs) for day, refs in files.by_day(table).items() if day < cut.first_kept_day
        )
        (stats,) = lake.execute(
            _STATS_PAST, [table, cut.column, table, cut.column, cut.cutoff]
        ).fetchone() or (0,)
        catalog = int(stats) + _inlined_past(lake, cut)
        out.append(TableCheck(table, oldest, int(past), left, catalog))
    return out


def _inlined_past(lake: Lake, cut: Cutoff) -> int:
    """Rows of the table inlined into the catalog database (every version DuckLake keeps,
    deleted ones too), collected at or before the cutoff. Personal-data tables are created
    with inlining off, so this is a guard against that setting changing."""
    names = lake.execute(
        f"SELECT i.table_name FROM {META}.ducklake_inlined_data_tables i "
        f"JOIN {META}.ducklake_table t ON t.table_id = i.table_id "
        "WHERE t.table_name = ? AND t.end_snapshot IS NULL",
        [cut.table],
    ).fetchall()
    total = 0
    for (name,) in names:
        (n,) = lake.execute(
            f"SELECT count(*) FROM {META}.{quote_ident(str(name))} "
            f"WHERE {quote_ident(cut.column)} <= ?",
            [cut.cutoff],
        ).fetchone() or (0,)
        total += int(n)
    return total


def catalog_dead_tuples(storage: Storage) -> dict[str, int] | None:
    """DuckLake tables that hold dead tuples, and how many (None: not PostgreSQL).

    Counted afresh by ``ANALYZE`` (it reads every page of tables this small), not taken from
    the statistics counters: other backends report their deletes to those asynchronously, so
    right after the purge they can still show deletes that ``VACUUM FULL`` already removed.
    Ingest commits made since the purge add dead tuples (old versions of rows written after
    it, holding nothing retention deleted), so this is reported, not held against the run.
    """
    if storage.kind != "postgres":
        return None
    with connect(storage, application="anpr-maintain verify") as conn:
        for name in ducklake_tables(conn):
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(name)))
        conn.execute("SELECT pg_stat_force_next_flush()")
        rows = conn.execute(
            "SELECT relname, n_dead_tup FROM pg_stat_user_tables "
            "WHERE schemaname = current_schema() AND relname LIKE 'ducklake\\_%' "
            "AND n_dead_tup > 0"
        ).fetchall()
    return {str(name): int(str(dead)) for name, dead in rows}


def sampled_values(storage: Storage) -> list[str] | None:
    """Value columns whose planner statistics are on or hold values ("table.column"; None:
    not PostgreSQL). After a purge there is none (``unsample_values`` in
    :mod:`pipeline.lake.postgres_catalog`), unless it warned about them."""
    if storage.kind != "postgres":
        return None
    with connect(storage, application="anpr-maintain verify") as conn:
        rows = conn.execute(VALUE_COLUMNS).fetchall()
    return [f"{table}.{column}" for table, column, _, sampled, held in rows if sampled or held]
