"""What the lake holds per table and UTC day, read from the DuckLake catalog (no data scan).

The catalog tables used here (``ducklake_data_file``, ``ducklake_delete_file``,
``ducklake_column``, ``ducklake_file_column_stats``) are part of the DuckLake specification.
Data files of a day-partitioned table live under ``year=Y/month=M/day=D/`` (Hive layout, see
:mod:`pipeline.lake.catalog`), which gives each file its day.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from pipeline.lake.backend import Storage
from pipeline.lake.catalog import Lake
from pipeline.lake.s3 import S3Client
from pipeline.maintain.purge import META

_DAY_DIR = re.compile(r"(?:^|/)year=(\d{4})/month=(\d{1,2})/day=(\d{1,2})/")

_FILES_SQL = f"""
SELECT f.path, f.record_count, coalesce(d.delete_count, 0), d.path, s.max_value
FROM {META}.ducklake_data_file f
JOIN {META}.ducklake_table t
  ON t.table_id = f.table_id AND t.end_snapshot IS NULL AND t.table_name = ?
LEFT JOIN {META}.ducklake_delete_file d
  ON d.data_file_id = f.data_file_id AND d.end_snapshot IS NULL
LEFT JOIN {META}.ducklake_column c
  ON c.table_id = f.table_id AND c.column_name = ? AND c.end_snapshot IS NULL
LEFT JOIN {META}.ducklake_file_column_stats s
  ON s.data_file_id = f.data_file_id AND s.column_id = c.column_id
WHERE f.end_snapshot IS NULL
"""


@dataclass(frozen=True)
class DayFiles:
    """The live files of one table and day."""

    day: date
    files: int
    delete_files: int
    rows: int  # live rows: records minus deleted
    newest_ingest: str  # max of the version column over the files ('' if unknown)

    @property
    def signature(self) -> str:
        """Changes when rows of the day are added or deleted; stays through compaction."""
        text = f"{self.rows}|{self.newest_ingest}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def day_of_path(path: str) -> date | None:
    """The partition day of a data file path, or None outside a day folder."""
    found = _DAY_DIR.search(path)
    if found is None:
        return None
    year, month, day = (int(g) for g in found.groups())
    return date(year, month, day)


def files_by_day(
    con: Lake | duckdb.DuckDBPyConnection, table: str, version_column: str = "ingested_at"
) -> dict[date, DayFiles]:
    """Live files of ``table`` grouped by partition day (files outside day folders skipped)."""
    acc: dict[date, list[tuple[int, int, bool, str]]] = {}
    for path, records, deleted, delete_path, newest in con.execute(
        _FILES_SQL, [table, version_column]
    ).fetchall():
        day = day_of_path(str(path))
        if day is None:
            continue
        acc.setdefault(day, []).append(
            (int(records), int(deleted), delete_path is not None, str(newest or ""))
        )
    return {
        day: DayFiles(
            day=day,
            files=len(items),
            delete_files=sum(1 for i in items if i[2]),
            rows=sum(i[0] - i[1] for i in items),
            newest_ingest=max(i[3] for i in items),
        )
        for day, items in acc.items()
    }


def table_exists(con: Lake | duckdb.DuckDBPyConnection, catalog: str, table: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name = ?",
            [catalog, table],
        ).fetchone()
        == (1,)
    )


class DataFiles:
    """The files a data path holds for a table, per partition day: walked on a local folder,
    listed in a bucket (so retention's sweep and the verification see what the store holds,
    not what the catalog says).

    >>> DataFiles(storage).by_day("plate_reads")  # doctest: +SKIP
    {datetime.date(2026, 1, 2): ['.../day=2/ducklake-0193....parquet'], ...}
    """

    def __init__(self, storage: Storage) -> None:
        self.local = storage.local_data
        self.client = S3Client.for_storage(storage)
        self.prefix = "" if self.client is None else self.client.data_prefix(storage)

    def by_day(self, table: str) -> dict[date, list[str]]:
        """Day -> the files (local paths or object keys) under that day's folder."""
        out: dict[date, list[str]] = {}
        if self.client is None:
            assert self.local is not None  # a data path is a folder or a bucket
            for day, folder in day_folders(self.local, table).items():
                out[day] = sorted(str(p) for p in folder.iterdir() if p.is_file())
            return out
        root = f"{self.prefix}main/{table}/"
        for item in self.client.list(root):
            # S3Proxy's filesystem backend lists its folders as keys ending in "/".
            found = day_of_path(item.key.removeprefix(root))
            if found is not None and not item.key.endswith("/"):
                out.setdefault(found, []).append(item.key)
        return out

    def remove(self, ref: str) -> None:
        if self.client is None:
            Path(ref).unlink(missing_ok=True)
        else:
            self.client.delete(ref)

    def tidy(self, table: str, day: date) -> None:
        """Remove the day's folder if empty (a bucket has no folders to remove)."""
        if self.local is not None:
            folder = day_folders(self.local, table).get(day)
            if folder is not None:
                _remove_empty(folder, stop=self.local / "main" / table)


def _remove_empty(folder: Path, *, stop: Path) -> None:
    while folder != stop and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def day_folders(data_dir: Path, table: str) -> Mapping[date, Path]:
    """Day folders present on disk for ``table`` (``data/main/<table>/year=/month=/day=``)."""
    root = data_dir / "main" / table
    out: dict[date, Path] = {}
    if not root.is_dir():
        return out
    for folder in root.glob("year=*/month=*/day=*"):
        day = day_of_path(f"{folder.relative_to(root).as_posix()}/")
        if day is not None and folder.is_dir():
            out[day] = folder
    return out
