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
from datetime import UTC, datetime, timedelta

from pipeline.config import months_before
from pipeline.lake.catalog import CATALOG, quote_ident

PSEUDONYM_FUNCTION = "anpr_pseudonym"
# The keyed replacement of ids derived from a plate (passage_id is an unkeyed hash of plate,
# site, direction and time, all but the plate shown to analysts: invertible by guessing).
KEYED_ID_FUNCTION = "anpr_keyed_id"
# Columns an analyst sees only through KEYED_ID_FUNCTION.
_ANALYST_KEYED = ("passage_id",)
# Personal-data tables: name -> collection-time column (the legal clock).
PERSONAL_TABLES: Mapping[str, str] = {
    "plate_reads": "captured_at",
    "passengers": "collected_at",
}
STATISTICS_TABLES = ("traffic_stats", "trip_stats")
RESTRICTIONS_TABLE = "subject_restrictions"
VERSIONS_TABLE = "plate_read_versions"
ACTIVITY_VIEW = "activity_log"
# The lake's bookkeeping: nobody queries it.
INTERNAL_TABLES = frozenset({"ingest_offsets", "ingest_fence"})
# Columns an analyst never sees in plate_reads: the plate in any form, and where it came from.
_ANALYST_HIDDEN = frozenset(
    {"plate", "plate_raw", "candidates", "source_partition", "source_offset"}
)


@dataclass(frozen=True)
class View:
    name: str
    sql: str  # the SELECT the view stands for


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
    legal_cutoff = months_before(now, retention_months)
    views: list[View] = []
    if role == "dpo":
        for name in sorted(tables):
            if name not in INTERNAL_TABLES:
                views.append(View(name, f"SELECT * FROM {_table(name)}"))
        return ViewPlan(role, tuple(views), activity_log=True)
    hide = _restriction_filter(tables, now)
    if role == "analyst":
        cutoff = max(legal_cutoff, now - timedelta(days=analyst_max_age_days))
        if "plate_reads" in tables:
            views.append(_analyst_plate_reads(tables["plate_reads"], cutoff, hide))
    elif role == "investigator":
        for name, time_column in PERSONAL_TABLES.items():
            if name in tables:
                views.append(_recent(name, tables[name], time_column, legal_cutoff, hide))
    elif role != "statistics":
        raise ValueError(f"unknown role {role!r}")
    for name in STATISTICS_TABLES:
        if name in tables:
            views.append(View(name, f"SELECT * FROM {_table(name)}"))
    return ViewPlan(role, tuple(views), activity_log=False)


def _table(name: str) -> str:
    return f"{CATALOG}.main.{quote_ident(name)}"


def _timestamp(value: datetime) -> str:
    # A literal built from a datetime we computed, never from input.
    return f"TIMESTAMPTZ '{value.astimezone(UTC).isoformat()}'"


def _restriction_filter(tables: Mapping[str, Sequence[str]], now: datetime) -> str | None:
    """``plate NOT IN (...)`` for plates restricted at ``now``; None without restrictions."""
    if RESTRICTIONS_TABLE not in tables:
        return None
    return (
        f"plate NOT IN (SELECT plate FROM {_table(RESTRICTIONS_TABLE)} "
        f"WHERE restricted_until > {_timestamp(now)})"
    )


def _where(time_column: str, cutoff: datetime, hide: str | None, columns: Sequence[str]) -> str:
    clauses = [f"{quote_ident(time_column)} >= {_timestamp(cutoff)}"]
    if hide is not None and "plate" in columns:
        clauses.append(hide)
    return " AND ".join(clauses)


def _recent(
    name: str, columns: Sequence[str], time_column: str, cutoff: datetime, hide: str | None
) -> View:
    where = _where(time_column, cutoff, hide, columns)
    return View(name, f"SELECT * FROM {_table(name)} WHERE {where}")


def _analyst_plate_reads(columns: Sequence[str], cutoff: datetime, hide: str | None) -> View:
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
    where = _where("captured_at", cutoff, hide, columns)
    return View(
        "plate_reads", f"SELECT {', '.join(shown)} FROM {_table('plate_reads')} WHERE {where}"
    )
