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
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipeline.access.views import ViewPlan
from pipeline.lake.catalog import CATALOG, Lake, private_temp_dir, quote_ident

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
        schema: str,
        temp_parent: Path | None,
    ) -> None:
        """Copy ``plan``'s views (built on ``source``'s connection; they read the lake tables
        ``tables``) into tables of the same names in ``memory.<schema>``."""
        self.source = source
        self.plan = plan
        self.schema = schema
        self.temp_dir = private_temp_dir(temp_parent)
        self.snapshot = -1
        self.copies = 0  # whole copies made (the first, and each refresh that copied again)
        try:
            self.con = _locked_database(self.temp_dir)
            self.con.execute(f"CREATE SCHEMA memory.{schema}")
            self.con.execute(f"USE memory.{schema}")
            self._tables = self._table_ids(tables)
            self._copy_all()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        con = getattr(self, "con", None)
        if con is not None:
            con.close()
        # What DuckDB spilled there is the role's rows: personal data for the analyst.
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def refresh(self) -> None:
        """Bring the copy up to the lake's latest snapshot (appends or a new copy)."""
        with self.source.transaction():
            current = self._current_snapshot()
            if current == self.snapshot:
                return
            rows = self.source.con.execute(
                f"SELECT snapshot_id, changes FROM ducklake_snapshots('{CATALOG}') "
                "WHERE snapshot_id > ?",
                [self.snapshot],
            ).fetchall()
            appendable = {v.table for v in self.plan.views}
            changes = classify(rows, self.snapshot, self._tables, appendable)
            if changes.rebuild:
                logger.debug("derived copy of %s: copied again", self.plan.role)
                self._replace_all(current)
                return
            for view in self.plan.views:
                if view.table in changes.appended:
                    inserted = (
                        f"ducklake_table_insertions('{CATALOG}', 'main', "
                        f"'{view.table}', {self.snapshot + 1}, {current})"
                    )
                    self._feed(view.name, view.over(inserted), create=False)
            self.snapshot = current

    def _copy_all(self) -> None:
        with self.source.transaction():
            current = self._current_snapshot()
            for view in self.plan.views:
                self._feed(view.name, view.sql, create=True)
        self.snapshot = current
        self.copies += 1

    def _replace_all(self, current: int) -> None:
        # Inside refresh's transaction on the source: the same snapshot as ``current``.
        for view in self.plan.views:
            self.con.execute(f"DROP TABLE memory.{self.schema}.{quote_ident(view.name)}")
            self._feed(view.name, view.sql, create=True)
        self.snapshot = current
        self.copies += 1

    def _feed(self, name: str, select: str, *, create: bool) -> None:
        """Rows of ``select`` (on the source) into the copy's table ``name``, in batches."""
        reader = self.source.con.execute(select).to_arrow_reader(_BATCH_ROWS)
        target = f"memory.{self.schema}.{quote_ident(name)}"
        self.con.register(_FEED, reader)
        try:
            if create:
                self.con.execute(f"CREATE TABLE {target} AS SELECT * FROM {_FEED}")
            else:
                self.con.execute(f"INSERT INTO {target} SELECT * FROM {_FEED}")
        finally:
            self.con.unregister(_FEED)

    def _current_snapshot(self) -> int:
        row = self.source.con.execute(f"SELECT id FROM {CATALOG}.current_snapshot()").fetchone()
        assert row is not None  # a DuckLake always has one
        return int(row[0])

    def _table_ids(self, read: Collection[str]) -> dict[str, int]:
        """name -> id of the lake tables ``read`` (the views' and the restrictions')."""
        rows = self.source.con.execute(
            f"SELECT table_name, table_id FROM __ducklake_metadata_{CATALOG}.ducklake_table "
            "WHERE end_snapshot IS NULL"
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
        con.execute("SET TimeZone = 'UTC'")
        # A name a statement uses must never find a Python variable of the service's.
        con.execute("SET python_enable_replacements = false")
        con.execute("SET temp_directory = ?", [str(temp_dir)])
        con.execute("SET allowed_directories = []")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con
