"""SQLite housekeeping on the lake catalog, always in a short child process of its own.

DuckDB's sqlite extension carries its own SQLite library. When a second library (Python's
``sqlite3``) opens the same catalog file in the same process, POSIX advisory locks no longer
protect it: closing any descriptor of a file drops every lock the *process* holds on it,
including the extension's, and a ``VACUUM`` that shrinks the file under the extension's live
memory map ends in "disk I/O error" or SIGBUS. Both were seen. In a child process the locks
are the child's own, and SQLite's normal multi-process locking applies.

Tasks (``python sqlite_child.py TASK CATALOG``, prints one JSON object, exit 0 on success):

- ``wal``: put the catalog in WAL mode (persistent in the file; creates an empty database).
- ``purge``: with ``secure_delete`` on, recompute the table-level min/max of text columns
  from the live files' statistics (DuckLake widens them on insert and never narrows them, so
  a deleted plate can stay there as a table's min or max), ``VACUUM`` (a fresh copy of every
  live page, no free page keeps an old record) and ``wal_checkpoint(TRUNCATE)`` (the WAL is
  copied into the file and cut to zero bytes).

This file imports only the standard library and is run as a script (not ``-m``), so the child
starts in a few tens of milliseconds and never loads DuckDB.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

EXIT_BUSY = 3  # the catalog stayed locked or busy until the deadline

# Tables that inline rows into the catalog (the internal ones) have no file statistics to go
# by; they hold no personal data. Lexicographic min/max of text is byte order in SQLite and
# DuckDB alike.
RECOMPUTE_TEXT_STATS = """
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
            changed = db.execute(RECOMPUTE_TEXT_STATS).rowcount
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
