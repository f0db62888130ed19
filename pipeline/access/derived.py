"""A role's views copied out of the lake into a DuckDB database that can reach nothing else.

Roles without clear plates (analyst, statistics) run their statements here, not on the lake's
connection. The database is in memory, attaches no catalog, loads no extension, reads no file
and calls no Python object: whatever a statement does, even one no check refused, it can only
read the role's own rows (docs/adr/0008-query-confinement.md, layer 3).

The copy is made from the role's views on the lake's read-only connection (the source) in one
transaction, so it is one snapshot of the lake, and it is brought up to date before every
statement (:meth:`DerivedCopy.refresh`): if only rows were inserted into the views' tables
since, the view's SELECT over DuckLake's ``ducklake_table_insertions`` appends them; any other
change to a table the views read (a delete, an erasure, a new restriction, compaction, a gap
left by expired snapshots, a change we do not know) copies everything again.

The service keeps one copy per role (:class:`SharedCopies`) for as long as it runs; each
session reads it through a cursor of its own. A session opened later (a later clock) moves the
copy's clock forward (:meth:`DerivedCopy.advance`): rows that left the window are deleted from
the copy, and if a restriction ended in between (its rows are shown again) it is copied again.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.access.views import RESTRICTIONS_TABLE, ViewPlan
from pipeline.lake.catalog import CATALOG, METADATA_DB, Lake, private_temp_dir, quote_ident

logger = logging.getLogger(__name__)

# Snapshot changes that only add rows: the view's SELECT over the inserted rows adds them.
_APPENDS = frozenset({"tables_inserted_into", "inlined_insert"})
# Rows the copy is fed in: bounded memory whatever the view's size.
_BATCH_ROWS = 100_000
_FEED = "anpr_derived_rows"


@dataclass(frozen=True)
class Changes:
    """What the lake's snapshots after the copy's did to the tables the views read."""

    rebuild: bool
    appended: frozenset[str] = field(default_factory=frozenset)  # tables rows were added to


def classify(
    snapshots: Iterable[tuple[int, Mapping[str, Collection[str]]]],
    after: int,
    tables: Mapping[str, int],
    appendable: Collection[str],
) -> Changes:
    """What to do about the snapshots that followed snapshot ``after`` (pure).

    ``snapshots``: (id, changes) as ``ducklake_snapshots`` gives them; ``tables``: name -> id
    of the tables the views read; ``appendable``: those whose new rows may simply be appended
    (a view's own table; not the restrictions table, whose new rows hide old ones). A change
    that names none of ``tables`` (by id or name) is ignored, whatever its kind; a missing
    snapshot id (expired) means we cannot know and copies everything again.
    """
    names = {str(table_id): name for name, table_id in tables.items()}
    names.update({f"main.{name}": name for name in tables})
    appended: set[str] = set()
    expected = after + 1
    for snapshot_id, changes in sorted(snapshots, key=lambda row: row[0]):
        if snapshot_id <= after:
            continue
        if snapshot_id != expected:
            return Changes(rebuild=True)
        expected += 1
        for kind, values in changes.items():
            touched = {names[v] for v in values if v in names}
            if not touched:
                continue
            if kind not in _APPENDS or not touched <= set(appendable):
                return Changes(rebuild=True)
            appended |= touched
    return Changes(rebuild=False, appended=frozenset(appended))


class DerivedCopy:
    """The role's views as tables of a locked in-memory database (see the module docstring)."""

    def __init__(
        self,
        source: Lake,
        plan: ViewPlan,
        tables: Collection[str],
        *,
        now: datetime,
        schema: str,
        temp_parent: Path | None,
    ) -> None:
        """Copy ``plan``'s views (built on ``source``'s connection for the clock ``now``; they
        read the lake tables ``tables``) into tables of the same names in ``memory.<schema>``."""
        self.schema = schema
        self.plan = plan  # the views of the latest clock (``now``)
        self.now = now
        self.temp_dir = private_temp_dir(temp_parent)
        self.snapshot = -1
        self.copies = 0  # whole copies made (the first, and each refresh that copied again)
        self._lock = threading.Lock()  # one refresh or advance at a time
        try:
            self.con = _locked_database(self.temp_dir)
            self.con.execute(f"CREATE SCHEMA memory.{schema}")
            self.con.execute(f"USE memory.{schema}")
            self._read = frozenset(tables)
            self._tables = _table_ids(source, self._read)
            with source.transaction():
                self._copy_all(source)
        except BaseException:
            self.close()
            raise

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of a session's own to the copy (same database, same lock)."""
        cursor = self.con.cursor()
        cursor.execute(f"USE memory.{self.schema}")
        return cursor

    def close(self) -> None:
        con = getattr(self, "con", None)
        if con is not None:
            con.close()
        # What DuckDB spilled there is the role's rows: personal data for the analyst.
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def advance(self, source: Lake, plan: ViewPlan, now: datetime) -> None:
        """Move the copy's clock to ``now`` (``plan``'s, built on ``source`` for ``now``;
        the same views as the copy's): rows collected before a view's new cutoff are deleted;
        a restriction that ended in between shows rows again, and a view that reads other
        columns (a column added to the lake) needs them, so those copy it again. An earlier
        ``now`` does nothing (the copy's clock only moves forward)."""
        if plan.names != self.plan.names:
            raise ValueError("a copy's views cannot change: make a new copy")
        with self._lock:
            if now <= self.now:
                return
            reshaped = _shape(plan) != _shape(self.plan)
            self.plan = plan
            if reshaped or self._restriction_ended(source, now):
                with source.transaction():
                    self._copy_all(source)
            else:
                self._in_transaction(lambda: self._trim(plan))
            self.now = now

    def refresh(self, source: Lake) -> None:
        """Bring the copy up to the lake's latest snapshot (appends or a new copy), reading
        through ``source`` (a session's lake connection, with the copy's tables allowed).
        Each change to the copy is one transaction on it: a statement of another session
        sees it whole or not at all, and a copy that fails leaves the one before."""
        with self._lock, source.transaction():
            current = _current_snapshot(source)
            if current == self.snapshot:
                return
            tables = _table_ids(source, self._read)
            if current < self.snapshot or tables != self._tables:
                # A catalog restored from a backup, a table dropped and made again: what
                # changed cannot be told from the snapshots.
                self._tables = tables
                self._copy_all(source)
                return
            rows = source.con.execute(
                f"SELECT snapshot_id, changes FROM ducklake_snapshots('{CATALOG}') "
                "WHERE snapshot_id > ?",
                [self.snapshot],
            ).fetchall()
            plan = self.plan
            changes = classify(rows, self.snapshot, self._tables, {v.table for v in plan.views})
            if changes.rebuild:
                logger.debug("derived copy of %s: copied again", plan.role)
                self._copy_all(source)
                return

            def append() -> None:
                for view in plan.views:
                    if view.table in changes.appended:
                        inserted = (
                            f"ducklake_table_insertions('{CATALOG}', 'main', "
                            f"'{view.table}', {self.snapshot + 1}, {current})"
                        )
                        self._feed(source, view.name, view.over(inserted), create=False)

            self._in_transaction(append)
            self.snapshot = current

    def _restriction_ended(self, source: Lake, now: datetime) -> bool:
        if RESTRICTIONS_TABLE not in self._tables:
            return False
        row = source.con.execute(
            f"SELECT count(*) FROM {CATALOG}.main.{RESTRICTIONS_TABLE} "
            "WHERE restricted_until > ? AND restricted_until <= ?",
            [self.now, now],
        ).fetchone()
        return bool(row and row[0])

    def _trim(self, plan: ViewPlan) -> None:
        for view in plan.views:
            if view.window is not None:
                column, cutoff = view.window
                self.con.execute(
                    f"DELETE FROM memory.{self.schema}.{quote_ident(view.name)} "
                    f"WHERE {quote_ident(column)} < ?",
                    [cutoff],
                )

    def _copy_all(self, source: Lake) -> None:
        """Every view copied (again) in one transaction on the copy, inside one on
        ``source`` (the caller's: one snapshot of the lake)."""
        current = _current_snapshot(source)

        def copy() -> None:
            for view in self.plan.views:
                table = f"memory.{self.schema}.{quote_ident(view.name)}"
                self.con.execute(f"DROP TABLE IF EXISTS {table}")
                self._feed(source, view.name, view.sql, create=True)

        self._in_transaction(copy)
        self.snapshot = current
        self.copies += 1

    def _in_transaction(self, work: Callable[[], None]) -> None:
        self.con.execute("BEGIN TRANSACTION")
        try:
            work()
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def _feed(self, source: Lake, name: str, select: str, *, create: bool) -> None:
        """Rows of ``select`` (on the source) into the copy's table ``name``, in batches."""
        reader = source.con.execute(select).to_arrow_reader(_BATCH_ROWS)
        target = f"memory.{self.schema}.{quote_ident(name)}"
        self.con.register(_FEED, reader)
        try:
            if create:
                self.con.execute(f"CREATE TABLE {target} AS SELECT * FROM {_FEED}")
            else:
                self.con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM {_FEED}")
        finally:
            self.con.unregister(_FEED)

    def run(self, cursor: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
        """Run one checked SELECT on a session's ``cursor``: one statement only, in a
        read-only transaction that is rolled back, so nothing it does stays for another
        session of the role; DuckDB's logging, which a statement can switch on and which
        would show other sessions' statements, is switched off and emptied after it."""
        if len(cursor.extract_statements(sql)) != 1:
            raise duckdb.InvalidInputException("one statement at a time")
        cursor.execute("BEGIN TRANSACTION READ ONLY")
        try:
            return cursor.execute(sql).to_arrow_table()
        finally:
            cursor.execute("ROLLBACK")
            self._logging_off()

    def _logging_off(self) -> None:
        row = self.con.execute("SELECT current_setting('enable_logging')").fetchone()
        if row and row[0]:
            self.con.execute("CALL disable_logging()")
            self.con.execute("CALL truncate_duckdb_logs()")
            logger.error(
                "a statement switched on DuckDB's logging in the %s copy past both checks: "
                "switched off and emptied",
                self.plan.role,
            )


def _shape(plan: ViewPlan) -> tuple[tuple[str, str, str], ...]:
    """What a copy's tables hold, whatever the clock: each view's name, table and columns."""
    return tuple((v.name, v.table, v.columns) for v in plan.views)


class SharedCopies:
    """One :class:`DerivedCopy` per role for the service's lifetime (made by the first
    session of the role, moved forward by each later one); closed with the service. Each
    copy's tables are in ``memory.<schema>``, its spills under ``temp_parent``."""

    def __init__(self, *, schema: str, temp_parent: Path | None) -> None:
        self._schema = schema
        self._temp_parent = temp_parent
        self._copies: dict[str, DerivedCopy] = {}
        self._retired: list[DerivedCopy] = []
        self._lock = threading.Lock()  # guards the fields
        self._making: dict[str, threading.Lock] = {}  # one copy made at a time per role
        self._closed = False

    def get(
        self, source: Lake, plan: ViewPlan, tables: Collection[str], *, now: datetime
    ) -> DerivedCopy:
        """The role's copy, at ``now`` or later (made from ``source`` if there is none).
        Making one takes seconds per million rows: only sessions of that role wait."""
        with self._lock:
            making = self._making.setdefault(plan.role, threading.Lock())
        with making:
            with self._lock:
                self._check_open()
                copy = self._copies.get(plan.role)
                if copy is not None and copy.plan.names != plan.names:
                    # A table appeared (statistics computed for the first time): a new copy.
                    # Sessions may still read the old one: it is closed with the others.
                    self._retired.append(self._copies.pop(plan.role))
                    copy = None
            if copy is None:
                copy = DerivedCopy(
                    source,
                    plan,
                    tables,
                    now=now,
                    schema=self._schema,
                    temp_parent=self._temp_parent,
                )
                with self._lock:
                    if self._closed:
                        copy.close()
                    self._check_open()
                    self._copies[plan.role] = copy
                return copy
        copy.advance(source, plan, now)
        return copy

    def copy_of(self, role: str) -> DerivedCopy | None:
        """The role's copy, if one was made."""
        with self._lock:
            return self._copies.get(role)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for copy in [*self._copies.values(), *self._retired]:
                copy.close()
            self._copies.clear()
            self._retired.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the service is stopping: its copies are closed")


def _current_snapshot(source: Lake) -> int:
    row = source.con.execute(f"SELECT id FROM {CATALOG}.current_snapshot()").fetchone()
    assert row is not None  # a DuckLake always has one
    return int(row[0])


def _table_ids(source: Lake, read: Collection[str]) -> dict[str, int]:
    """name -> id of the lake tables ``read`` (the views' and the restrictions')."""
    rows = source.con.execute(
        f"SELECT table_name, table_id FROM {METADATA_DB}.ducklake_table WHERE end_snapshot IS NULL"
    ).fetchall()
    return {str(name): int(table_id) for name, table_id in rows if name in read}


def _locked_database(temp_dir: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that loads no extension, reads no file and scans no Python object
    by name, spilling to ``temp_dir``; locked so no statement can undo it."""
    con = duckdb.connect(
        ":memory:",
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
    )
    try:
        # GLOBAL: every session's cursor inherits these (a plain SET is the connection's only).
        con.execute("SET GLOBAL TimeZone = 'UTC'")
        # A name a statement uses must never find a Python variable of the service's.
        con.execute("SET GLOBAL python_enable_replacements = false")
        con.execute("SET temp_directory = ?", [str(temp_dir)])
        con.execute("SET allowed_directories = []")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con
