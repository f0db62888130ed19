"""What each role sees: a plan of views over the lake, built from plain values (pure).

The session (:mod:`pipeline.access.session`) creates these views in a schema of its own and
lets statements name nothing else (:mod:`pipeline.access.statement`).

======================  =================================================================
role                    views
======================  =================================================================
``analyst``             ``plate_reads`` of the last ``analyst_max_age_days`` with the plate
                        as a keyed pseudonym (``plate_pseudonym``; no raw text, no OCR
                        candidates) and ``passage_id`` keyed too; statistics tables
``investigator``        ``plate_reads`` and ``passengers`` with clear plates and identities,
                        within the legal limit; statistics tables
``statistics``          statistics tables only
``dpo``                 every lake table (restricted rows included), ``activity_log``
======================  =================================================================

Rows of restricted plates (``subject_restrictions``) are left out of every view but the dpo's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline import retention
from pipeline.lake import tables as lake_tables
from pipeline.lake.catalog import CATALOG, quote_ident
from pipeline.lake.tables import DATA_TABLES, PLATE_READS_TABLE, TableSpec

PSEUDONYM_FUNCTION = "anpr_pseudonym"
# The keyed replacement of ids derived from a plate (passage_id is an unkeyed hash of plate,
# site, direction and time, all but the plate shown to analysts: invertible by guessing).
KEYED_ID_FUNCTION = "anpr_keyed_id"
# Columns an analyst sees only through KEYED_ID_FUNCTION.
_ANALYST_KEYED = ("passage_id",)
STATISTICS_TABLES = ("traffic_stats", "trip_stats")
RESTRICTIONS_TABLE = lake_tables.RESTRICTIONS_TABLE.name
VERSIONS_TABLE = lake_tables.VERSIONS_TABLE.name
ACTIVITY_VIEW = "activity_log"
INTERNAL_TABLES = frozenset(t.name for t in lake_tables.INTERNAL_TABLES)
# Columns an analyst never sees in plate_reads: the plate in any form, and where it came from.
_ANALYST_HIDDEN = frozenset(
    {"plate", "plate_raw", "candidates", "source_partition", "source_offset"}
)


@dataclass(frozen=True)
class View:
    """A role's view: the rows of one lake table it shows (``where``), and how (``columns``)."""

    name: str
    table: str  # the lake table whose rows it shows
    columns: str = "*"  # the SELECT list
    where: str | None = None  # which rows (may read the restrictions table too)
    # (collection-time column, cutoff): rows collected before the cutoff are not shown.
    window: tuple[str, datetime] | None = None

    @property
    def sql(self) -> str:
        """The SELECT the view stands for."""
        return self.over(_table(self.table))

    def over(self, relation: str) -> str:
        """The view's SELECT with ``relation`` (rows of :attr:`table`, e.g. only those one
        snapshot inserted) in place of the table."""
        where = "" if self.where is None else f" WHERE {self.where}"
        return f"SELECT {self.columns} FROM {relation}{where}"


@dataclass(frozen=True)
class ViewPlan:
    role: str
    views: tuple[View, ...]
    activity_log: bool  # the session also loads the activity log (dpo)

    @property
    def names(self) -> frozenset[str]:
        extra = {ACTIVITY_VIEW} if self.activity_log else set()
        return frozenset({v.name for v in self.views} | extra)


def plan_views(
    role: str,
    tables: Mapping[str, Sequence[str]],
    *,
    now: datetime,
    analyst_max_age_days: int,
    retention_months: int,
) -> ViewPlan:
    """The views of ``role`` over the lake tables present (``tables``: name -> columns).

    ``now`` is the session's clock: the analyst tier and the legal limit are counted back from
    it, and a restriction counts while its ``restricted_until`` lies after it.
    """
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    now = now.astimezone(UTC)
    legal_cutoff = retention.cutoff(now, retention_months)
    views: list[View] = []
    if role == "dpo":
        for name in sorted(tables):
            if name not in INTERNAL_TABLES:
                views.append(View(name, name))
        return ViewPlan(role, tuple(views), activity_log=True)
    restricted = _restricted_plates(tables, now)
    if role == "analyst":
        cutoff = retention.analyst_window(now, retention_months, analyst_max_age_days)
        if "plate_reads" in tables:
            views.append(_analyst_plate_reads(tables["plate_reads"], cutoff, restricted))
    elif role == "investigator":
        for spec in DATA_TABLES.values():
            if spec.name in tables:
                views.append(_recent(spec, tables[spec.name], legal_cutoff, restricted))
    elif role != "statistics":
        raise ValueError(f"unknown role {role!r}")
    for name in STATISTICS_TABLES:
        if name in tables:
            views.append(View(name, name))
    return ViewPlan(role, tuple(views), activity_log=False)


def _table(name: str) -> str:
    return f"{CATALOG}.main.{quote_ident(name)}"


def _timestamp(value: datetime) -> str:
    # A literal built from a datetime we computed, never from input.
    return f"TIMESTAMPTZ '{value.astimezone(UTC).isoformat()}'"


def _restricted_plates(tables: Mapping[str, Sequence[str]], now: datetime) -> str | None:
    """The query of plates restricted at ``now``; None without a restrictions table."""
    if RESTRICTIONS_TABLE not in tables:
        return None
    return (
        f"SELECT plate FROM {_table(RESTRICTIONS_TABLE)} WHERE restricted_until > {_timestamp(now)}"
    )


def _where(
    spec: TableSpec, cutoff: datetime, restricted: str | None, columns: Sequence[str]
) -> str:
    """Collected within the window, and no plate column of the row holds a restricted plate."""
    if spec.collected_column is None:
        raise ValueError(f"{spec.name} has no collection time")
    clauses = [f"{quote_ident(spec.collected_column)} >= {_timestamp(cutoff)}"]
    for column in spec.plate_columns:
        if restricted is None or column not in columns:
            continue
        # Names from pipeline.lake.tables, not input. NULL NOT IN (...) is NULL, which would
        # hide every passenger without a vehicle: a missing plate is not a restricted one.
        hide = f"{column} NOT IN ({restricted})"
        nullable = spec.schema.field(column).nullable
        clauses.append(f"({column} IS NULL OR {hide})" if nullable else hide)
    return " AND ".join(clauses)


def _recent(
    spec: TableSpec, columns: Sequence[str], cutoff: datetime, restricted: str | None
) -> View:
    return View(
        spec.name,
        spec.name,
        where=_where(spec, cutoff, restricted, columns),
        window=_window(spec, cutoff),
    )


def _window(spec: TableSpec, cutoff: datetime) -> tuple[str, datetime]:
    if spec.collected_column is None:
        raise ValueError(f"{spec.name} has no collection time")
    return spec.collected_column, cutoff


def _analyst_plate_reads(columns: Sequence[str], cutoff: datetime, restricted: str | None) -> View:
    shown = [
        f"{KEYED_ID_FUNCTION}({quote_ident(c)}) AS {quote_ident(c)}"
        if c in _ANALYST_KEYED
        else quote_ident(c)
        for c in columns
        if c not in _ANALYST_HIDDEN
    ]
    shown.insert(
        shown.index('"captured_at"') + 1 if '"captured_at"' in shown else len(shown),
        f"{PSEUDONYM_FUNCTION}(plate) AS plate_pseudonym",
    )
    where = _where(PLATE_READS_TABLE, cutoff, restricted, columns)
    window = _window(PLATE_READS_TABLE, cutoff)
    return View("plate_reads", "plate_reads", ", ".join(shown), where, window)
