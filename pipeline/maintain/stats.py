"""Anonymous statistics for closed days: traffic per hour, round trips per ISO week.

``traffic_stats``: passages per UTC hour x site x direction x vehicle class x plate country.
``trip_stats``: round trips (an exit followed by the vehicle's next passage, an entry, within
30 days, at any sites) per ISO week of the exit x exit site x entry site x duration bucket;
exits with no entry as the next passage within 30 days count under entry site ``-`` and
duration ``no_return``. A week is computed once its last exit's 30-day window has closed.

Both are published as two-way blocks with totals (:mod:`pipeline.maintain.suppress`): for
traffic one block per (hour, site, direction) of vehicle class x plate country, for trips one
block per (week, exit site) of entry site x duration. ``*`` marks a total. Small cells are
suppressed (value NULL, ``suppressed`` true) so that none can be derived.

No statistic carries a plate, event id or passage id; they are kept for ever. A period is
(re)computed when it is closed and has no statistics, or when its source rows changed since
(late arrivals, erasure): the period's signature (:class:`~pipeline.maintain.inventory.DayFiles`)
is stored beside the statistics in ``stats_periods``. Periods whose raw data expired are never
recomputed, so their statistics stay as they were.

Statistics read ``plate_reads`` only through :func:`plate_reads_source`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

import pyarrow as pa

from pipeline.lake.catalog import CATALOG, Lake, create_table_sql, quote_ident
from pipeline.maintain.suppress import Key, suppress_block
from pipeline.schemas import UTC_TS

logger = logging.getLogger(__name__)

TRAFFIC, TRIPS = "traffic", "trips"
TRIP_WINDOW: Final = timedelta(days=30)
NO_RETURN: Final = "no_return"
NO_SITE: Final = "-"
DURATION_BUCKETS: Final = ("lt3h", "3-6h", "6-24h", "1-3d", "3-7d", "7-30d")

TRAFFIC_STATS = pa.schema(
    [
        pa.field("day", pa.date32(), nullable=False),
        pa.field("hour", UTC_TS, nullable=False),
        pa.field("site_id", pa.string(), nullable=False),
        pa.field("direction", pa.string(), nullable=False),
        pa.field("vehicle_class", pa.string(), nullable=False),  # '*': all classes
        pa.field("plate_country", pa.string(), nullable=False),  # '*': all countries
        pa.field("passages", pa.int64(), nullable=True),  # NULL: suppressed
        pa.field("suppressed", pa.bool_(), nullable=False),
        pa.field("computed_at", UTC_TS, nullable=False),
    ]
)
TRIP_STATS = pa.schema(
    [
        pa.field("week_start", pa.date32(), nullable=False),  # Monday of the ISO week
        pa.field("iso_week", pa.string(), nullable=False),  # 2026-W09
        pa.field("exit_site", pa.string(), nullable=False),
        pa.field("entry_site", pa.string(), nullable=False),  # '*': all, '-': no return
        pa.field("duration", pa.string(), nullable=False),  # bucket, '*' or no_return
        pa.field("trips", pa.int64(), nullable=True),  # NULL: suppressed
        pa.field("suppressed", pa.bool_(), nullable=False),
        pa.field("computed_at", UTC_TS, nullable=False),
    ]
)
STATS_PERIODS = pa.schema(
    [
        pa.field("kind", pa.string(), nullable=False),  # traffic | trips
        pa.field("period_start", pa.date32(), nullable=False),
        pa.field("signature", pa.string(), nullable=False),
        pa.field("computed_at", UTC_TS, nullable=False),
    ]
)
STATS_TABLES: Mapping[str, pa.Schema] = {
    "traffic_stats": TRAFFIC_STATS,
    "trip_stats": TRIP_STATS,
    "stats_periods": STATS_PERIODS,
}
_PERIOD_COLUMN = {TRAFFIC: ("traffic_stats", "day"), TRIPS: ("trip_stats", "week_start")}


# -- the one source -----------------------------------------------------------------------


def plate_reads_source() -> str:
    """The plate reads statistics may use, as a SQL relation.

    Every statistic reads ``plate_reads`` through this one relation, so a rule such as
    "leave out restricted plates" is added here and nowhere else.
    """
    # Restricted plates (pipeline/access/subjects.py) are left out while the restriction holds.
    return (
        f"(SELECT * FROM {CATALOG}.plate_reads WHERE plate NOT IN "
        f"(SELECT plate FROM {CATALOG}.subject_restrictions WHERE restricted_until > now()))"
    )


def passages_sql() -> str:
    """One row per passage captured in ``[?, ?)``: the reads grouped by passage id (a read
    without one is its own passage), at the time, plate, class and country of its first read.
    """
    return f"""
        SELECT site_id, direction, min(captured_at) AS passed_at,
               arg_min(plate, captured_at) AS plate,
               arg_min(plate_country, captured_at) AS plate_country,
               arg_min(coalesce(vehicle_class, 'unknown'), captured_at) AS vehicle_class
        FROM {plate_reads_source()} AS r
        WHERE captured_at >= ? AND captured_at < ?
        GROUP BY site_id, direction, coalesce(CAST(passage_id AS VARCHAR), 'e:' || event_id)
    """


# -- planning (pure) ----------------------------------------------------------------------


@dataclass(frozen=True)
class StatsPlan:
    traffic_days: tuple[tuple[date, str], ...]  # (day, signature) to (re)compute
    trip_weeks: tuple[tuple[date, str], ...]  # (Monday, signature) to (re)compute

    @property
    def pending(self) -> int:
        return len(self.traffic_days) + len(self.trip_weeks)


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def week_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def trip_window_days(week: date) -> list[date]:
    """The days whose passages a trip week needs: its 7 days and 30 more."""
    return [week + timedelta(days=i) for i in range(7 + TRIP_WINDOW.days)]


def plan_statistics(
    *,
    as_of: datetime,
    grace: timedelta,
    first_kept_day: date,
    day_signatures: Mapping[date, str],
    done: Mapping[tuple[str, date], str],
) -> StatsPlan:
    """Which closed periods need statistics.

    A day is closed once ``as_of`` is ``grace`` past its end. A closed day with data and no
    statistics is computed even if retention deletes it in this run; one with statistics is
    recomputed when its signature changed, unless it is older than ``first_kept_day`` (its
    data is expiring; its statistics stay as they are). A week is closed once its last day
    plus 30 days plus ``grace`` has passed, and is (re)computed on the same rules with the
    signature of all its window's days.
    """
    days = []
    for day in sorted(day_signatures):
        if as_of < day_start(day) + timedelta(days=1) + grace:
            continue
        sig = day_signatures[day]
        have = done.get((TRAFFIC, day))
        if have is None or (have != sig and day >= first_kept_day):
            days.append((day, sig))
    weeks = []
    for week in sorted({week_of(d) for d in day_signatures}):
        if as_of < day_start(week) + timedelta(days=7) + TRIP_WINDOW + grace:
            continue
        sig = "/".join(day_signatures.get(d, "") for d in trip_window_days(week))
        have = done.get((TRIPS, week))
        if have is None or (have != sig and week >= first_kept_day):
            weeks.append((week, sig))
    return StatsPlan(tuple(days), tuple(weeks))


# -- suppression into published rows (pure) ------------------------------------------------


def publish_blocks(
    counts: pa.Table, block_keys: Sequence[str], row: str, col: str, value: str, k: int
) -> list[dict[str, object]]:
    """Rows of published cells: for each block (``block_keys``) the suppressed two-way table
    of ``row`` x ``col`` with totals; ``value`` holds the count or None, plus ``suppressed``."""
    blocks: dict[tuple[object, ...], dict[Key, int]] = {}
    for rec in counts.to_pylist():
        key = tuple(rec[name] for name in block_keys)
        cell = (str(rec[row]), str(rec[col]))
        block = blocks.setdefault(key, {})
        block[cell] = block.get(cell, 0) + int(rec["n"])
    out: list[dict[str, object]] = []
    for key in sorted(blocks, key=repr):
        for (r, c), n in sorted(suppress_block(blocks[key], k).items()):
            rec = dict(zip(block_keys, key, strict=True))
            rec.update({row: r, col: c, value: n, "suppressed": n is None})
            out.append(rec)
    return out


def traffic_rows(counts: pa.Table, *, day: date, k: int, computed_at: datetime) -> pa.Table:
    """``traffic_stats`` rows of one day from counts per hour, site, direction, class and
    country (column ``n``)."""
    rows = publish_blocks(
        counts, ("hour", "site_id", "direction"), "vehicle_class", "plate_country", "passages", k
    )
    for rec in rows:
        rec["day"] = day
        rec["computed_at"] = computed_at
    return pa.Table.from_pylist(rows, schema=TRAFFIC_STATS)


def trip_rows(counts: pa.Table, *, week: date, k: int, computed_at: datetime) -> pa.Table:
    """``trip_stats`` rows of one week from counts per exit site, entry site and duration."""
    rows = publish_blocks(counts, ("exit_site",), "entry_site", "duration", "trips", k)
    year, num, _ = week.isocalendar()
    for rec in rows:
        rec["week_start"] = week
        rec["iso_week"] = f"{year}-W{num:02d}"
        rec["computed_at"] = computed_at
    return pa.Table.from_pylist(rows, schema=TRIP_STATS)


# -- reading the lake ----------------------------------------------------------------------


def _bucket_sql(seconds: str) -> str:
    bounds = (3 * 3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400)
    whens = " ".join(
        f"WHEN {seconds} < {b} THEN '{label}'"
        for b, label in zip(bounds, DURATION_BUCKETS, strict=False)
    )
    return f"CASE {whens} ELSE '{DURATION_BUCKETS[-1]}' END"


def traffic_counts(lake: Lake, day: date) -> pa.Table:
    start = day_start(day)
    return lake.execute(
        f"""
        SELECT date_trunc('hour', passed_at) AS hour, site_id, direction, vehicle_class,
               plate_country, count(*) AS n
        FROM ({passages_sql()}) GROUP BY ALL
        """,
        [start, start + timedelta(days=1)],
    ).to_arrow_table()


def trip_counts(lake: Lake, week: date) -> pa.Table:
    start = day_start(week)
    returned = "next_dir = 'entry' AND next_at - passed_at <= INTERVAL 30 DAY"
    seconds = "(epoch(next_at) - epoch(passed_at))"
    return lake.execute(
        f"""
        WITH p AS ({passages_sql()}),
        seq AS (
            SELECT site_id, direction, passed_at,
                   lead(direction) OVER w AS next_dir, lead(site_id) OVER w AS next_site,
                   lead(passed_at) OVER w AS next_at
            FROM p WINDOW w AS (PARTITION BY plate ORDER BY passed_at, site_id))
        SELECT site_id AS exit_site,
               CASE WHEN {returned} THEN next_site ELSE '{NO_SITE}' END AS entry_site,
               CASE WHEN {returned} THEN {_bucket_sql(seconds)} ELSE '{NO_RETURN}' END
                   AS duration,
               count(*) AS n
        FROM seq WHERE direction = 'exit' AND passed_at >= ? AND passed_at < ?
        GROUP BY ALL
        """,
        [start, start + timedelta(days=7) + TRIP_WINDOW, start, start + timedelta(days=7)],
    ).to_arrow_table()


def stored_periods(lake: Lake) -> dict[tuple[str, date], str]:
    return {
        (str(kind), start): str(sig)
        for kind, start, sig in lake.execute(
            f"SELECT kind, period_start, signature FROM {CATALOG}.stats_periods"
        ).fetchall()
    }


# -- writing -------------------------------------------------------------------------------


def ensure_stats_tables(lake: Lake) -> None:
    """Create the statistics tables if missing (one transaction, retried on conflict)."""

    def once() -> None:
        for name, schema in STATS_TABLES.items():
            lake.execute(create_table_sql(name, schema))

    lake.retrying("create statistics tables", once, transaction=True)


def _same(lake: Lake, table: str, column: str, start: date, rows: pa.Table) -> bool:
    keep = [n for n in rows.schema.names if n != "computed_at"]
    cols = ", ".join(quote_ident(n) for n in keep)
    stored = lake.execute(
        f"SELECT {cols} FROM {CATALOG}.{quote_ident(table)} WHERE {quote_ident(column)} = ?",
        [start],
    ).fetchall()
    fresh = [tuple(r[n] for n in keep) for r in rows.to_pylist()]
    return sorted(stored, key=repr) == sorted(fresh, key=repr)


def write_period(
    lake: Lake,
    kind: str,
    start: date,
    rows: pa.Table,
    signature: str,
    computed_at: datetime,
) -> bool:
    """Replace one period's statistics and its signature in one transaction.

    Returns False when the statistics were already identical (only the signature moved).
    """
    table, column = _PERIOD_COLUMN[kind]
    unchanged = _same(lake, table, column, start, rows)

    def once() -> None:
        if not unchanged:
            lake.execute(f"DELETE FROM {CATALOG}.{table} WHERE {quote_ident(column)} = ?", [start])
            if rows.num_rows:
                lake.insert_rows(table, rows)
        lake.execute(
            f"DELETE FROM {CATALOG}.stats_periods WHERE kind = ? AND period_start = ?",
            [kind, start],
        )
        lake.execute(
            f"INSERT INTO {CATALOG}.stats_periods VALUES (?, ?, ?, ?)",
            [kind, start, signature, computed_at],
        )

    lake.retrying(f"statistics {kind} {start}", once, transaction=True)
    return not unchanged


def compute_period(
    lake: Lake, kind: str, start: date, *, k: int, computed_at: datetime
) -> pa.Table:
    if kind == TRAFFIC:
        return traffic_rows(traffic_counts(lake, start), day=start, k=k, computed_at=computed_at)
    return trip_rows(trip_counts(lake, start), week=start, k=k, computed_at=computed_at)
