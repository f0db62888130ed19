"""Purge housekeeping on a PostgreSQL lake catalog, over a plain libpq connection (psycopg).

The SQLite child's two jobs (:mod:`pipeline.lake.sqlite_child`), PostgreSQL's way, and one
of PostgreSQL's own:

1. **Recompute table-level statistics** from the live files' statistics (DuckLake widens
   them on insert and never narrows them, so a deleted plate or capture time could stay there
   as a table's min or max). The SQL and the ordering are the SQLite child's own.
2. **Keep row values out of the planner statistics.** ``ANALYZE`` samples column values
   into ``pg_statistic`` (most common values, histogram bounds); for the columns that hold
   a row's value (a file's or table's min and max, inlined rows) that would be a plate or a
   document number, kept there whatever retention deletes, and often compressed, which
   hides it from a byte scan. Those columns get a statistics target of 0 (``ANALYZE`` skips
   them; the catalog's queries find those rows by table and file id) and any statistics
   they already have are dropped (``ALTER COLUMN ... TYPE`` to the same type: no rewrite,
   the only way short of a superuser's ``DELETE FROM pg_statistic``).
3. **Leave no dead tuple behind**: ``VACUUM (FULL, ANALYZE)`` of every DuckLake table, then
   ``VACUUM FULL pg_statistic``. A plain ``VACUUM`` only marks dead tuples' space reusable:
   their bytes stay in the page until a later insert happens to overwrite them. ``FULL``
   writes a new file with the live tuples only (indexes and TOAST too) and the old file is
   truncated at commit. The rewrite of ``pg_statistic`` drops the statistics rows that
   ``ANALYZE`` and step 2 replaced. Each ``FULL`` or ``ALTER`` holds an exclusive lock on
   one small table for milliseconds; ingest commits wait for it.

What stays elsewhere (WAL, base backups, archived WAL) is bounded by the server's settings,
not by this module: README "From one machine to many" and ADR 0005 say how.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from pipeline.errors import LakeConflict
from pipeline.lake import sqlite_child
from pipeline.lake.backend import Storage

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# The SQLite child's statement with psycopg's placeholders (:name -> %(name)s).
SET_TABLE_STATS = re.sub(r":(\w+)", r"%(\1)s", sqlite_child.SET_TABLE_STATS)
# DuckLake's tables in the schema the catalog connection uses (its default, as ATTACHed).
DUCKLAKE_TABLES = """
SELECT c.relname FROM pg_class c
WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace
  AND c.relname LIKE 'ducklake\\_%'
ORDER BY c.relname
"""
# Columns of DuckLake's tables that hold a row's value: file and table min/max (and the
# statistics DuckLake 1.5 keeps for variant and geometry columns), and every column of the
# tables rows are inlined into but DuckLake's own bookkeeping.
VALUE_COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
  coalesce(a.attstattarget, -1) <> 0 AS sampled,
  EXISTS (SELECT FROM pg_stats s WHERE s.schemaname = current_schema()
          AND s.tablename = c.relname AND s.attname = a.attname) AS has_stats
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace
  AND a.attnum > 0 AND NOT a.attisdropped
  AND ((c.relname LIKE 'ducklake\\_%' AND a.attname IN ('min_value', 'max_value', 'extra_stats'))
       OR (c.relname ~ '^ducklake_inlined_data_[0-9]'
           AND a.attname NOT IN ('row_id', 'begin_snapshot', 'end_snapshot')))
ORDER BY c.relname, a.attnum
"""
# format_type's name of the types DuckLake gives its columns (built into ALTER ... TYPE).
_TYPE_NAME = re.compile(r"[a-z][a-z0-9_ ]*(\([0-9, ]+\))?(\[\])?")
LOCK_TIMEOUT = "5s"  # per attempt; a long reader holding the table makes us try again


@dataclass(frozen=True)
class CatalogPurge:
    """What the PostgreSQL housekeeping did (counts and sizes, never a value)."""

    stats_recomputed: int
    columns_unsampled: int  # value columns whose planner statistics were turned off or dropped
    columns_left: tuple[str, ...]  # value columns it could not change ("table.column")
    tables_vacuumed: int
    planner_stats_vacuumed: bool  # pg_statistic rewritten (needs the database's owner)
    catalog_bytes: int  # size of the DuckLake tables after the rewrite


def connect(
    storage: Storage, *, application: str, **libpq: Any
) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit libpq connection to the lake's PostgreSQL catalog; ``libpq`` adds
    connection parameters (keepalives...)."""
    password = storage.catalog_password.reveal() if storage.catalog_password else None
    return psycopg.connect(
        storage.catalog.removeprefix("postgres:"),
        password=password,
        application_name=application[:63],
        autocommit=True,
        connect_timeout=10,
        **libpq,
    )


def _until(deadline: float, what: str, once: Callable[[], _T]) -> _T:
    """``once()`` again while it cannot get its lock in time, until ``deadline``."""
    delay = 0.1
    while True:
        try:
            return once()
        except (psycopg.errors.LockNotAvailable, psycopg.errors.SerializationFailure) as exc:
            if time.monotonic() > deadline:
                raise LakeConflict(f"{what}: the catalog stayed busy") from exc
            logger.debug("%s: busy, again in %.1fs", what, delay)
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def recompute_table_stats(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """Set every table-level min/max to the least/greatest of the live files' statistics;
    how many statistics rows were set (see the module doc).

    Holds ``ducklake_table_column_stats`` exclusively while it reads and writes: an ingest
    commit reads the table statistics to widen them, and one that read them before this
    update would otherwise write the old, wider bound back.
    """
    with conn.transaction():
        conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        conn.execute("LOCK TABLE ducklake_table_column_stats IN ACCESS EXCLUSIVE MODE")
        picks = sqlite_child.pick_extremes(conn.execute(sqlite_child.LIVE_FILE_STATS).fetchall())
        with conn.cursor() as cur:
            cur.executemany(SET_TABLE_STATS, picks)
    return len(picks)


@dataclass(frozen=True)
class Unsampled:
    """What :func:`unsample_values` did: columns changed, and those it could not change."""

    changed: int
    left: tuple[str, ...]  # "table.column", each logged as a warning


def unsample_values(conn: psycopg.Connection[tuple[object, ...]], deadline: float) -> Unsampled:
    """Statistics target 0 for every value column, and its planner statistics dropped (step
    2 of the module doc), one ``ALTER TABLE`` per table; idempotent (nothing changed once
    done). A table it may not alter (not its owner, a view on the column) or a column of a
    type it does not expect is left as it is, warned about and reported, never a failed
    purge: the vacuum that follows matters more. ``verify`` fails while any is left."""
    conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    steps: dict[str, list[tuple[str, sql.Composable]]] = {}
    left: list[str] = []
    for table, column, kind, sampled, has_stats in conn.execute(VALUE_COLUMNS).fetchall():
        name, target = f"{table}.{column}", sql.Identifier(str(column))
        mine = steps.setdefault(str(table), [])
        if sampled:
            mine.append((name, sql.SQL("ALTER COLUMN {} SET STATISTICS 0").format(target)))
        if has_stats and not _TYPE_NAME.fullmatch(str(kind)):
            logger.warning("purge: %s has an unexpected type; its planner statistics stay", name)
            left.append(name)
        elif has_stats:
            # The same type: PostgreSQL drops the column's statistics and rewrites nothing.
            alter = sql.SQL("ALTER COLUMN {} TYPE {}").format(target, sql.SQL(str(kind)))
            mine.append((name, alter))
    changed = 0
    for table, mine in steps.items():
        if not mine:
            continue
        statement = sql.SQL("ALTER TABLE {} ").format(sql.Identifier(table)) + sql.SQL(", ").join(
            step for _, step in mine
        )
        columns = sorted({name for name, _ in mine})
        try:
            _until(deadline, "planner statistics", partial(conn.execute, statement))
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.FeatureNotSupported) as exc:
            logger.warning(
                "purge: could not turn off the planner statistics of %s (%s); they stay",
                ", ".join(columns),
                type(exc).__name__,
            )
            left.extend(columns)
            continue
        changed += len(columns)
    return Unsampled(changed, tuple(sorted(set(left))))


def owns_database(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """Whether this role may vacuum the database's system catalogs (owner or superuser)."""
    row = conn.execute(
        "SELECT pg_has_role(current_user, d.datdba, 'MEMBER') OR r.rolsuper "
        "FROM pg_database d, pg_roles r "
        "WHERE d.datname = current_database() AND r.rolname = current_user"
    ).fetchone()
    return bool(row and row[0])


def ducklake_tables(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    return [str(name) for (name,) in conn.execute(DUCKLAKE_TABLES).fetchall()]


def vacuum_catalog(
    conn: psycopg.Connection[tuple[object, ...]], deadline: float
) -> tuple[int, bool]:
    """``VACUUM (FULL, ANALYZE)`` every DuckLake table, then ``VACUUM FULL pg_statistic`` if
    this role owns the database; (tables rewritten, whether pg_statistic was)."""
    conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    tables = ducklake_tables(conn)
    for name in tables:
        statement = sql.SQL("VACUUM (FULL, ANALYZE) {}").format(sql.Identifier(name))
        _until(deadline, "vacuum catalog", partial(conn.execute, statement))
    planner = owns_database(conn)
    if planner:
        _until(
            deadline, "vacuum planner statistics", lambda: conn.execute("VACUUM FULL pg_statistic")
        )
    else:
        # Never silently: the values sampled before this purge stay in pg_statistic's dead
        # tuples until autovacuum and later writes reuse the space.
        logger.warning(
            "purge: the catalog role does not own its database, so pg_statistic was not "
            "rewritten; make it the owner (ALTER DATABASE ... OWNER TO ...)"
        )
    conn.execute("RESET lock_timeout")
    return len(tables), planner


def catalog_bytes(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    (size,) = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace "
        "AND c.relname LIKE 'ducklake\\_%'"
    ).fetchone() or (0,)
    return int(str(size))


def purge_catalog(storage: Storage, *, timeout_s: float = 300.0) -> CatalogPurge:
    """Steps 4-5 of :func:`pipeline.maintain.purge.purge` on a PostgreSQL catalog."""
    deadline = time.monotonic() + timeout_s
    with connect(storage, application="anpr-maintain purge") as conn:
        changed = _until(deadline, "recompute statistics", lambda: recompute_table_stats(conn))
        unsampled = unsample_values(conn, deadline)
        tables, planner = vacuum_catalog(conn, deadline)
        size = catalog_bytes(conn)
    return CatalogPurge(changed, unsampled.changed, unsampled.left, tables, planner, size)
