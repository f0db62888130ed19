"""purge(): rows DELETEd from a real DuckLake lake are in no byte of any file afterwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from lakehelp import files_holding, plate_reads, write_reads

from pipeline.lake.catalog import Lake
from pipeline.maintain.purge import purge

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
