"""Where the activity log's lines and head record are kept: a local file, or the catalog database.

:class:`pipeline.access.audit.ActivityLog` does the chaining, MACs, verification and retention;
a store only keeps what it is given, in order, and serialises appends:

- :class:`FileStore` (the embedded default, ADR 0007): JSON lines in ``<log>``, the head record
  in ``<log>.head.json``, appends serialised by ``flock`` on ``<log>.lock``: one host.
- :class:`CatalogStore` (a ``postgres:`` catalog, ADR 0005): the same lines and head record in
  the schema ``anpr_audit`` of the catalog database, so every ``anpr serve`` of the lake appends
  to one chain. An append is one transaction that locks the one-row head table (``SELECT ...
  FOR UPDATE``), reads the head, inserts the entry and moves the head: two instances append in
  one order, each entry chained to the one before.

The schema is not DuckLake's (``public``): the lake is attached with only DuckLake's schema
loaded (:meth:`pipeline.lake.backend.Storage.attach_sql`), so no DuckDB connection on the lake
can name these tables. The postgres extension's ``postgres_query`` on the metadata database
runs any SQL as the connection's login, so query sessions log in as ``lake.query_catalog``, a
role with no privilege on this schema (:meth:`~pipeline.lake.backend.Storage.for_queries`,
ADR 0008); this store keeps ``lake.catalog``'s login.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import psycopg

from pipeline.files import write_atomic
from pipeline.lake.backend import Storage

SCHEMA = "anpr_audit"
_PAGE = 5000  # entries read per round trip
# Serialises the tables' creation by several instances starting at once (CREATE ... IF NOT
# EXISTS races on the catalog's unique indexes). A constant of the application.
_SETUP_LOCK_KEY = 0x616E70725F6C6F67  # "anpr_log"
_SETUP = (
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.entries "
    "(seq bigint PRIMARY KEY, entry text NOT NULL, mac text NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.head "
    "(id smallint PRIMARY KEY CHECK (id = 1), record text)",
    f"INSERT INTO {SCHEMA}.head VALUES (1, NULL) ON CONFLICT (id) DO NOTHING",
)


class StoreError(Exception):
    """The store could not be read or written."""


class LogStore(Protocol):
    """What :class:`~pipeline.access.audit.ActivityLog` needs of a place to keep the log."""

    name: str  # for messages: a path, or where in the catalog database

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Held while appending or cutting: one writer at a time, whichever process."""
        ...

    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        """Reads inside see one consistent state (head and lines together)."""
        ...

    def exists(self) -> bool: ...

    def has_lines(self) -> bool: ...

    def read_head(self) -> str | None: ...

    def write_head(self, record: str) -> None: ...

    def append(self, seq: int, mac: str, line: str) -> None:
        """Store ``line`` durably after the others (inside :meth:`exclusive`)."""
        ...

    def lines(self) -> Iterator[str]: ...

    def cut(self, first_seq: int, kept: Sequence[str]) -> None:
        """Keep only ``kept`` (the lines from seq ``first_seq`` on); inside :meth:`exclusive`."""
        ...

    def close(self) -> None: ...


class FileStore:
    """JSON lines at ``path``, the head record and the lock file beside it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.head_path = path.with_name(path.name + ".head.json")
        self.lock_path = path.with_name(path.name + ".lock")
        self.name = str(path)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def exists(self) -> bool:
        return self.path.is_file()

    def has_lines(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def read_head(self) -> str | None:
        try:
            return self.head_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def write_head(self, record: str) -> None:
        write_atomic(self.head_path, record + "\n", sync_dir=True)  # mode 0600

    def append(self, seq: int, mac: str, line: str) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"cannot write the activity log {self.path}: {exc}") from exc

    def lines(self) -> Iterator[str]:
        try:
            with self.path.open(encoding="utf-8", errors="replace", newline="\n") as handle:
                for line in handle:
                    yield line.removesuffix("\n")
        except FileNotFoundError:
            return

    def cut(self, first_seq: int, kept: Sequence[str]) -> None:
        write_atomic(self.path, "".join(f"{line}\n" for line in kept), sync_dir=True)

    def close(self) -> None:
        pass


class CatalogStore:
    """The log in the schema :data:`SCHEMA` of the lake's PostgreSQL catalog database.

    One connection, opened on first use and again after it broke (a server restart fails the
    request that found it broken, never a later one). The service's threads share it: a lock
    keeps one transaction on it at a time.
    """

    def __init__(self, storage: Storage) -> None:
        if storage.kind != "postgres":
            raise ValueError("the activity log goes in the catalog database on PostgreSQL only")
        self._storage = storage
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._lock = threading.RLock()
        self._depth = 0  # nesting of exclusive()/snapshot() on this connection
        self._cut = False  # rows were deleted by the transaction under way
        self.name = f"the catalog database's schema {SCHEMA}"

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        from pipeline.lake.postgres_catalog import connect  # noqa: PLC0415 (DuckDB-free import)

        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        try:
            conn = connect(self._storage, application="anpr-activity-log")
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [_SETUP_LOCK_KEY])
                for statement in _SETUP:
                    conn.execute(statement)
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the activity log in {self.name}: {exc}") from None
        self._conn = conn
        return conn

    @contextlib.contextmanager
    def _transaction(self, lock_head: bool) -> Iterator[None]:
        with self._lock:
            if self._depth:  # already inside one of ours: same transaction
                yield
                return
            conn = self._connection()
            try:
                with conn.transaction():
                    if lock_head:
                        conn.execute(f"SELECT 1 FROM {SCHEMA}.head WHERE id = 1 FOR UPDATE")
                    else:
                        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    self._depth += 1
                    try:
                        yield
                    finally:
                        self._depth -= 1
                if self._cut:
                    # Deleted rows stay in the table's pages until rewritten (see
                    # pipeline.lake.postgres_catalog): entries past retention leave no byte.
                    conn.execute(f"VACUUM (FULL, ANALYZE) {SCHEMA}.entries")
            except psycopg.Error as exc:
                raise StoreError(f"the activity log in {self.name}: {exc}") from None
            finally:
                self._cut = False

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        return self._transaction(lock_head=True)

    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        return self._transaction(lock_head=False)

    def _execute(
        self, sql: str, params: Sequence[object] = ()
    ) -> psycopg.Cursor[tuple[object, ...]]:
        """Run one statement (its rows are fetched by then: psycopg's cursors are client-side)."""
        with self._lock:
            try:
                return self._connection().execute(sql, params)
            except psycopg.Error as exc:
                raise StoreError(f"the activity log in {self.name}: {exc}") from None

    def exists(self) -> bool:
        return self.read_head() is not None or self.has_lines()

    def has_lines(self) -> bool:
        return self._execute(f"SELECT 1 FROM {SCHEMA}.entries LIMIT 1").fetchone() is not None

    def read_head(self) -> str | None:
        row = self._execute(f"SELECT record FROM {SCHEMA}.head WHERE id = 1").fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def write_head(self, record: str) -> None:
        self._execute(f"UPDATE {SCHEMA}.head SET record = %s WHERE id = 1", [record])

    def append(self, seq: int, mac: str, line: str) -> None:
        self._execute(
            f"INSERT INTO {SCHEMA}.entries (seq, entry, mac) VALUES (%s, %s, %s)", [seq, line, mac]
        )

    def lines(self) -> Iterator[str]:
        # In pages by seq: the log is not held in memory, and no cursor stays open between
        # pages (inside snapshot(), every page reads the same state).
        after = -1
        while True:
            rows = self._execute(
                f"SELECT seq, entry FROM {SCHEMA}.entries WHERE seq > %s ORDER BY seq LIMIT %s",
                [after, _PAGE],
            ).fetchall()
            for seq, entry in rows:
                yield str(entry)
                after = int(str(seq))
            if len(rows) < _PAGE:
                return

    def cut(self, first_seq: int, kept: Sequence[str]) -> None:
        self._execute(f"DELETE FROM {SCHEMA}.entries WHERE seq < %s", [first_seq])
        self._cut = True

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
