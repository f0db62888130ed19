"""Data-subject requests on the lake: access, rectify, erase, restrict (the dpo's tools).

Each function takes a writable :class:`Lake`, works in one DuckLake transaction (retried on a
write conflict) and returns what it did; the CLI checks the role and writes the activity log.
A plate is found in every column :mod:`pipeline.lake.tables` says can hold it:

- a plate column (``plate_reads.plate``, ``passengers.vehicle_plate``, ``old_plate`` and
  ``new_plate`` of a rectification...), as stored, normalised; the raw text beside it
  (``plate_raw``, ``vehicle_plate_raw``) is in the same row, found through it,
- the OCR ``candidates`` of a read (a list of ``{plate, confidence}``).

Erasure records the plate in the erasure ledger (:mod:`pipeline.erasure`, so ingest never
stores it again from Kafka), deletes those rows in every table and then makes them physically
unreadable with the same purge retention uses (passed in as ``purge``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

import pyarrow as pa

from pipeline.access.views import RESTRICTIONS_TABLE, VERSIONS_TABLE
from pipeline.erasure import ErasureLedger
from pipeline.errors import LakeConflict, UsageError
from pipeline.lake.catalog import CATALOG, Lake, quote_ident
from pipeline.lake.tables import DATA_TABLES, LAKE_TABLES
from pipeline.reference.plates import normalise_plate
from pipeline.retention import expiry

logger = logging.getLogger(__name__)

# Deletes erase() makes at most before it gives up with rows still there (see erase, step 2).
ERASE_ATTEMPTS = 3

_PLATE_TEXT = re.compile(r"[A-Z0-9]{1,16}")
_NOT_PLATE_CHARS = "'[^A-Z0-9]', '', 'g'"


def checked_plate(text: str) -> str:
    """``text`` normalised like ingest does; refuse anything that is not a plate."""
    plate = normalise_plate(text)
    if not _PLATE_TEXT.fullmatch(plate):
        raise UsageError("--plate must be a number plate (letters and digits)")
    return plate


def plate_predicates(columns: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """Table -> SQL condition (one ``$plate`` parameter) matching rows about a plate (pure).

    The plate columns are those :mod:`pipeline.lake.tables` names for each table present in
    ``columns``: erasure, restriction, the views and retention read the same registry.
    """
    out: dict[str, str] = {}
    for table in sorted(columns):
        spec = LAKE_TABLES.get(table)
        if spec is None:
            continue
        terms = [f"{quote_ident(c)} = $plate" for c in spec.plate_columns if c in columns[table]]
        terms += [
            # OCR candidates are kept as read: normalised here the way ingest normalises.
            f"list_contains(list_transform({quote_ident(c)}, c -> "
            f"regexp_replace(upper(c.plate), {_NOT_PLATE_CHARS})), $plate)"
            for c in spec.plate_lists
            if c in columns[table]
        ]
        if terms:
            out[table] = " OR ".join(terms)
    return out


def _table(name: str) -> str:
    return f"{CATALOG}.main.{quote_ident(name)}"


@dataclass(frozen=True)
class AccessResult:
    tables: dict[str, pa.Table]

    @property
    def rows(self) -> int:
        return sum(t.num_rows for t in self.tables.values())


def subject_access(lake: Lake, plate: str) -> AccessResult:
    """Every row about ``plate`` in every lake table (restricted ones included)."""
    found: dict[str, pa.Table] = {}
    for table, condition in plate_predicates(lake.columns()).items():
        found[table] = lake.execute(
            f"SELECT * FROM {_table(table)} WHERE {condition}", {"plate": plate}
        ).to_arrow_table()
    return AccessResult(found)


@dataclass(frozen=True)
class Rectified:
    event_id: str
    captured_at: datetime
    old_plate: str


def rectify(
    lake: Lake, event_id: str, new_plate: str, *, user: str, reason: str, now: datetime
) -> Rectified:
    """Correct the plate of one read; keep the original in ``plate_read_versions``.

    One transaction: read the row, insert its version (who, when, why, old value; partitioned
    by the read's own captured_at so it ages out with it), update ``plate`` and ``plate_raw``.
    """

    def once() -> Rectified:
        rows = lake.execute(
            f"SELECT captured_at, plate, plate_raw FROM {_table('plate_reads')} WHERE event_id = ?",
            [event_id],
        ).fetchall()
        if len(rows) != 1:
            raise UsageError(f"no single read with event id {event_id} (found {len(rows)})")
        captured_at, old_plate, old_raw = rows[0]
        if old_plate == new_plate:
            raise UsageError("the read already has that plate")
        lake.execute(
            f"INSERT INTO {_table(VERSIONS_TABLE)} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [event_id, captured_at, old_plate, old_raw, new_plate, now, user, reason],
        )
        lake.execute(
            f"UPDATE {_table('plate_reads')} SET plate = ?, plate_raw = ? WHERE event_id = ?",
            [new_plate, new_plate, event_id],
        )
        return Rectified(event_id, captured_at, str(old_plate))

    return lake.retrying("rectify", once, transaction=True)


@dataclass(frozen=True)
class Erased:
    deleted: dict[str, int] = field(default_factory=dict)
    purge_report: Any = None

    @property
    def rows(self) -> int:
        return sum(self.deleted.values())


def erase(
    lake: Lake,
    plate: str,
    *,
    now: datetime,
    purge: Callable[[Lake], Any],
    ledger: ErasureLedger,
) -> Erased:
    """Erase ``plate``: steps in this order, so no ingest worker can store it again after it.

    1. Record its keyed pseudonym in ``ledger`` (workers drop its rows from then on, also
       when they replay a topic from the start).
    2. Delete every row about it in every table (one transaction), then count them again on
       a fresh snapshot and delete again while any is left, up to :data:`ERASE_ATTEMPTS`
       deletes (then :class:`~pipeline.errors.LakeConflict`: run it again). A delete whose
       snapshot is older than a concurrent ``purge``'s rewrite and snapshot expiry commits
       without deleting what the rewrite moved (duckdb/ducklake#1472).
    3. ``purge``, which must leave no deleted row readable anywhere under the lake: rewrite
       the data files that carry deletes, expire snapshots, remove old files, purge the catalog.
    """
    ledger.record(plate, now=now)
    predicates = plate_predicates(lake.columns())

    def each_table(head: str) -> dict[str, int]:
        """``{head} <table> WHERE <its plate condition>`` on every table: its first column."""
        counts: dict[str, int] = {}
        for table, condition in predicates.items():
            row = lake.execute(
                f"{head} {_table(table)} WHERE {condition}", {"plate": plate}
            ).fetchone()
            counts[table] = int(row[0]) if row else 0
        return counts

    def once() -> dict[str, int]:
        return each_table("DELETE FROM")

    deleted = lake.retrying("erase", once, transaction=True)
    for attempt in range(1, ERASE_ATTEMPTS + 1):
        remaining = sum(each_table("SELECT count(*) FROM").values())
        if not remaining:
            break
        if attempt == ERASE_ATTEMPTS:
            raise LakeConflict(
                f"erase: {remaining} rows of the plate still there after {attempt} deletes "
                "(a purge or compaction running alongside?); run the erasure again"
            )
        logger.warning("erase: %d rows left after a committed delete; deleting again", remaining)
        again = lake.retrying("erase", once, transaction=True)
        deleted = {t: deleted.get(t, 0) + again.get(t, 0) for t in predicates}
    logger.info("erased %d rows of one plate; purging", sum(deleted.values()))
    return Erased(deleted, purge(lake))


@dataclass(frozen=True)
class Restriction:
    until: datetime
    capped: bool  # until was cut to the expiry of the newest row
    newest: datetime


def restrict(
    lake: Lake,
    plate: str,
    until: date,
    *,
    user: str,
    reason: str | None,
    now: datetime,
    retention_months: int,
) -> Restriction:
    """Hide ``plate`` from every role but dpo until ``until`` (capped at its data's expiry)."""
    requested = datetime.combine(until, time(), UTC)
    if requested <= now:
        raise UsageError("--until must lie in the future")

    def once() -> Restriction:
        newest = _newest(lake, plate)
        if newest is None:
            raise UsageError("no stored data about that plate: nothing to restrict")
        limit = min(requested, expiry(newest, retention_months))
        lake.execute(f"DELETE FROM {_table(RESTRICTIONS_TABLE)} WHERE plate = ?", [plate])
        lake.execute(
            f"INSERT INTO {_table(RESTRICTIONS_TABLE)} VALUES (?, ?, ?, ?, ?, ?)",
            [plate, now, limit, user, newest, reason],
        )
        return Restriction(limit, limit < requested, newest)

    return lake.retrying("restrict", once, transaction=True)


def unrestrict(lake: Lake, plate: str) -> int:
    """Lift a restriction; return how many restriction rows were removed (0 or 1)."""

    def once() -> int:
        row = lake.execute(
            f"DELETE FROM {_table(RESTRICTIONS_TABLE)} WHERE plate = ?", [plate]
        ).fetchone()
        return int(row[0]) if row else 0

    return lake.retrying("unrestrict", once)


def _newest(lake: Lake, plate: str) -> datetime | None:
    """The newest collection time of any personal row about ``plate``."""
    columns = lake.columns()
    newest: list[datetime] = []
    for table, condition in plate_predicates(columns).items():
        spec = DATA_TABLES.get(table)
        time_column = spec.collected_column if spec else None
        if time_column is None or time_column not in columns[table]:
            continue
        row = lake.execute(
            f"SELECT max({quote_ident(time_column)}) FROM {_table(table)} WHERE {condition}",
            {"plate": plate},
        ).fetchone()
        if row and row[0] is not None:
            newest.append(row[0])
    return max(newest) if newest else None
