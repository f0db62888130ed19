"""The lake's tables on DuckLake: connect, write a batch and its Kafka offsets in one transaction.

A lake at ``path`` is a DuckLake catalog in ``path/catalog.sqlite`` and Parquet data files under
``path/data/``. Every connection is an in-memory DuckDB that loads the extensions by path
(:mod:`pipeline.lake.extensions`), runs with ``TimeZone = 'UTC'`` and attaches the lake as
``lake``. Measurements and decisions: ``docs/adr/0001-ducklake-sqlite-catalog.md``.

SQL text here is built only from constants and from identifiers of :mod:`pipeline.lake.tables`
(checked against :data:`_IDENT`); every value travels as a ``?`` parameter.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import LakeSettings
from pipeline.errors import ConfigError, LakeConflict, Transient
from pipeline.lake.backend import METADATA_SCHEMA, Storage
from pipeline.lake.extensions import extension_paths
from pipeline.lake.sqlite_child import EXIT_BUSY, CatalogTaskFailed, run_task
from pipeline.lake.tables import (
    DATA_TABLES,
    FENCE_TABLE,
    INTERNAL_TABLES,
    LAKE_TABLES,
    OFFSETS_TABLE,
    TableSpec,
)
from pipeline.schemas import UTC_TS

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

CATALOG = "lake"  # the name the lake is attached under in every connection
METADATA_DB = f"__ducklake_metadata_{CATALOG}"  # the catalog database, as DuckLake attaches it
# Lake-wide DuckLake options, set when the lake is created.
_LAKE_OPTIONS: tuple[tuple[str, str | int | bool], ...] = (
    ("parquet_compression", "zstd"),
    ("parquet_compression_level", 3),
    # The default row group; ingest files (one per batch and day) are smaller than one group
    # anyway, and compaction rewrites them into files of target_file_size.
    ("parquet_row_group_size", 122_880),
    ("target_file_size", "128MB"),
    ("hive_file_pattern", True),  # data/main/<table>/year=/month=/day=/: retention sees days
    # No inlining of rows into the catalog: personal data then lives only in day-partitioned
    # Parquet files, which retention rewrites and deletes per day.
    ("data_inlining_row_limit", 0),
)
# The internal tables change a few rows per commit; inlined, they cost no files at all.
# Table-scoped options can only be set once the table is committed.
_INTERNAL_INLINING_LIMIT = 1000
# Every commit leaves the offsets rows' old versions inlined in the catalog, and each of the
# commit's statements on the table reads them all: a writer moves them out every this many
# of its commits (write_batch, step 7; ADR 0006). A flush of ~100 commits' versions costs
# about one commit.
TIDY_EVERY = 100
_FLUSH_SQL = f"SELECT * FROM ducklake_flush_inlined_data('{CATALOG}', table_name => ?)"
# A flush writes a new file and the next UPDATE deletes every row of the one before: without
# this rewrite each flush would leave one more file that every read of the table opens.
_REWRITE_SQL = f"SELECT * FROM ducklake_rewrite_data_files('{CATALOG}', ?, delete_threshold => 0)"

# Indexes DuckLake 1.5.5 leaves out of a PostgreSQL catalog: (name, table, columns). A commit's
# catalog queries select a table's data files, delete files, column statistics and partition
# values by table_id (or the files' ids); PostgreSQL answers them from these instead of reading
# every data file's rows, so a commit no longer grows dearer with every file (ADR 0006,
# "Catalog indexes"). A SQLite catalog gets none: DuckDB's SQLite scanner reads whole tables
# and filters them itself, so an index there is never used.
CATALOG_INDEXES: tuple[tuple[str, str, str], ...] = (
    ("anpr_data_file_table", "ducklake_data_file", "table_id, end_snapshot"),
    ("anpr_delete_file_table", "ducklake_delete_file", "table_id, end_snapshot"),
    ("anpr_column_stats_file", "ducklake_file_column_stats", "data_file_id"),
    ("anpr_column_stats_table", "ducklake_file_column_stats", "table_id, column_id"),
    ("anpr_partition_value_file", "ducklake_file_partition_value", "data_file_id"),
    ("anpr_partition_value_table", "ducklake_file_partition_value", "table_id"),
)

_DISABLED_FILESYSTEMS = "HTTPFileSystem,S3FileSystem,HuggingFaceFileSystem,PipeFileSystem"
_DISABLED_WITH_S3 = "HuggingFaceFileSystem,PipeFileSystem"
_IDENT = re.compile(r"[a-z][a-z0-9_]{0,62}")
# Paths end up inside SQL string literals (ATTACH and LOAD take no parameters).
_SAFE_PATH = re.compile(r"[\w./@+=,: -]+")

_ARROW_TO_DUCKDB: tuple[tuple[pa.DataType, str], ...] = (
    (pa.string(), "VARCHAR"),
    (pa.large_string(), "VARCHAR"),
    (pa.bool_(), "BOOLEAN"),
    (pa.int8(), "TINYINT"),
    (pa.int16(), "SMALLINT"),
    (pa.int32(), "INTEGER"),
    (pa.int64(), "BIGINT"),
    (pa.float32(), "REAL"),
    (pa.float64(), "DOUBLE"),
    (pa.date32(), "DATE"),
    (UTC_TS, "TIMESTAMPTZ"),
)


class OffsetFenced(Transient):
    """The stored offset of a partition is not what this writer expected: another worker owns it.

    Nothing was written. The caller drops its batch and seeks to :meth:`Lake.stored_offsets`.
    """

    def __init__(
        self, topic: str, partition: int, expected: int | None, stored: int | None
    ) -> None:
        super().__init__(
            f"offset fenced: {topic}[{partition}] expected stored offset {expected}, found {stored}"
        )
        self.topic = topic
        self.partition = partition
        self.expected = expected
        self.stored = stored


@dataclass
class UniqueIds:
    """Ask :meth:`Lake.write_batch` to drop rows whose ``column`` value another writer stored
    after snapshot ``since``; it sets ``others``, ``dropped`` and ``snapshot``.

    Each writer tags its commits with ``writer``, so it reads back only the rows other
    writers inserted (their own are already in its memory). If snapshots after ``since``
    were expired meanwhile, their changes are gone: then ``others`` is every row of the
    ``window`` (as :meth:`Lake.recent_rows` reads it), whoever stored it.
    """

    column: str
    collected: str  # read along, so the caller can place the ids in its window
    writer: str
    since: int | None  # None: look at nothing (the caller's memory was warmed after it)
    window: timedelta  # the caller's id window, read back whole after a gap
    others: pa.Table | None = None
    dropped: int = 0
    snapshot: int | None = None  # the snapshot the check saw (the commit's base)


@dataclass(frozen=True)
class RetryPolicy:
    """Jittered exponential backoff for catalog write conflicts."""

    attempts: int = 40
    base_delay_s: float = 0.005
    max_delay_s: float = 0.5
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based): full jitter."""
        return self.rng.uniform(0.0, min(self.max_delay_s, self.base_delay_s * 2.0**attempt))


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier, if it is a plain lower-case name."""
    if not _IDENT.fullmatch(name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return f'"{name}"'


def duckdb_type(arrow_type: pa.DataType) -> str:
    """The DuckDB column type for an Arrow type (the one mapping used for every lake table)."""
    for known, sql in _ARROW_TO_DUCKDB:
        if arrow_type.equals(known):
            return sql
    if pa.types.is_list(arrow_type):
        return f"{duckdb_type(arrow_type.value_type)}[]"
    if pa.types.is_struct(arrow_type):
        fields = ", ".join(
            f"{quote_ident(f.name)} {duckdb_type(f.type)}" for f in arrow_type.fields
        )
        return f"STRUCT({fields})"
    raise TypeError(f"no lake column type for Arrow type {arrow_type}")


def create_table_sql(name: str, schema: pa.Schema) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for ``schema`` in the lake; NOT NULL where not nullable."""
    columns = ", ".join(
        f"{quote_ident(f.name)} {duckdb_type(f.type)}{'' if f.nullable else ' NOT NULL'}"
        for f in schema
    )
    return f"CREATE TABLE IF NOT EXISTS {CATALOG}.{quote_ident(name)} ({columns})"


def partition_sql(spec: TableSpec) -> str | None:
    """Partition by the calendar day of ``day_column`` in the session time zone (always UTC)."""
    if spec.day_column is None:
        return None
    col = quote_ident(spec.day_column)
    return (
        f"ALTER TABLE {CATALOG}.{quote_ident(spec.name)} "
        f"SET PARTITIONED BY (year({col}), month({col}), day({col}))"
    )


def is_write_conflict(exc: BaseException) -> bool:
    """Whether a DuckDB error means another writer committed first, so a retry may succeed.

    With a SQLite catalog the loser sees SQLite's "database is locked" (in WAL mode: a read
    snapshot that went stale before the commit); with any catalog DuckLake itself may report a
    logical "Transaction conflict" after its own commit retries. On PostgreSQL, processes that
    attach a new lake at once race to create DuckLake's metadata tables, and the losers get
    PostgreSQL's "duplicate key value violates unique constraint" (on pg_type) or "already
    exists": attached again, they find the tables.
    """
    if not isinstance(exc, duckdb.Error):
        return False
    text = str(exc).lower()
    return any(marker in text for marker in _CONFLICTS)


_CONFLICTS = (
    "database is locked",
    "transaction conflict",
    "duplicate key value violates unique constraint",
    "already exists",
)


# How long a writer waits for a catalog database that went away (a PostgreSQL restart or
# failover takes seconds; longer than this, a person should look).
CATALOG_OUTAGE_S = 120.0
_UNREACHABLE = (
    "server closed the connection",
    "terminating connection",
    "connection refused",
    "could not connect",
    "unable to connect to postgres",
    "no connection to the server",
    "connection to server",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    # The PostgreSQL connection broke inside a transaction: even its rollback cannot be sent.
    'failed to execute query "rollback"',
)


def is_catalog_unreachable(exc: BaseException) -> bool:
    """Whether a DuckDB error means the catalog database server is (briefly) unreachable.

    Never a fatal error, whatever its text (often a failed ROLLBACK): DuckDB has invalidated
    the whole database instance then, every later statement fails, and waiting cannot help.
    The process must end; its supervisor restarts it (deploy/systemd) and it resumes at the
    offsets stored in the lake.
    """
    if not isinstance(exc, duckdb.Error) or isinstance(exc, duckdb.FatalException):
        return False
    text = str(exc).lower()
    return any(marker in text for marker in _UNREACHABLE)


def _checked_path(path: Path, key: str) -> str:
    """``path`` as text that may stand inside a SQL string literal."""
    text = str(path)
    if not _SAFE_PATH.fullmatch(text):
        raise ConfigError(key, "path may only hold letters, digits, space and ./@+=,:_-")
    return text


def _check_offsets(next_offsets: Mapping[int, int], expected: Mapping[int, int | None]) -> None:
    if not next_offsets:
        raise ValueError("write_batch needs the offsets the rows came from")
    if set(next_offsets) != set(expected):
        raise ValueError("next_offsets and expected must name the same partitions")
    for part, nxt in next_offsets.items():
        exp = expected[part]
        if part < 0 or nxt < 0 or (exp is not None and not 0 <= exp <= nxt):
            raise ValueError(f"bad offset advance for partition {part}: {exp} -> {nxt}")


def _update_offsets_sql(
    consumer_group: str, topic: str, parts: Sequence[int], next_offsets: Mapping[int, int]
) -> tuple[str, list[object]]:
    """One ``UPDATE`` of every offsets row: ``parts`` of the group's topic move to
    ``next_offsets``, every other row keeps its values (write_batch, step 4)."""
    match = 'consumer_group = ? AND topic = ? AND "partition" = ?'
    cases = " ".join(f"WHEN {match} THEN ?::BIGINT" for _ in parts)
    params: list[object] = []
    for part in parts:
        params += [consumer_group, topic, part, next_offsets[part]]
    ours = " OR ".join(f"({match})" for _ in parts)
    sql = (
        f"UPDATE {CATALOG}.{OFFSETS_TABLE} SET next_offset = CASE {cases} ELSE next_offset END, "
        f"updated_at = CASE WHEN {ours} THEN now() ELSE updated_at END"
    )
    for part in parts:
        params += [consumer_group, topic, part]
    return sql, params


def _check_rows(
    spec: TableSpec,
    rows: pa.Table,
    next_offsets: Mapping[int, int],
    expected: Mapping[int, int | None],
) -> None:
    got = [(f.name, f.type) for f in rows.schema]
    want = [(f.name, f.type) for f in spec.schema]
    if got != want:
        raise TypeError(f"rows for {spec.name} have columns {got}, expected {want}")
    if rows.num_rows == 0 or "source_offset" not in rows.schema.names:
        return
    # Every row must come from the offset ranges committed with it, or exactly-once breaks.
    ranges = rows.group_by("source_partition").aggregate(
        [("source_offset", "min"), ("source_offset", "max")]
    )
    for part, low, high in zip(
        ranges["source_partition"].to_pylist(),
        ranges["source_offset_min"].to_pylist(),
        ranges["source_offset_max"].to_pylist(),
        strict=True,
    ):
        start = expected.get(part)
        if part not in next_offsets or high >= next_offsets[part] or (start or 0) > low:
            raise ValueError(f"rows of partition {part} lie outside the offsets committed")


class Lake:
    """A DuckLake lake at ``path`` (catalog ``path/catalog.sqlite``, data files ``path/data/``).

    >>> with Lake.open(Path("lake")) as lake:  # doctest: +SKIP
    ...     lake.stored_offsets("anpr-ingest", "anpr.plate-reads")
    {0: 1200, 1: 1187}
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        path: Path,
        *,
        read_only: bool,
        retry: RetryPolicy,
        sleep: Callable[[float], None],
    ) -> None:
        self.con = con
        self.path = path
        self.read_only = read_only
        self._retry = retry
        self._sleep = sleep
        self._attach = ""  # the ATTACH statement, for catalog_released()
        self.conflicts = 0  # write conflicts retried by retrying(), over the lake's life
        self.storage = Storage.embedded(path)
        self.temp_dir: Path | None = None  # a locked session's own DuckDB temporary folder
        self.tidy_every = TIDY_EVERY  # write_batch, step 7 (tests set 1)
        self._commits = 0  # commits by write_batch, for step 7

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        read_only: bool = False,
        create: bool = True,
        extension_dir: Path | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        storage: Storage | None = None,
        confine: Callable[[Lake], Collection[str]] | None = None,
        temp_parent: Path | None = None,
    ) -> Lake:
        """Connect to the lake, creating it and its tables if ``create`` and it is missing.

        ``storage`` says where the catalog and the data files are (default: embedded under
        ``path``; :meth:`from_settings` reads it from ``[lake]``). Safe when several processes
        open a new lake at once: creation retries on conflict. ``read_only`` attaches the
        catalog read-only and locks the session down (no file access outside the data path,
        no configuration changes), for analysts. ``confine`` (read-only only) runs on the
        attached lake before the lock and names the tables the session will read: file access
        is then limited to those tables' folders. A read-only lake spills to a private folder
        of its own (mode 0700, removed by :meth:`close`) under ``temp_parent`` (default: the
        system's temporary folder), never to one another session could have written.
        """
        path = path.absolute()
        storage = storage or Storage.embedded(path)
        if not storage.exists() and (read_only or not create):
            raise ConfigError("lake.path", f"no lake at {path}")
        retry = retry or RetryPolicy()
        sqlite, data = storage.sqlite_file, storage.local_data
        if not read_only:
            if data is not None:
                data.mkdir(parents=True, exist_ok=True)
            if sqlite is not None:
                _use_wal(sqlite)
        paths = extension_paths(extension_dir)
        con = duckdb.connect(
            ":memory:",
            # Never reach for the network: everything we need is loaded by path below.
            config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
        )
        lake = cls(con, path, read_only=read_only, retry=retry, sleep=sleep)
        lake.storage = storage
        try:
            for key in storage.extensions:
                con.execute(f"LOAD '{_checked_path(paths[key], 'lake.extension_dir')}'")
            # DuckLake computes partition values (year/month/day of a TIMESTAMPTZ) in the
            # session time zone; UTC makes a partition the UTC collection day.
            con.execute("SET TimeZone = 'UTC'")
            for statement in storage.secrets_sql():
                con.execute(statement)
            attach = storage.attach_sql(CATALOG, read_only=read_only)
            lake._attach = attach
            if read_only:
                con.execute(attach)
                if storage.query_login:
                    _check_query_login(con)
                lake.temp_dir = private_temp_dir(temp_parent)
                lake._lock_down(storage, None if confine is None else confine(lake))
            else:
                lake.retrying("create lake", lambda: lake._attach_and_create(attach))
            # Analysts and the pipeline name tables plainly: plate_reads, not lake.plate_reads.
            con.execute(f"USE {CATALOG}")
        except BaseException:
            lake.close()
            raise
        logger.debug("opened lake %s (read_only=%s)", path, read_only)
        return lake

    @classmethod
    def from_settings(cls, lake: LakeSettings, **options: Any) -> Lake:
        """:meth:`open` the lake ``[lake]`` describes (catalog, data path, credentials)."""
        return cls.open(lake.path, storage=Storage.from_settings(lake), **options)

    def close(self) -> None:
        self.con.close()
        if self.temp_dir is not None:
            # What DuckDB spilled there is this session's intermediate results: personal data.
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def catalog_released(self) -> Iterator[None]:
        """Detach the catalog for the block (another process may rewrite its SQLite file,
        e.g. VACUUM), then attach it again. Not for read-only lakes (locked down)."""
        if self.read_only:
            raise ValueError("catalog_released needs a lake opened for writing")
        self.con.execute("USE memory")
        self.con.execute(f"DETACH DATABASE {CATALOG}")
        try:
            yield
        finally:
            self.con.execute(self._attach)
            self.con.execute(f"USE {CATALOG}")

    # -- writing ----------------------------------------------------------------------------

    def write_batch(
        self,
        table: str,
        rows: pa.Table,
        *,
        consumer_group: str,
        topic: str,
        next_offsets: Mapping[int, int],
        expected: Mapping[int, int | None],
        unique: UniqueIds | None = None,
    ) -> int:
        """Append ``rows`` to ``table`` and advance the stored Kafka offsets, atomically.

        ``next_offsets`` maps each partition in the batch to its last offset plus one.
        ``expected`` maps the same partitions to the stored offset this writer started from:
        read from :meth:`stored_offsets` at assignment (``None``: nothing stored) or written by
        its own previous commit. That is not the batch's first offset, which may be larger
        (transaction markers and compaction leave gaps in a partition's offsets).
        Returns how many write conflicts were retried.

        Commit order, all inside ONE DuckLake transaction:

        1. Read every row of ``ingest_offsets`` (a few per partition of every group) and keep
           the group's. No ``WHERE``: any filter on the table makes DuckLake run a file
           pruning query over the statistics of every data file of the lake, which was ~80 %
           of a commit's cost and grew with the lake (ADR 0006).
        2. Compare-and-set: each partition's stored offset must equal ``expected``. If not,
           another worker committed it since this writer sought (a rebalance): raise
           :class:`OffsetFenced` and write nothing.
        3. With ``unique``: drop the rows whose id another writer (another partition's
           worker) inserted after ``unique.since`` (see :class:`UniqueIds`). Every ingest
           commit conflicts with every other (steps 4-5), so no such insert can land between
           this check and the commit. Then insert the rows (Parquet files under their UTC day
           partitions). An empty table is fine: a batch whose messages were all rejected
           still advances its offsets.
        4. Set the partitions that have a row with ONE ``UPDATE`` of every row (no ``WHERE``;
           a ``CASE`` per partition). It deletes every inlined row of ``ingest_offsets``, and
           DuckLake makes a deletion of a table's inlined rows conflict with any concurrent
           insert into or deletion from that table, so two commits that both got here
           conflict; the loser starts again at step 1 on a fresh snapshot and meets step 2.
        5. Partitions with no row yet: insert theirs and rewrite the single ``ingest_fence``
           row. Two commits inserting rows do not conflict with each other, but both
           rewriting the fence do (and an insert conflicts with step 4's deletion).
        6. Commit. On a write conflict roll back and repeat 1-6 after a jittered backoff;
           after the last attempt raise :class:`~pipeline.errors.LakeConflict`.
        7. After every :attr:`tidy_every`-th commit of this lake, :meth:`tidy_internal`:
           separate transactions, after the batch is committed, that change no row.

        Only after this returns may the caller tell Kafka (for monitoring only). Exactly-once
        follows: a batch's rows are visible if and only if its offsets are stored (one
        transaction); a worker that gets a partition seeks to the stored offset, so it neither
        skips nor re-reads a committed message; and a worker still holding a batch from before
        a rebalance is refused at step 2.
        """
        spec = DATA_TABLES.get(table)
        if spec is None:
            raise ValueError(f"unknown lake table {table!r}")
        _check_offsets(next_offsets, expected)
        _check_rows(spec, rows, next_offsets, expected)
        before = self.conflicts
        self.retrying(
            f"write {table}",
            lambda: self._write_once(
                spec,
                rows,
                consumer_group=consumer_group,
                topic=topic,
                next_offsets=next_offsets,
                expected=expected,
                unique=unique,
            ),
        )
        self._commits += 1
        if self._commits % self.tidy_every == 0:  # 7
            self.tidy_internal()
        return self.conflicts - before

    def tidy_internal(self) -> None:
        """Move the offsets and fence tables' inlined row versions into one Parquet file per
        table (``ducklake_flush_inlined_data``, then a rewrite of the table's files that
        carry deletes), so a commit's reads of them stay small (ADR 0006).

        Rows and offsets keep their values. Each step is a transaction of its own, retried on
        conflict: on a SQLite catalog it conflicts with any concurrent commit, and the loser
        (a worker's commit or this step) starts again on a fresh snapshot, so a commit still
        meets its compare-and-set. A step that still conflicts after the last attempt is left
        to the next time (or the nightly purge): the batch before is committed either way.
        """
        for spec in INTERNAL_TABLES:
            for sql in (_FLUSH_SQL, _REWRITE_SQL):

                def step(sql: str = sql, name: str = spec.name) -> None:
                    self.con.execute(sql, [name]).fetchall()

                try:
                    self.retrying(f"tidy {spec.name}", step, transaction=True)
                except LakeConflict:
                    logger.warning("tidy %s: still conflicting, left for later", spec.name)
                    return

    def _write_once(
        self,
        spec: TableSpec,
        rows: pa.Table,
        *,
        consumer_group: str,
        topic: str,
        next_offsets: Mapping[int, int],
        expected: Mapping[int, int | None],
        unique: UniqueIds | None = None,
    ) -> None:
        parts = sorted(next_offsets)
        # 6. A failed COMMIT ends the transaction itself: nothing is left to roll back.
        with self.transaction() as con:
            stored = self._read_offsets(consumer_group, topic)  # 1
            for part in parts:  # 2
                if stored.get(part) != expected[part]:
                    raise OffsetFenced(topic, part, expected[part], stored.get(part))
            if unique is not None:  # 3
                rows = self._drop_stored_elsewhere(spec.name, rows, unique)
            if rows.num_rows:
                self.insert_rows(spec.name, rows)
            if unique is not None:
                con.execute(f"CALL {CATALOG}.set_commit_message('anpr-ingest', ?)", [unique.writer])
            moved = [p for p in parts if p in stored]
            if moved:  # 4
                sql, params = _update_offsets_sql(consumer_group, topic, moved, next_offsets)
                con.execute(sql, params)
            first = [p for p in parts if p not in stored]
            if first:  # 5
                con.execute(
                    f"INSERT INTO {CATALOG}.{OFFSETS_TABLE} "
                    "SELECT ?, ?, unnest(?::INTEGER[]), unnest(?::BIGINT[]), now()",
                    [consumer_group, topic, first, [next_offsets[p] for p in first]],
                )
                con.execute(
                    f"UPDATE {CATALOG}.{FENCE_TABLE} SET commits = commits + 1, updated_at = now()"
                )

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One lake transaction around the block: committed if it ends, rolled back if it
        raises. A failed COMMIT ends the transaction itself (nothing left to roll back)."""
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
        except BaseException:
            # If the catalog server went away mid-transaction, this ROLLBACK fails too ("Failed
            # to execute query ROLLBACK"), and that error, an outage, is what retrying() sees.
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def retrying(
        self, what: str, attempt_once: Callable[[], _T], *, transaction: bool = False
    ) -> _T:
        """Run ``attempt_once`` again, from the start, while it hits a write conflict (jittered
        backoff of the lake's :class:`RetryPolicy`); return its result.

        With ``transaction`` each attempt runs inside its own :meth:`transaction`; without,
        ``attempt_once`` ends its own. Either way every attempt reads a fresh snapshot.
        Conflicts are counted in :attr:`conflicts`; after the last attempt
        :class:`~pipeline.errors.LakeConflict` is raised.
        """

        def in_transaction() -> _T:
            with self.transaction():
                return attempt_once()

        once = in_transaction if transaction else attempt_once
        policy = self._retry
        attempt = 0
        outage_until: float | None = None
        while attempt < policy.attempts:
            try:
                return once()
            except duckdb.Error as exc:
                if is_catalog_unreachable(exc):
                    outage_until = self._wait_out_outage(what, exc, outage_until)
                    continue
                if not is_write_conflict(exc):
                    raise
                self.conflicts += 1
                delay = policy.delay(attempt)
                attempt += 1
                logger.debug("%s: conflict on attempt %d, retry in %.3fs", what, attempt, delay)
                self._sleep(delay)
        logger.warning("%s: gave up after %d conflicting attempts", what, policy.attempts)
        raise LakeConflict(f"{what}: {policy.attempts} attempts conflicted")

    def _wait_out_outage(self, what: str, exc: duckdb.Error, until: float | None) -> float:
        """Back off while the catalog server is away (restart, failover), up to
        :data:`CATALOG_OUTAGE_S`; then give up with the error.

        Retrying is safe even when the connection dropped during COMMIT: the retried
        transaction reads the stored offsets again, and if the lost commit did happen they no
        longer equal ``expected``, so write_batch refuses it (:class:`OffsetFenced`).
        """
        now = time.monotonic()
        if until is None:
            logger.warning("%s: catalog database unreachable, retrying: %s", what, exc)
            until = now + CATALOG_OUTAGE_S
        if now >= until:
            raise LakeConflict(f"{what}: catalog unreachable for {CATALOG_OUTAGE_S:.0f} s") from exc
        with contextlib.suppress(duckdb.Error):
            self.con.execute("ROLLBACK")  # a transaction the failure left open, if any
        self._sleep(1.0)
        return until

    def execute(
        self, sql: str, params: Sequence[object] | Mapping[str, object] | None = None
    ) -> duckdb.DuckDBPyConnection:
        """Run one statement on the lake's connection (inside :meth:`transaction` if one is
        open). ``sql`` must be built from constants and checked identifiers; values go in
        ``params``."""
        return self.con.execute(sql, params)

    def insert_rows(self, table: str, rows: pa.Table) -> None:
        """Append ``rows`` (columns by name) to ``table``; part of the open transaction."""
        self.con.register("anpr_insert_rows", rows)
        try:
            self.con.execute(
                f"INSERT INTO {CATALOG}.{quote_ident(table)} BY NAME SELECT * FROM anpr_insert_rows"
            )
        finally:
            self.con.unregister("anpr_insert_rows")

    # -- reading ----------------------------------------------------------------------------

    def stored_offsets(self, consumer_group: str, topic: str) -> dict[int, int]:
        """Partition -> next offset to consume, as committed with the rows.

        Waits out a catalog outage like a write does: a worker asks this when it gets
        partitions, and a failure there would stop it.
        """
        return self._reading("read offsets", lambda: self._read_offsets(consumer_group, topic))

    def _reading(self, what: str, read: Callable[[], _T]) -> _T:
        """``read()``, again after a catalog outage (see :meth:`_wait_out_outage`)."""
        outage_until: float | None = None
        while True:
            try:
                return read()
            except duckdb.Error as exc:
                if not is_catalog_unreachable(exc):
                    raise
                outage_until = self._wait_out_outage(what, exc, outage_until)

    def recent_rows(
        self,
        table: str,
        columns: Sequence[str],
        window: timedelta,
        *,
        source_partition: int | None = None,
    ) -> pa.Table:
        """``columns`` of the rows captured within ``window`` of the newest stored capture,
        and of the rows stored within ``window`` of now whatever their capture time,
        optionally only those consumed from one Kafka partition.

        Warms a worker's in-memory windows (repeats, passages) after a restart or an
        assignment. Relative to the newest row, not the clock, so replaying an old backlog
        warms the right rows; and the late rows a camera uploaded after an outage, days
        behind the newest, are there too while their repeats can still come (the rows of
        older ingests are pruned by the files' ``ingested_at`` statistics). Waits out a
        catalog outage: it runs in the assignment callback.
        """
        sql, args = _recent_rows_sql(table, columns, window, source_partition)
        return self._reading(
            "read recent rows", lambda: self.con.execute(sql, args).to_arrow_table()
        )

    def columns(self) -> dict[str, dict[str, str]]:
        """Table -> column -> DuckDB type, of the tables in the lake (column order kept)."""
        out: dict[str, dict[str, str]] = {}
        for table, column, kind in self.con.execute(
            "SELECT table_name, column_name, data_type FROM duckdb_columns() "
            "WHERE database_name = ? AND schema_name = 'main' ORDER BY table_name, column_index",
            [CATALOG],
        ).fetchall():
            out.setdefault(str(table), {})[str(column)] = str(kind)
        return out

    # -- internals --------------------------------------------------------------------------

    def current_snapshot(self) -> int:
        """The id of the lake's newest snapshot (as this connection sees it)."""
        (snapshot,) = self.con.execute(
            f"SELECT id FROM {CATALOG}.current_snapshot()"
        ).fetchone() or (0,)
        return int(snapshot)

    def _drop_stored_elsewhere(self, table: str, rows: pa.Table, unique: UniqueIds) -> pa.Table:
        """``rows`` without those whose id other writers inserted after ``unique.since``
        (write_batch, step 3). Reads only the other writers' insert snapshots, found in the
        catalog's snapshot list, so a lone writer reads no data file at all; after a gap in
        that list (snapshots expired, by the nightly purge or a writer's tidy step), the
        window's rows instead."""
        unique.snapshot = self.current_snapshot()
        unique.others, unique.dropped = None, 0
        if unique.since is None or unique.since >= unique.snapshot:
            return rows
        # Every snapshot after `since` with whether another writer inserted into the table
        # in it; one catalog query, as cheap as asking for the insertions alone.
        changes = self.con.execute(
            f"SELECT c.snapshot_id, c.commit_message IS DISTINCT FROM ? AND list_contains("
            "string_split(c.changes_made, ','), 'inserted_into_table:' || t.table_id) "
            f"FROM {METADATA_DB}.ducklake_snapshot_changes c "
            f"JOIN {METADATA_DB}.ducklake_table t ON t.table_name = ? AND t.end_snapshot IS NULL "
            "WHERE c.snapshot_id > ? AND c.snapshot_id <= ? ORDER BY 1",
            [unique.writer, table, unique.since, unique.snapshot],
        ).fetchall()
        # Snapshot ids are consecutive: fewer than the difference means some were expired.
        if len(changes) < unique.snapshot - unique.since:
            logger.info("snapshots after %d were expired: reading back the id window", unique.since)
            sql, args = _recent_rows_sql(
                table, [unique.column, unique.collected], unique.window, None
            )
            unique.others = self.con.execute(sql, args).to_arrow_table()
            return self._drop_ids_in(rows, unique)
        snapshots = [int(snapshot) for snapshot, theirs in changes if theirs]
        if not snapshots:
            return rows
        column, collected = quote_ident(unique.column), quote_ident(unique.collected)
        pieces = [
            self.con.execute(
                f"SELECT {column}, {collected} FROM "
                f"ducklake_table_insertions('{CATALOG}', 'main', ?, ?, ?)",
                [table, s, s],
            ).to_arrow_table()
            for s in snapshots
        ]
        unique.others = pa.concat_tables(pieces)
        return self._drop_ids_in(rows, unique)

    @staticmethod
    def _drop_ids_in(rows: pa.Table, unique: UniqueIds) -> pa.Table:
        """``rows`` without those whose id is in ``unique.others``; counts them."""
        assert unique.others is not None
        stored = pc.is_in(
            rows[unique.column], value_set=unique.others[unique.column].combine_chunks()
        )
        unique.dropped = int(pc.sum(stored).as_py() or 0)
        return rows.filter(pc.invert(stored)) if unique.dropped else rows

    def _read_offsets(self, consumer_group: str, topic: str) -> dict[int, int]:
        # Every row, filtered here: see write_batch, step 1.
        found = self.con.execute(
            f'SELECT consumer_group, topic, "partition", next_offset FROM {CATALOG}.{OFFSETS_TABLE}'
        ).fetchall()
        return {
            int(part): int(nxt)
            for group, name, part, nxt in found
            if group == consumer_group and name == topic
        }

    def _attach_and_create(self, attach: str) -> None:
        con = self.con
        # A failed earlier attempt may have left the catalog attached half way.
        con.execute(f"DETACH DATABASE IF EXISTS {CATALOG}")
        con.execute(attach)
        self._create_missing_tables()
        self._set_internal_options()
        self._index_catalog()

    def _create_missing_tables(self) -> None:
        """Create what is missing in one transaction, deciding on the transaction's own
        snapshot: concurrent creators then conflict, and the loser finds the tables on retry."""
        with self.transaction() as con:
            existing = {
                str(name)
                for (name,) in con.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE database_name = ?", [CATALOG]
                ).fetchall()
            }
            missing = [s for s in LAKE_TABLES.values() if s.name not in existing]
            for spec in DATA_TABLES.values():
                if spec.name in existing:
                    self._add_missing_columns(spec)
            if missing and not existing:
                for option, value in _LAKE_OPTIONS:
                    con.execute(f"CALL {CATALOG}.set_option(?, ?)", [option, value])
            for spec in missing:
                con.execute(create_table_sql(spec.name, spec.schema))
                # Partition only a new table: altering one that has data conflicts with
                # every concurrent insert.
                alter = partition_sql(spec)
                if alter is not None:
                    con.execute(alter)
                if spec.name == FENCE_TABLE:
                    con.execute(f"INSERT INTO {CATALOG}.{FENCE_TABLE} VALUES (0, 0, now())")
        if missing:
            logger.info("created lake tables %s", ", ".join(s.name for s in missing))

    def _add_missing_columns(self, spec: TableSpec) -> None:
        """Bring a lake made by an older version up to the schema: add new nullable columns.

        Runs inside the creating transaction. A new NOT NULL column cannot be added to stored
        rows; schemas.py declares new columns nullable for that reason.
        """
        have = {
            str(name)
            for (name,) in self.con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = ? "
                "AND table_name = ?",
                [CATALOG, spec.name],
            ).fetchall()
        }
        for f in spec.schema:
            if f.name in have:
                continue
            if not f.nullable:
                raise ConfigError(
                    "lake.path", f"lake table {spec.name} lacks NOT NULL column {f.name}"
                )
            self.con.execute(
                f"ALTER TABLE {CATALOG}.{quote_ident(spec.name)} "
                f"ADD COLUMN {quote_ident(f.name)} {duckdb_type(f.type)}"
            )
            logger.info("lake table %s: added column %s", spec.name, f.name)

    def _index_catalog(self) -> None:
        """On a PostgreSQL catalog, create the indexes of :data:`CATALOG_INDEXES` that are
        missing (a lake made before them gets them at its first open for writing).

        An index changes no row and no query result, only how fast the catalog finds rows, so
        one that cannot be made is a warning, not a reason to stop ingesting.
        """
        if self.storage.kind != "postgres":
            return
        for name, table, columns in CATALOG_INDEXES:
            try:
                self.con.execute(
                    f"CREATE INDEX IF NOT EXISTS {name} "
                    f"ON {METADATA_DB}.{METADATA_SCHEMA}.{table} ({columns})"
                )
            except duckdb.Error as exc:
                if is_catalog_unreachable(exc):
                    raise
                # Two writers opening a new PostgreSQL catalog at once may both try one.
                logger.warning("catalog index %s not created: %s", name, exc)

    def _set_internal_options(self) -> None:
        done = {
            str(entry)
            for (entry,) in self.con.execute(
                f"SELECT scope_entry FROM {CATALOG}.options() "
                "WHERE option_name = 'data_inlining_row_limit' AND scope = 'TABLE'"
            ).fetchall()
        }
        for spec in INTERNAL_TABLES:
            if f"main.{spec.name}" not in done:
                self.con.execute(
                    f"CALL {CATALOG}.set_option('data_inlining_row_limit', ?, table_name => ?)",
                    [_INTERNAL_INLINING_LIMIT, spec.name],
                )

    def _lock_down(self, storage: Storage, tables: Collection[str] | None) -> None:
        """No file access but the data files (of ``tables`` only, unless None), no way to
        undo it: analysts only read the lake.

        DuckLake's own scans pass DuckDB's ``allowed_directories`` check like ``read_parquet``
        does, so the folders of the tables the session's views read must stay allowed; any
        other table's files (``read_parquet``, a replacement scan) fail inside DuckDB. The
        same holds for ``s3://`` data paths (measured, DuckDB 1.5.5). DuckDB itself adds its
        temporary folder to the allowed ones when external access goes off: it is the
        session's own (:attr:`temp_dir`), so no other session's spills are in reach. It adds
        the file of every database attached at that moment too, so a SQLite catalog is
        attached again only after (DuckLake still reads it: SQLite opens it, not DuckDB).
        What the catalog holds stays reachable through its metadata database and the SQLite
        extension's functions (docs/adr/0008-query-confinement.md).

        The SQLite extension opens files through SQLite, past DuckDB's file-system checks, so
        this alone does not stop an ATTACH of another catalog. The guards against writes are
        the read-only attach and the access layer's statement check
        (:func:`pipeline.access.statement.check`: one SELECT over the role's views), which
        every analyst statement passes before it runs.
        """
        allowed = [storage.data_path] if tables is None else self._table_folders(storage, tables)
        reattach = storage.sqlite_file is not None
        if reattach:
            self.con.execute(f"DETACH {CATALOG}")
        self.con.execute("SET allowed_directories = ?", [allowed])
        if self.temp_dir is not None:
            self.con.execute("SET temp_directory = ?", [str(self.temp_dir)])
        # A local lake needs no network file system at all; an S3 lake keeps only S3's.
        disabled = _DISABLED_FILESYSTEMS if storage.s3 is None else _DISABLED_WITH_S3
        self.con.execute(f"SET disabled_filesystems = '{disabled}'")
        self.con.execute("SET enable_external_access = false")
        if reattach:
            self.con.execute(self._attach)
        self.con.execute("SET lock_configuration = true")

    def _table_folders(self, storage: Storage, tables: Collection[str]) -> list[str]:
        """The data folders of ``tables`` (``<data_path>main/<table>/`` by default), as the
        catalog records them: a table's folder may be relative to its schema's, and that to
        the data path."""
        rows = self.con.execute(
            f"SELECT s.path, s.path_is_relative, t.path, t.path_is_relative, t.table_name "
            f"FROM {METADATA_DB}.ducklake_table t "
            f"JOIN {METADATA_DB}.ducklake_schema s USING (schema_id) "
            "WHERE t.end_snapshot IS NULL AND s.end_snapshot IS NULL"
        ).fetchall()
        folders = []
        for schema, schema_relative, table, table_relative, name in rows:
            if name not in tables:
                continue
            base = storage.data_path + schema if schema_relative else schema
            folder = base + table if table_relative else table
            folders.append(folder if folder.endswith("/") else f"{folder}/")
        return sorted(folders)


# What a query session's PostgreSQL login could do beyond reading DuckLake's tables: each
# names one power, none may hold (docs/adr/0008-query-confinement.md, layer 3).
_QUERY_LOGIN_POWERS = """
SELECT concat_ws(', ',
  CASE WHEN r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication
    OR r.rolbypassrls THEN 'is an administrator' END,
  CASE WHEN pg_has_role(current_user, d.datdba, 'MEMBER') THEN 'owns the database' END,
  CASE WHEN has_database_privilege(d.oid, 'CREATE, TEMPORARY')
    THEN 'may create schemas or temporary tables' END,
  CASE WHEN has_schema_privilege('public', 'CREATE') THEN 'may create tables' END,
  CASE WHEN EXISTS (SELECT 1 FROM pg_namespace n
    WHERE n.nspname NOT IN ('public', 'pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_%' AND has_schema_privilege(n.oid, 'USAGE'))
    THEN 'may use a schema other than public (the activity log''s)' END,
  CASE WHEN EXISTS (SELECT 1 FROM pg_class c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE'))
    THEN 'may write a table' END
) FROM pg_roles r, pg_database d
WHERE r.rolname = current_user AND d.datname = current_database()
"""


def _check_query_login(con: duckdb.DuckDBPyConnection) -> None:
    """Refuse a query session whose PostgreSQL login may do more than read DuckLake's schema
    (``lake.query_catalog`` naming the pipeline's login, or a role granted too much): what it
    may do, a statement that got past both checks could do through ``postgres_query``."""
    text = _QUERY_LOGIN_POWERS.replace("'", "''")
    row = con.execute(f"SELECT * FROM postgres_query('{METADATA_DB}', '{text}')").fetchone()
    powers = str(row[0]) if row else "cannot be checked"
    if powers:
        raise ConfigError(
            "lake.query_catalog",
            f"its role {powers}; a query session's login may only read DuckLake's schema "
            "public (README: a login for query sessions)",
        )


def private_temp_dir(parent: Path | None) -> Path:
    """A new folder only this account can enter (``mkdtemp`` makes it 0700)."""
    if parent is not None:
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="anpr-query-", dir=parent))


def _use_wal(catalog: Path) -> None:
    """Put the SQLite catalog in WAL mode (persistent in the file; creates an empty one).

    In the default rollback-journal mode an open DuckLake transaction holds a SQLite read lock,
    so any reader (an analyst's long query) blocks every commit until it ends; in WAL mode
    readers keep their snapshot and writers go on. Done in a child process
    (:mod:`pipeline.lake.sqlite_child`: a second SQLite library in this process would drop the
    DuckDB extension's file locks), once per catalog and process.
    """
    key = catalog.resolve()
    if key in _WAL_CONFIRMED:
        return
    try:
        run_task("wal", catalog, timeout_s=60.0)
    except CatalogTaskFailed as exc:
        if exc.code == EXIT_BUSY:
            raise LakeConflict(f"could not switch {catalog} to WAL mode: it stayed locked") from exc
        raise
    _WAL_CONFIRMED.add(key)


_WAL_CONFIRMED: set[Path] = set()


def _recent_rows_sql(
    table: str, columns: Sequence[str], window: timedelta, source_partition: int | None
) -> tuple[str, list[object]]:
    """The statement of :meth:`Lake.recent_rows` and its parameters."""
    spec = DATA_TABLES.get(table)
    if spec is None or spec.day_column is None:
        raise ValueError(f"no capture time in lake table {table!r}")
    unknown = set(columns) - set(spec.schema.names)
    if unknown:
        raise ValueError(f"lake table {table} has no columns {sorted(unknown)}")
    day = quote_ident(spec.day_column)
    name = f"{CATALOG}.{quote_ident(table)}"
    where, params = "", []
    if source_partition is not None:
        where, params = "source_partition = ?", [source_partition]
    only = f"WHERE {where}" if where else ""
    also = f"AND {where}" if where else ""
    selected = ", ".join(quote_ident(c) for c in columns)
    newest = f"(SELECT max({day}) FROM {name} {only}) - ?"
    sql = f"SELECT {selected} FROM {name} WHERE {day} >= {newest} {also}"
    args: list[object] = [*params, window, *params]
    if "ingested_at" in spec.schema.names:
        sql += (
            f" UNION ALL SELECT {selected} FROM {name} "
            f"WHERE ingested_at >= ? AND {day} < {newest} {also}"
        )
        args += [datetime.now(UTC) - window, *params, window, *params]
    return sql, args
