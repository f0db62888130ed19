"""SQLite housekeeping on the lake catalog, always in a short child process of its own.

DuckDB's sqlite extension carries its own SQLite library. When a second library (Python's
``sqlite3``) opens the same catalog file in the same process, POSIX advisory locks no longer
protect it: closing any descriptor of a file drops every lock the *process* holds on it,
including the extension's, and a ``VACUUM`` that shrinks the file under the extension's live
memory map ends in "disk I/O error" or SIGBUS. Both were seen. In a child process the locks
are the child's own, and SQLite's normal multi-process locking applies.

Tasks (``python sqlite_child.py TASK CATALOG``, prints one JSON object, exit 0 on success):

- ``wal``: put the catalog in WAL mode (persistent in the file; creates an empty database).
- ``purge``: with ``secure_delete`` on, recompute the table-level min/max of every column
  from the live files' statistics (DuckLake widens them on insert and never narrows them, so
  a deleted plate, birth date or capture time can stay there as a table's min or max),
  ``VACUUM`` (a fresh copy of every live page, no free page keeps an old record) and
  ``wal_checkpoint(TRUNCATE)`` (the WAL is copied into the file and cut to zero bytes).

This file imports only the standard library and is run as a script (not ``-m``), so the child
starts in a few tens of milliseconds and never loads DuckDB.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import Any

EXIT_BUSY = 3  # the catalog stayed locked or busy until the deadline

# Every table-level statistic with the live data files' statistics of its column: the
# statistic's table and column, the live file (None: no live file), its min and max, the column
# type. Tables that inline rows into the catalog (the internal ones) have no file statistics to
# go by; they hold no personal data and are left alone. Plain SQL that SQLite and PostgreSQL
# (:mod:`pipeline.lake.postgres_catalog`) both run.
LIVE_FILE_STATS = """
SELECT t.table_id, t.column_id, s.data_file_id, s.min_value, s.max_value,
  (SELECT lower(c.column_type) FROM ducklake_column c
   WHERE c.table_id = t.table_id AND c.column_id = t.column_id
   ORDER BY c.begin_snapshot DESC LIMIT 1)
FROM ducklake_table_column_stats t
LEFT JOIN (
  SELECT s.data_file_id, s.table_id, s.column_id, s.min_value, s.max_value
  FROM ducklake_file_column_stats s
  JOIN ducklake_data_file f ON f.data_file_id = s.data_file_id
  WHERE f.end_snapshot IS NULL) s ON s.table_id = t.table_id AND s.column_id = t.column_id
WHERE t.table_id NOT IN (SELECT table_id FROM ducklake_inlined_data_tables)
"""
# Copies a value as DuckLake stored it (never re-rendered); a NULL file id gives NULL.
# Named parameters in SQLite's style; postgres_catalog rewrites them for psycopg.
SET_TABLE_STATS = """
UPDATE ducklake_table_column_stats SET
  min_value = (SELECT min_value FROM ducklake_file_column_stats
               WHERE data_file_id = :low AND column_id = :column),
  max_value = (SELECT max_value FROM ducklake_file_column_stats
               WHERE data_file_id = :high AND column_id = :column)
WHERE table_id = :table AND column_id = :column
"""
# DuckLake's names of the types whose statistics are numbers (``decimal(p,s)`` as well).
# Every other type with statistics orders as its text, byte by byte (SQLite and DuckDB alike):
# varchar, json, uuid, blob (upper-case hex), boolean (0/1) and the ISO dates, times and
# timestamps (``1990-01-01``, ``2026-03-01 08:00:00.5+00``: always UTC in a DuckLake catalog,
# trailing zeros of the fraction dropped, which still orders right as '+' < '.' < '0').
NUMERIC_TYPES = frozenset(
    {"int8", "int16", "int32", "int64", "int128", "uint8", "uint16", "uint32", "uint64"}
    | {"uint128", "float32", "float64"}
)


class CatalogTaskFailed(Exception):
    """The child process failed (its exit code and last line of stderr are in the message)."""

    def __init__(self, task: str, code: int, detail: str) -> None:
        super().__init__(f"catalog task {task} exited {code}: {detail}")
        self.task = task
        self.code = code


def run_task(task: str, catalog: Path, *, timeout_s: float = 300.0) -> dict[str, Any]:
    """Run ``task`` on ``catalog`` in a child process; its JSON result, or CatalogTaskFailed."""
    done = subprocess.run(
        [sys.executable, "-I", str(Path(__file__).resolve()), task, str(catalog), str(timeout_s)],
        capture_output=True,
        text=True,
        timeout=timeout_s + 30,
        check=False,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise CatalogTaskFailed(task, done.returncode, lines[-1] if lines else "no output")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# -- the child side -------------------------------------------------------------------------


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def _until(deadline: float, what: str, once: Any) -> Any:
    """Call ``once()`` until it stops raising a locked/busy error or returns non-None."""
    delay = 0.01
    while True:
        try:
            result = once()
            if result is not None:
                return result
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: the catalog stayed busy")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def _number(kind: str, raw: bytes) -> tuple[int, Decimal]:
    """Exact order of a numeric statistic (``-12.50``, ``1.5e-07``, ``inf``); NaN last, as in
    DuckDB. Never a float: two int64 or decimal values can round to the same double."""
    try:
        value = Decimal(raw.decode("ascii"))
    except (UnicodeDecodeError, InvalidOperation):
        # Never the value in the message: it may be personal data.
        raise ValueError(f"a {kind} column statistic is not a number") from None
    return (1, Decimal(0)) if value.is_nan() else (0, value)


def _order_key(kind: str | None) -> Callable[[bytes], Any]:
    if kind is not None and (kind in NUMERIC_TYPES or kind.startswith("decimal(")):
        return partial(_number, kind)
    return bytes  # byte order of the text


def pick_extremes(
    rows: Iterable[Sequence[Any]],
) -> list[dict[str, int | None]]:
    """For each table statistic, the live file holding the least min and the one holding the
    greatest max (None: no live file has a value), as :data:`SET_TABLE_STATS` parameters.

    ``rows`` are :data:`LIVE_FILE_STATS` rows. Shared by the SQLite child and the PostgreSQL
    purge (:mod:`pipeline.lake.postgres_catalog`), so both order values the same way.
    """
    best: dict[tuple[int, int], list[tuple[int, Any] | None]] = {}
    for table, column, data_file, low, high, kind in rows:
        pick = best.setdefault((int(table), int(column)), [None, None])
        if data_file is None:
            continue
        key = _order_key(kind)
        if low is not None:
            k = key(_raw(low))
            if pick[0] is None or k < pick[0][1]:
                pick[0] = (int(data_file), k)
        if high is not None:
            k = key(_raw(high))
            if pick[1] is None or k > pick[1][1]:
                pick[1] = (int(data_file), k)
    return [
        {
            "table": table,
            "column": column,
            "low": low[0] if low else None,
            "high": high[0] if high else None,
        }
        for (table, column), (low, high) in best.items()
    ]


def _raw(value: object) -> bytes:
    """A statistic's bytes as stored (SQLite may hand back TEXT or BLOB; PostgreSQL text)."""
    return value if isinstance(value, bytes) else str(value).encode()


def recompute_table_stats(db: sqlite3.Connection) -> int:
    """Set every table-level min/max to the least/greatest of the live files' statistics
    (NULL when no live file has a value); how many statistics rows were set.

    DuckLake widens ``ducklake_table_column_stats`` on insert and never narrows it when rows
    are deleted, so a deleted plate, birth date or capture time can stay there as a table's
    min or max. The values must be exact, not merely wider: DuckDB answers ``min()`` and
    prunes filters from them (a too-narrow range loses rows), and the next insert widens
    from them (or, from NULL, starts afresh at the new file's range).
    """
    picks = pick_extremes(db.execute(LIVE_FILE_STATS))
    db.executemany(SET_TABLE_STATS, picks)
    return len(picks)


def _wal(db: sqlite3.Connection, deadline: float) -> dict[str, Any]:
    def once() -> str | None:
        (mode,) = db.execute("PRAGMA journal_mode").fetchone()
        if mode == "wal":
            return str(mode)
        # Switching needs the file to itself; SQLite does not wait for that, it fails.
        db.execute("PRAGMA journal_mode=WAL")
        return None

    return {"journal_mode": _until(deadline, "WAL mode", once)}


def _purge(db: sqlite3.Connection, deadline: float) -> dict[str, Any]:
    db.execute("PRAGMA secure_delete = ON")  # deleted records are overwritten with zeros

    def recompute() -> int:
        db.execute("BEGIN IMMEDIATE")
        try:
            changed = recompute_table_stats(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return int(changed)

    def vacuum() -> bool:
        db.execute("VACUUM")
        return True

    def checkpoint() -> bool | None:
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return True if busy == 0 else None

    changed = _until(deadline, "recompute statistics", recompute)
    _until(deadline, "VACUUM", vacuum)
    _until(deadline, "checkpoint", checkpoint)
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    (page_size,) = db.execute("PRAGMA page_size").fetchone()
    return {"stats_recomputed": changed, "catalog_bytes": int(pages) * int(page_size)}


_TASKS = {"wal": _wal, "purge": _purge}


def main(argv: list[str]) -> int:
    task, catalog, timeout_s = argv[0], argv[1], float(argv[2])
    deadline = time.monotonic() + timeout_s
    db = sqlite3.connect(catalog, timeout=min(30.0, timeout_s), isolation_level=None)
    try:
        result = _TASKS[task](db, deadline)
    except TimeoutError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BUSY
    finally:
        db.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
