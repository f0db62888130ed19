"""purge(): rows DELETEd from a real DuckLake lake are in no byte of any file afterwards."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from lakehelp import Person, files_holding, passengers, plate_reads, write_people, write_reads

from pipeline.access.subjects import erase, rectify
from pipeline.config import TopicSettings
from pipeline.erasure import ErasureLedger
from pipeline.lake.catalog import Lake
from pipeline.maintain.purge import CLEANUP_SQL, EXPIRE_SQL, META, REWRITE_SQL, purge
from pipeline.pseudonym import Pseudonymiser

DAY1 = datetime(2026, 3, 1, 8, tzinfo=UTC)


def _day(start: datetime, n: int) -> list[datetime]:
    return [start + timedelta(minutes=7 * i) for i in range(n)]


def test_deleted_plates_leave_no_byte_under_the_lake(tmp_path: Path) -> None:
    lake_dir = tmp_path / "lake"
    with Lake.open(lake_dir) as lake:
        # AAA... sorts first: one deleted plate is the table-wide minimum in the catalog stats.
        write_reads(lake, plate_reads(_day(DAY1, 40), prefix="AAA"))
        write_reads(lake, plate_reads(_day(DAY1 + timedelta(days=1), 40), prefix="MMM"))
        write_reads(lake, plate_reads(_day(DAY1 + timedelta(days=2), 40), prefix="ZZZ"))
        gone = ["AAA00000", "ev-AAA-000000", "MMM00017", "ev-MMM-000017", "MMM 00017"]
        gone += [f"ZZZ{i:05d}" for i in range(40)] + [f"ev-ZZZ-{i:06d}" for i in range(40)]
        kept = ["AAA00001", "ev-AAA-000039", "MMM00016", "MMM00018"]
        lake.con.execute("DELETE FROM plate_reads WHERE plate IN ('AAA00000', 'MMM00017')")
        lake.con.execute("DELETE FROM plate_reads WHERE captured_at >= ?", [DAY1 + timedelta(2)])
        # The problem purge solves: the deleted values are still on disk after a DELETE.
        before = files_holding(lake_dir, gone)
        assert set(before) == set(gone)

        report = purge(lake, now=datetime.now(UTC))
        # Scanned while the catalog is still open (its WAL, if any, is on disk now).
        after = files_holding(lake_dir, gone + kept)

        assert lake.con.execute("SELECT count(*) FROM plate_reads").fetchone() == (78,)
        # Time travel reaches no snapshot from before the deletes.
        with pytest.raises(duckdb.InvalidInputException, match="No snapshot"):
            lake.con.execute("SELECT count(*) FROM plate_reads AT (VERSION => 4)")
    assert report.files_rewritten >= 1
    assert report.snapshots_expired >= 3
    assert {k: v for k, v in after.items() if k in gone} == {}
    assert set(kept) <= set(after)
    assert not any(
        p.name.endswith(("-wal", "-journal")) and p.stat().st_size for p in lake_dir.iterdir()
    )


def test_purge_twice_is_a_no_op_and_the_lake_stays_readable(tmp_path: Path) -> None:
    with Lake.open(tmp_path / "lake") as lake:
        write_reads(lake, plate_reads(_day(DAY1, 30), prefix="BBB"))
        lake.con.execute("DELETE FROM plate_reads WHERE plate = 'BBB00003'")
        purge(lake, now=datetime.now(UTC))
        again = purge(lake, now=datetime.now(UTC))
        assert (again.files_rewritten, again.files_removed, again.orphans_removed) == (0, 0, 0)
        write_reads(lake, plate_reads(_day(DAY1, 5), prefix="CCC"))
        # Table statistics were recomputed: pruning on them must still find every row.
        assert lake.con.execute(
            "SELECT count(*) FROM plate_reads WHERE plate >= 'BBB' AND plate < 'BBC'"
        ).fetchone() == (29,)
        assert lake.con.execute(
            "SELECT count(*) FROM plate_reads WHERE plate = 'CCC00004'"
        ).fetchone() == (1,)


def test_an_emptied_table_keeps_no_value_in_its_catalog_statistics(tmp_path: Path) -> None:
    # DuckLake narrows table-level min/max when it rewrites files, but not when a table's last
    # file goes: then only purge's recomputation takes the plate out of the catalog.
    lake_dir = tmp_path / "lake"
    with Lake.open(lake_dir) as lake:
        write_reads(lake, plate_reads(_day(DAY1, 20), prefix="DDD"))
        lake.con.execute("DELETE FROM plate_reads")
        purge(lake, now=datetime.now(UTC))
        assert files_holding(lake_dir, ["DDD00000", "DDD00019", "ev-DDD-000000"]) == {}
        write_reads(lake, plate_reads(_day(DAY1, 5), prefix="EEE"))
        write_reads(lake, plate_reads(_day(DAY1, 5), prefix="CCC"))
        assert lake.con.execute(
            "SELECT count(*) FROM plate_reads WHERE plate IN ('CCC00001', 'EEE00004')"
        ).fetchone() == (2,)


def test_an_erased_person_leaves_no_birth_date_or_capture_time_in_the_catalog(
    tmp_path: Path,
) -> None:
    # DuckLake widens table-level min/max on insert and narrows them only when it rewrites a
    # file, not when it drops one whose every row was deleted: the erased person's birth date
    # stays the table's minimum and the erased car's last read the table's latest capture
    # time, in the catalog, until purge recomputes every column's statistics.
    lake_dir = tmp_path / "lake"
    kept = Person("KEEPSEN", "KP1234567", date(1985, 6, 15), "KEP12345", DAY1 + timedelta(hours=1))
    gone = Person("GONEMANN", "GD7654321", date(1931, 2, 3), "GON98765", DAY1 + timedelta(days=1))
    gone_last = datetime(2026, 3, 2, 23, 59, 58, 500_000, tzinfo=UTC)
    gone_times = [DAY1 + timedelta(days=1, minutes=30), gone_last]
    needles = {
        "surname": gone.surname,
        "document": gone.document_number,
        "birth date (catalog)": "1931-02-03",
        "birth date (Parquet)": repr(gone.date_of_birth),
        "plate": gone.vehicle_plate,
        "collection time (catalog)": "2026-03-02 08:00:00",
        "capture time (catalog)": "2026-03-02 23:59:58.5",
        "capture time (Parquet)": repr(gone_last)[: -len(", tzinfo=datetime.timezone.utc)")],
    }
    with Lake.open(lake_dir) as lake:
        # The erased person's rows are on a day of their own: whole files that go.
        write_people(lake, passengers([kept]))
        write_people(lake, passengers([gone]))
        write_reads(lake, plate_reads(_day(DAY1, 3), prefix="KEP"))
        write_reads(lake, plate_reads(gone_times, prefix="GON", plates=[gone.vehicle_plate] * 2))
        ledger = ErasureLedger(
            tmp_path / "erasure-ledger.json", lambda: Pseudonymiser(bytes(32)), TopicSettings()
        )
        erased = erase(lake, gone.vehicle_plate, now=datetime.now(UTC), ledger=ledger,
                       purge=lambda lk: purge(lk, now=datetime.now(UTC)))  # fmt: skip
        after = files_holding(lake_dir, [*needles.values(), kept.surname, "1985-06-15"])
        by_birth = lake.con.execute(
            "SELECT surname FROM passengers WHERE date_of_birth = ?", [kept.date_of_birth]
        ).fetchall()
        oldest = lake.con.execute("SELECT min(date_of_birth) FROM passengers").fetchone()
        reads = lake.con.execute(
            "SELECT count(*), max(captured_at) FROM plate_reads WHERE captured_at >= ?", [DAY1]
        ).fetchone()
        # The next insert widens the recomputed statistics correctly.
        write_people(lake, passengers([Person("LATER", "LT1", date(1970, 1, 1), "LAT1", DAY1)]))
        later = lake.con.execute(
            "SELECT count(*) FROM passengers WHERE date_of_birth < DATE '1980-01-01'"
        ).fetchone()
    assert (erased.deleted["passengers"], erased.deleted["plate_reads"]) == (1, 2)
    assert {what: after[n] for what, n in needles.items() if n in after} == {}
    assert {kept.surname, "1985-06-15"} <= set(after)  # the scan finds what is still there
    assert by_birth == [(kept.surname,)]
    assert oldest == (kept.date_of_birth,)
    assert reads == (3, DAY1 + timedelta(minutes=14))
    assert later == (1,)
    assert _table_stats(lake_dir, "passengers", "date_of_birth") == ("1970-01-01", "1985-06-15")


def test_an_erasure_that_overlaps_a_purge_still_deletes_every_row(tmp_path: Path) -> None:
    """duckdb/ducklake#1472: a delete whose snapshot is older than a purge's rewrite and
    snapshot expiry commits without deleting the rows the rewrite moved. erase() counts again
    after its delete and deletes again while any row is left."""
    lake_dir = tmp_path / "lake"
    plate = "OVL00003"
    with Lake.open(lake_dir) as lake:
        write_reads(lake, plate_reads(_day(DAY1, 10), prefix="OVL"))
        lake.con.execute("DELETE FROM plate_reads WHERE plate = 'OVL00001'")  # to be rewritten
        ledger = ErasureLedger(
            tmp_path / "erasure-ledger.json", lambda: Pseudonymiser(bytes(32)), TopicSettings()
        )
        execute, first = lake.execute, [True]

        def overlapped(sql: str, params: object = None) -> duckdb.DuckDBPyConnection:
            """The erasure's first delete runs on a snapshot taken before another process
            (here: another connection) ran purge's rewrite, expiry and cleanup steps."""
            if first and sql.startswith("DELETE"):
                first.clear()
                execute("SELECT count(*) FROM plate_reads").fetchall()  # the snapshot
                # every snapshot but the newest is gone
                assert _purge_steps_elsewhere(lake_dir) == 1
            return execute(sql, params)

        lake.execute = overlapped  # type: ignore[method-assign]
        try:
            erased = erase(lake, plate, now=datetime.now(UTC), ledger=ledger,
                           purge=lambda lk: purge(lk, now=datetime.now(UTC)))  # fmt: skip
        finally:
            lake.execute = execute  # type: ignore[method-assign]
        left = lake.con.execute(
            "SELECT count(*) FROM plate_reads WHERE plate = ?", [plate]
        ).fetchone()
        total = lake.con.execute("SELECT count(*) FROM plate_reads").fetchone()
    assert first == []  # the overlap happened
    assert left == (0,)
    assert erased.deleted["plate_reads"] == 1
    assert total == (8,)


def test_a_rectification_that_overlaps_a_purge_leaves_only_the_new_plate(tmp_path: Path) -> None:
    """The case of duckdb/ducklake#1472 with rectify's UPDATE instead of erase's DELETE: its
    snapshot is older than a purge's rewrite and snapshot expiry. On DuckLake 1.5.5 the UPDATE
    commits as a write conflict (unlike the DELETE), and rectify's retry reads the rewritten
    row; this guards the outcome: one row, with the new plate, and one version."""
    lake_dir = tmp_path / "lake"
    event = "ev-OVL-000003"
    with Lake.open(lake_dir) as lake:
        write_reads(lake, plate_reads(_day(DAY1, 10), prefix="OVL"))
        lake.con.execute("DELETE FROM plate_reads WHERE plate = 'OVL00001'")  # to be rewritten
        execute, first = lake.execute, [True]

        def overlapped(sql: str, params: object = None) -> duckdb.DuckDBPyConnection:
            """The rectification's UPDATE runs on the snapshot of its SELECT, taken before
            another connection ran purge's rewrite, expiry and cleanup steps."""
            if first and sql.startswith("UPDATE"):
                first.clear()
                _purge_steps_elsewhere(lake_dir)
            return execute(sql, params)

        lake.execute = overlapped  # type: ignore[method-assign]
        try:
            rectified = rectify(
                lake, event, "RCT00003", user="dpo", reason="test", now=datetime.now(UTC)
            )
        finally:
            lake.execute = execute  # type: ignore[method-assign]
        rows = lake.con.execute(
            "SELECT plate, plate_raw FROM plate_reads WHERE event_id = ?", [event]
        ).fetchall()
        versions = lake.con.execute(
            "SELECT old_plate, new_plate FROM plate_read_versions WHERE event_id = ?", [event]
        ).fetchall()
        total = lake.con.execute("SELECT count(*) FROM plate_reads").fetchone()
    assert first == []  # the overlap happened
    assert rows == [("RCT00003", "RCT00003")]
    assert rectified.old_plate == "OVL00003"
    assert versions == [("OVL00003", "RCT00003")]
    assert total == (9,)


def _purge_steps_elsewhere(lake_dir: Path) -> int:
    """Purge's rewrite, snapshot expiry and cleanup, on another connection to the lake; the
    snapshots left."""
    with Lake.open(lake_dir) as nightly:
        nightly.execute(REWRITE_SQL).fetchall()
        nightly.execute(EXPIRE_SQL, [datetime.now(UTC) + timedelta(seconds=1)]).fetchall()
        nightly.execute(CLEANUP_SQL).fetchall()
        return _snapshots(nightly)


def _snapshots(lake: Lake) -> int:
    (count,) = lake.execute(f"SELECT count(*) FROM {META}.ducklake_snapshot").fetchone() or (0,)
    return int(str(count))


def _table_stats(lake_dir: Path, table: str, column: str) -> tuple[object, ...] | None:
    """The catalog's table-level (min, max) of one column, read with the lake closed."""
    with closing(sqlite3.connect(f"file:{lake_dir / 'catalog.sqlite'}?mode=ro", uri=True)) as db:
        return db.execute(
            "SELECT s.min_value, s.max_value FROM ducklake_table_column_stats s "
            "JOIN ducklake_column c USING (table_id, column_id) "
            "JOIN ducklake_table t USING (table_id) "
            "WHERE t.table_name = ? AND c.column_name = ? AND c.end_snapshot IS NULL "
            "AND t.end_snapshot IS NULL",
            [table, column],
        ).fetchone()


def _inlined_row_versions(lake: Lake) -> int:
    """Row versions (current and old) DuckLake keeps inlined in the catalog, all tables."""
    tables = lake.con.execute(
        f"SELECT table_name FROM {META}.ducklake_inlined_data_tables"
    ).fetchall()
    total = 0
    for (name,) in tables:
        (n,) = lake.con.execute(f'SELECT count(*) FROM {META}."{name}"').fetchone() or (0,)
        total += int(n)
    return total


def test_purge_flushes_the_offset_versions_every_commit_leaves_inlined(tmp_path: Path) -> None:
    with Lake.open(tmp_path / "lake") as lake:
        for i in range(20):
            write_reads(lake, plate_reads(_day(DAY1, 2), prefix=f"F{chr(65 + i)}"))
        offsets = lake.stored_offsets("test-ingest", "anpr.plate-reads")
        assert _inlined_row_versions(lake) >= 20  # one offsets row version per commit
        purge(lake, now=datetime.now(UTC))
        assert _inlined_row_versions(lake) == 0
        assert lake.stored_offsets("test-ingest", "anpr.plate-reads") == offsets
        write_reads(lake, plate_reads(_day(DAY1, 2), prefix="FZ"))  # commits go on
        assert lake.con.execute("SELECT count(*) FROM plate_reads").fetchone() == (42,)
