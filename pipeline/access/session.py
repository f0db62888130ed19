"""A query session confined to one role's views, and the logged way to run a statement in it.

Opening a session, in order:

1. Open the lake read-only (:meth:`Lake.open`, on the catalog and data path of ``[lake]``):
   the catalog is attached ``READ_ONLY``; a PostgreSQL catalog as ``lake.query_catalog``'s
   login (:meth:`Storage.for_queries`), never the pipeline's.
2. Register the pseudonym function (a Python UDF holding the key; the key is never in SQL).
3. Create the role's views (:func:`plan_views`) in the schema ``memory.access`` and ``USE`` it.
4. Lock the connection: file access is limited to the data folders of the lake tables the
   views read (folders or ``s3://`` prefixes), network and pipe file systems are disabled
   (S3's is kept for an S3 lake), DuckDB's temporary folder is a new private one of the
   session's own (other sessions' spills stay out of reach), ``enable_external_access =
   false``, and ``lock_configuration = true`` so none of it can be undone by the session.

5. For the analyst and statistics roles, copy the views into a database of their own
   (:class:`~pipeline.access.derived.DerivedCopy`: in memory, no catalog, no extension, no
   file): their statements run there, brought up to date before each, and cannot reach the
   lake even past both checks. The investigator's and the dpo's run on the lake's connection.

Running a statement (:func:`run_logged`):

1. Check it (:func:`statement.check`): one SELECT naming only the role's views. A refusal is
   logged as ``query.refused`` and nothing runs.
2. Append ``query.begin`` (user, role, reason, case, SQL, start) and fsync it. If the log
   cannot be written, the query does not run.
3. Run it; append ``query.end`` (outcome, rows, duration, keyed pseudonyms of the plates in the
   result, never values).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.access import attribution, statement
from pipeline.access.audit import ActivityLog
from pipeline.access.derived import DerivedCopy, SharedCopies
from pipeline.access.identity import Identity, Purpose
from pipeline.access.views import (
    ACTIVITY_VIEW,
    KEYED_ID_FUNCTION,
    PSEUDONYM_FUNCTION,
    ViewPlan,
    plan_views,
)
from pipeline.errors import UsageError
from pipeline.lake.backend import Storage
from pipeline.lake.catalog import Lake, quote_ident
from pipeline.pseudonym import PSEUDONYM, Pseudonymiser

logger = logging.getLogger(__name__)

SCHEMA = "access"
# Roles whose statements run on a copy of their views, never on the lake's connection.
DERIVED_ROLES = frozenset({"analyst", "statistics"})
# A normalised plate: what a result value must look like to be logged as a plate's pseudonym.
_PLATE_LIKE = re.compile(r"[A-Z0-9]{2,10}")
# A pseudonym inside any text, whatever its case; the words a clear plate can be one of.
_ANY_PSEUDONYM = re.compile(PSEUDONYM.pattern, re.IGNORECASE)
_WORD = re.compile(r"[A-Z0-9_]+")

ACTIVITY_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64()),
        pa.field("at", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("user", pa.string()),
        pa.field("role", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("case", pa.string()),
        pa.field("request", pa.string()),
        pa.field("sql", pa.string()),  # literals replaced by ?
        pa.field("literals", pa.list_(pa.string())),  # their keyed pseudonyms, in order
        pa.field("begin", pa.int64()),
        pa.field("outcome", pa.string()),
        pa.field("rows", pa.int64()),
        pa.field("duration_s", pa.float64()),
        pa.field("subject", pa.string()),
        pa.field("pseudonyms", pa.list_(pa.string())),
    ]
)


class AccessSession:
    """One role's confined view of the lake (see the module docstring for how it is built)."""

    def __init__(
        self,
        lake: Lake,
        plan: ViewPlan,
        pseudo: Pseudonymiser,
        reads: statement.Reads,
        derived: DerivedCopy | None = None,
        *,
        owns_copy: bool = False,
    ) -> None:
        self.lake = lake
        self.plan = plan
        self.pseudo = pseudo
        self.reads = reads  # what a statement's plan may read, on :attr:`con`
        self.derived = derived
        self._owns_copy = owns_copy  # closed with the session (no shared copies given)
        # Statements run on a cursor of the copy (one per session), or the lake's connection.
        self.con: duckdb.DuckDBPyConnection = lake.con if derived is None else derived.cursor()

    @classmethod
    def open(
        cls,
        lake_path: Path,
        role: str,
        *,
        now: datetime,
        analyst_max_age_days: int,
        retention_months: int,
        pseudo: Pseudonymiser,
        activity: ActivityLog | None = None,
        extension_dir: Path | None = None,
        storage: Storage | None = None,
        temp_parent: Path | None = None,
        copies: SharedCopies | None = None,
    ) -> AccessSession:
        """Open ``role``'s session on the lake at ``lake_path``, whose catalog and data files
        are where ``storage`` says (default: embedded under ``lake_path``); DuckDB spills to
        a private folder of the session's own under ``temp_parent`` (see :meth:`Lake.open`).
        An analyst or statistics session reads the role's copy in ``copies`` (made if there
        is none; ``copies`` says where it spills), or a copy of its own without ``copies``."""
        built: list[tuple[ViewPlan, statement.Reads]] = []

        def confine(lake: Lake) -> frozenset[str]:
            # Before the lock: the views decide which tables' folders the session may read.
            built.append(_build(lake, role, now, analyst_max_age_days, retention_months,
                                pseudo, activity))  # fmt: skip
            return built[0][1].tables

        lake = Lake.open(
            lake_path,
            read_only=True,
            extension_dir=extension_dir,
            # On PostgreSQL as the query login, which reads DuckLake's schema only (ADR 0008).
            storage=None if storage is None else storage.for_queries(),
            confine=confine,
            temp_parent=temp_parent,
        )
        try:
            # Lake.open names its catalog as the default after the lock: the views come first.
            lake.con.execute(f"USE memory.{SCHEMA}")
        except BaseException:
            lake.close()
            raise
        plan, reads = built[0]
        if role not in DERIVED_ROLES:
            return cls(lake, plan, pseudo, reads)
        try:
            if copies is None:
                derived = DerivedCopy(
                    lake, plan, reads.tables, now=now, schema=SCHEMA, temp_parent=temp_parent
                )
            else:
                derived = copies.get(lake, plan, reads.tables, now=now)
            session = cls(lake, plan, pseudo, reads, derived, owns_copy=copies is None)
            session.reads = _view_reads(session.con, plan)
        except BaseException:
            lake.close()
            raise
        return session

    @property
    def role(self) -> str:
        return self.plan.role

    @property
    def allowed(self) -> statement.Allowed:
        """What the syntax check lets this role name and return."""
        if self.role == "statistics":  # no subject column in any of its views
            return statement.Allowed(self.plan.names)
        clear = self.role != "analyst"
        subjects = attribution.subject_columns(clear_plates=clear)
        return statement.Allowed(self.plan.names, subjects, clear_plates=clear)

    def close(self) -> None:
        if self.derived is not None:
            self.con.close()
            if self._owns_copy:
                self.derived.close()
        self.lake.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def reload_activity(self, activity: ActivityLog) -> None:
        """Replace the session's copy of the activity log with the log as it is now."""
        self.con.execute(f"DROP TABLE memory.{SCHEMA}.{ACTIVITY_VIEW}")
        _load_activity(self.con, activity)

    def check(self, sql: str) -> str:
        """Both checks: the syntax tree names only the views, and the bound plan reads only
        what the views read (see docs/adr/0008-query-confinement.md)."""
        statement.check(sql, self.allowed)
        statement.check_plan(self.con, sql, self.reads)
        return sql

    def run(self, sql: str) -> pa.Table:
        """Run a checked statement on :attr:`con` and return its rows (on a copy: brought
        up to date first, and nothing the statement does stays: :meth:`DerivedCopy.run`)."""
        if self.derived is None:
            return self.con.execute(sql).to_arrow_table()
        self.derived.refresh(self.lake)
        return self.derived.run(self.con, sql)

    def result_pseudonyms(self, table: pa.Table) -> list[str]:
        """Sorted keyed pseudonyms of the plates in a result (never the plates themselves).

        A pseudonym is found anywhere inside a text, in any case, in lists and structs too:
        ``upper()``, concatenation and casts to text do not hide it. A clear plate (roles
        that see them) is found as a plate-like word of a text. See docs/adr/0008.
        """
        found: set[str] = set()
        for array in _string_leaves(table):
            for value in pc.unique(array.drop_null()).to_pylist():
                text = value.decode("latin-1") if isinstance(value, bytes) else value
                found.update(m.lower() for m in _ANY_PSEUDONYM.findall(text))
                if self.role == "analyst":
                    continue
                for word in _WORD.findall(text.upper().replace(" ", "").replace("-", "")):
                    if _PLATE_LIKE.fullmatch(word) and not _ANY_PSEUDONYM.fullmatch(word):
                        found.add(self.pseudo.one(word))
        return sorted(found)


def _build(
    lake: Lake,
    role: str,
    now: datetime,
    analyst_max_age_days: int,
    retention_months: int,
    pseudo: Pseudonymiser,
    activity: ActivityLog | None,
) -> tuple[ViewPlan, statement.Reads]:
    """Create ``role``'s views (and the functions they call) on the lake's connection."""
    plan = plan_views(
        role,
        {table: list(columns) for table, columns in lake.columns().items()},
        now=now,
        analyst_max_age_days=analyst_max_age_days,
        retention_months=retention_months,
    )
    # A UDF and the session's own views live on the connection, not in the lake.
    con = lake.con
    con.create_function(  # type: ignore[call-overload]  # stubs lack Arrow UDFs
        PSEUDONYM_FUNCTION,
        pseudo.many,
        [duckdb.sqltype("VARCHAR")],
        duckdb.sqltype("VARCHAR"),
        type="arrow",
    )
    con.create_function(  # type: ignore[call-overload]  # stubs lack Arrow UDFs
        KEYED_ID_FUNCTION,
        pseudo.keyed_ids,
        [duckdb.sqltype("BIGINT")],
        duckdb.sqltype("BIGINT"),
        type="arrow",
    )
    con.execute(f"CREATE SCHEMA memory.{SCHEMA}")
    for view in plan.views:
        con.execute(f"CREATE VIEW memory.{SCHEMA}.{quote_ident(view.name)} AS {view.sql}")
    if plan.activity_log:
        _load_activity(con, activity)
    con.execute(f"USE memory.{SCHEMA}")
    return plan, _view_reads(con, plan)


def _view_reads(con: duckdb.DuckDBPyConnection, plan: ViewPlan) -> statement.Reads:
    """The relations the role's views read, from their own plans (the lake tables behind them,
    the dpo's copy of the activity log): a statement's plan may read these and nothing else."""
    scans: set[tuple[str, str]] = set()
    for name in sorted(plan.names):
        scans.update(statement.plan_reads(con, f"SELECT * FROM {quote_ident(name)}"))
    return statement.Reads(frozenset(scans))


def _load_activity(con: duckdb.DuckDBPyConnection, activity: ActivityLog | None) -> None:
    rows: list[dict[str, Any]] = []
    if activity is not None:
        names = ACTIVITY_SCHEMA.names
        rows = [{n: e.get(n) for n in names} for e in activity.entries()]
    table = pa.Table.from_pylist(rows, schema=ACTIVITY_SCHEMA)
    con.register("anpr_activity_rows", table)
    try:
        con.execute(
            f"CREATE TABLE memory.{SCHEMA}.{ACTIVITY_VIEW} AS "
            'SELECT * REPLACE ("at"::TIMESTAMPTZ AS "at") FROM anpr_activity_rows'
        )
    finally:
        con.unregister("anpr_activity_rows")


def _string_leaves(table: pa.Table) -> Iterator[pa.Array]:
    """Every text or binary array in a result, looking inside lists and structs."""
    stack: list[pa.Array] = [col.combine_chunks() for col in table.columns]
    while stack:
        array = stack.pop()
        kind = array.type
        if (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind)
        ):
            yield array
        elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
            stack.append(pc.list_flatten(array))
        elif pa.types.is_struct(kind):
            stack.extend(array.field(i) for i in range(kind.num_fields))


def _now_text(clock: Callable[[], datetime]) -> str:
    return clock().astimezone(UTC).isoformat()


def run_logged(
    session: AccessSession,
    log: ActivityLog,
    identity: Identity,
    purpose: Purpose,
    sql: str,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> pa.Table:
    """Check, log, run and log the outcome of one statement (steps in the module docstring)."""
    base = {
        "user": identity.user,
        "role": identity.role,
        "reason": purpose.reason,
        "case": purpose.case,
        "sql": sql,
    }
    try:
        session.check(sql)
    except statement.QueryRefused as exc:
        log.append({**base, "kind": "query.refused", "at": _now_text(clock), "outcome": "refused",
                    "why": exc.why})  # fmt: skip
        logger.info("query refused for %s (%s)", identity.user, identity.role)
        raise
    begin = log.append({**base, "kind": "query.begin", "at": _now_text(clock)})
    started = time.monotonic()
    end = {
        "kind": "query.end",
        "begin": begin["seq"],
        "role": identity.role,
        "reason": purpose.reason,
    }
    outcome, error = "interrupted", None
    try:
        table = session.run(sql)
        outcome = "ok"
    except duckdb.Error as exc:
        outcome, error = "failed", exc
        raise UsageError(f"query failed: {exc}") from None
    finally:
        if outcome != "ok":
            log.append({**end, "at": _now_text(clock), "outcome": outcome, "rows": 0,
                        "duration_s": round(time.monotonic() - started, 6),
                        "error": type(error).__name__ if error else None})  # fmt: skip
    log.append(
        {
            **end,
            "at": _now_text(clock),
            "outcome": "ok",
            "rows": table.num_rows,
            "duration_s": round(time.monotonic() - started, 6),
            "pseudonyms": session.result_pseudonyms(table),
        }
    )
    logger.info("query by %s (%s): %d rows", identity.user, identity.role, table.num_rows)
    return table
