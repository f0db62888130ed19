"""The analyst's and the statistics role's statements run on a copy of their views that can
reach nothing else (docs/adr/0008, layer 3): with both checks bypassed, the lake's tables, its
catalog, its files and the SQLite extension are out of reach; and the copy follows the lake
(new rows appended, a restriction or a deletion copied again) before every statement."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from lakehelp import plate_reads, write_reads

from pipeline.access.derived import SharedCopies
from pipeline.access.session import SCHEMA, AccessSession
from pipeline.access.subjects import restrict
from pipeline.config import load_settings
from pipeline.lake.catalog import Lake
from pipeline.lake.extensions import extension_paths
from pipeline.pseudonym import Pseudonymiser
from pipeline.service.handlers import Service
from pipeline.service.peers import Peer

NOW = datetime.now(UTC).replace(microsecond=0)
PLATES = ["DRV1001", "DRV1002", "DRV1003", "DRV1004"]
PSEUDO = Pseudonymiser(b"k" * 32)


@pytest.fixture
def lake_dir(tmp_path: Path) -> Path:
    path = tmp_path / "lake"
    times = [NOW - timedelta(days=1, minutes=5 * i) for i in range(len(PLATES))]
    with Lake.open(path) as lake:
        write_reads(lake, plate_reads(times, prefix="DRV", plates=PLATES))
    return path


def _copies(lake_dir: Path) -> SharedCopies:
    return SharedCopies(schema=SCHEMA, temp_parent=lake_dir.parent / "query-tmp")


def _open(
    lake_dir: Path, role: str, now: datetime = NOW, copies: SharedCopies | None = None
) -> AccessSession:
    return AccessSession.open(
        lake_dir, role, now=now, analyst_max_age_days=90, retention_months=6, pseudo=PSEUDO,
        temp_parent=lake_dir.parent / "query-tmp", copies=copies,
    )  # fmt: skip


@pytest.mark.parametrize("role", ["analyst", "statistics"])
def test_past_both_checks_the_copy_reaches_no_lake_catalog_file_or_extension(
    lake_dir: Path, role: str
) -> None:
    catalog = lake_dir / "catalog.sqlite"
    ducklake = extension_paths()["ducklake"]
    # A Python variable holding clear plates, in the frame that runs the statements.
    stored = plate_reads([NOW], prefix="PYV", plates=["PYV0001"])
    attempts = [
        "SELECT plate FROM lake.plate_reads",
        "SELECT plate FROM lake.main.plate_reads",
        "SELECT min_value, max_value FROM __ducklake_metadata_lake.ducklake_file_column_stats",
        f"SELECT * FROM sqlite_scan('{catalog}', 'ducklake_file_column_stats')",
        f"ATTACH '{catalog}' AS c (TYPE sqlite, READ_ONLY)",
        f"ATTACH 'ducklake:sqlite:{catalog}' AS again (READ_ONLY)",
        f"ATTACH '{lake_dir}/other.duckdb' AS other",
        f"LOAD '{ducklake}'",
        "INSTALL sqlite",
        f"SELECT * FROM read_parquet('{lake_dir}/data/**/*.parquet')",
        f"SELECT * FROM '{lake_dir}/data/**/*.parquet'",
        f"SELECT * FROM read_blob('{catalog}')",
        f"SELECT * FROM glob('{lake_dir}/**')",
        "SELECT * FROM stored",
        "SET enable_external_access = true",
        "SET allowed_directories = ['/']",
        "SET python_enable_replacements = true",
    ]
    with _open(lake_dir, role) as session:
        assert session.derived is not None
        con = session.con
        for sql in attempts:
            with pytest.raises(duckdb.Error):
                con.execute(sql)
        rows = con.execute("SELECT database_name FROM duckdb_databases()").fetchall()
        databases = {r[0] for r in rows}
        assert databases == {"memory", "system", "temp"}
        if role == "analyst":  # its view still answers, with no clear plate in any column
            rows = session.run("SELECT * FROM plate_reads")
            assert rows.num_rows == len(PLATES)
            assert not [p for p in PLATES if p in repr(rows.to_pylist())]
            assert stored.num_rows == 1


def _pseudonyms(session: AccessSession) -> set[str]:
    table = session.run("SELECT plate_pseudonym FROM plate_reads")
    return set(table["plate_pseudonym"].to_pylist())


def test_the_copy_follows_the_lake_before_each_statement(lake_dir: Path) -> None:
    with _open(lake_dir, "analyst") as session:
        derived = session.derived
        assert derived is not None
        assert _pseudonyms(session) == {PSEUDO.one(p) for p in PLATES}
        # New rows (ingest): appended, not copied again.
        later = ["DRV2001", "DRV2002"]
        with Lake.open(lake_dir) as lake:
            write_reads(lake, plate_reads([NOW - timedelta(hours=1)] * 2, prefix="DRW",
                                          plates=later))  # fmt: skip
        assert _pseudonyms(session) == {PSEUDO.one(p) for p in PLATES + later}
        assert derived.copies == 1
        # A restriction hides rows already copied: copied again without them.
        with Lake.open(lake_dir) as lake:
            restrict(lake, PLATES[0], date.today() + timedelta(days=30), user="dora",
                     reason=None, now=NOW, retention_months=6)  # fmt: skip
        assert PSEUDO.one(PLATES[0]) not in _pseudonyms(session)
        assert derived.copies == 2
        # A deletion (erasure, retention) too.
        with Lake.open(lake_dir) as lake:
            lake.execute("DELETE FROM plate_reads WHERE plate = ?", [PLATES[1]])
        assert _pseudonyms(session) == {PSEUDO.one(p) for p in [*PLATES[2:], *later]}
        assert derived.copies == 3
        # Nothing new: nothing copied.
        _pseudonyms(session)
        assert derived.copies == 3


def test_the_copy_spills_to_a_private_folder_removed_on_close(lake_dir: Path) -> None:
    session = _open(lake_dir, "analyst")
    assert session.derived is not None
    folder = session.derived.temp_dir
    assert folder.parent == lake_dir.parent / "query-tmp"
    assert folder.stat().st_mode & 0o777 == 0o700
    (spilled,) = session.con.execute("SELECT current_setting('temp_directory')").fetchone() or ()
    assert Path(spilled) == folder
    session.close()
    assert not folder.exists()


def test_later_sessions_share_the_copy_and_move_its_clock(lake_dir: Path) -> None:
    # One row about to leave the 90-day window, one restriction about to end.
    old, restricted = "DRV3001", PLATES[0]
    with Lake.open(lake_dir) as lake:
        write_reads(lake, plate_reads([NOW - timedelta(days=89, hours=12)], prefix="DRX",
                                      plates=[old]))  # fmt: skip
        restrict(lake, restricted, (NOW + timedelta(days=2)).date(), user="dora", reason=None,
                 now=NOW, retention_months=6)  # fmt: skip
    copies = _copies(lake_dir)
    try:
        first = _open(lake_dir, "analyst", copies=copies)
        derived = first.derived
        assert derived is not None
        seen = _pseudonyms(first)
        assert PSEUDO.one(old) in seen
        assert PSEUDO.one(restricted) not in seen
        # A day later: the old row has left the window, the restriction still holds.
        with _open(lake_dir, "analyst", NOW + timedelta(days=1), copies) as later:
            assert later.derived is derived
            assert PSEUDO.one(old) not in _pseudonyms(later)
            assert derived.copies == 1
            # The first session reads the same copy: the row is gone for it too.
            assert PSEUDO.one(old) not in _pseudonyms(first)
        first.close()
        # Past the restriction's end: its rows are shown again (copied again).
        with _open(lake_dir, "analyst", NOW + timedelta(days=3), copies) as after:
            assert after.derived is derived
            assert PSEUDO.one(restricted) in _pseudonyms(after)
            assert derived.copies == 2
    finally:
        copies.close()


def test_the_service_makes_the_copies_before_the_first_query(lake_dir: Path) -> None:
    # anpr serve runs warm() in a thread once it listens: the first analyst query then finds
    # the copy made (not made again), and roles nobody holds get none.
    env = {
        "ANPR_LAKE_PATH": str(lake_dir),
        "ANPR_STATE_DIR": str(lake_dir.parent / "state"),
        "ANPR_ACCESS_USERS": "ann=analyst,ivan=investigator",
    }
    service = Service(load_settings(None, env=env))
    try:
        assert service.copies.copy_of("analyst") is None
        service.warm()
        made = service.copies.copy_of("analyst")
        assert made is not None
        assert made.copies == 1
        assert service.copies.copy_of("statistics") is None
        ask = {"sql": "SELECT count(*) AS n FROM plate_reads", "reason": "control",
               "case": "CASE-1"}  # fmt: skip
        reply = service.handle(Peer("ann", "unix", "test"), {"op": "query", "args": ask})
        assert reply.exit == 0, reply.error
        assert reply.table is not None
        assert reply.table.to_pylist() == [{"n": len(PLATES)}]
        assert service.copies.copy_of("analyst") is made
        assert made.copies == 1
    finally:
        service.close()


def test_past_both_checks_a_statement_changes_nothing_another_session_reads(
    lake_dir: Path,
) -> None:
    # Every statement on a copy runs alone, read-only, and is rolled back: writes, leftovers
    # and DuckDB's logging (which would show other sessions' statements) do not stay.
    copies = _copies(lake_dir)
    try:
        with (
            _open(lake_dir, "analyst", copies=copies) as mine,
            _open(lake_dir, "analyst", copies=copies) as theirs,
        ):
            derived = mine.derived
            assert derived is not None
            for sql in (
                "DELETE FROM plate_reads",
                "UPDATE plate_reads SET plate_pseudonym = 'forged'",
                "DROP TABLE plate_reads",
                "CREATE TABLE memory.access.left_behind AS SELECT 1 AS x",
                "CREATE MACRO left_behind(x) AS x",
                "SELECT 1; DROP TABLE plate_reads",
            ):
                with pytest.raises(duckdb.Error):
                    derived.run(mine.con, sql)
            for sql in (
                "ATTACH ':memory:' AS spare",
                "CREATE TEMP TABLE spare AS SELECT 1 AS x",
                "CALL enable_logging()",
            ):
                derived.run(mine.con, sql)
            assert _pseudonyms(theirs) == {PSEUDO.one(p) for p in PLATES}
            tables = theirs.con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
            assert tables == [("plate_reads",)]
            rows = theirs.con.execute("SELECT database_name FROM duckdb_databases()").fetchall()
            assert {r[0] for r in rows} == {"memory", "system", "temp"}
            logging = theirs.con.execute("SELECT current_setting('enable_logging')").fetchone()
            assert logging == (False,)
            assert theirs.con.execute("SELECT count(*) FROM duckdb_logs()").fetchone() == (0,)
    finally:
        copies.close()


def test_a_copy_that_fails_leaves_the_one_before(
    lake_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _open(lake_dir, "analyst") as session:
        derived = session.derived
        assert derived is not None
        with Lake.open(lake_dir) as lake:
            lake.execute("DELETE FROM plate_reads WHERE plate = ?", [PLATES[0]])
        feed = derived._feed

        def broken(*args: object, **kwargs: object) -> None:
            raise duckdb.IOException("the lake went away mid-copy")

        monkeypatch.setattr(derived, "_feed", broken)
        with pytest.raises(duckdb.IOException):
            session.run("SELECT plate_pseudonym FROM plate_reads")
        # The old copy still answers (a statement that bypassed refresh sees it whole)...
        rows = session.con.execute("SELECT count(*) FROM plate_reads").fetchone()
        assert rows == (len(PLATES),)
        # ...and the next refresh copies again.
        monkeypatch.setattr(derived, "_feed", feed)
        assert _pseudonyms(session) == {PSEUDO.one(p) for p in PLATES[1:]}


def test_a_table_made_again_and_a_new_column_are_followed(lake_dir: Path) -> None:
    copies = _copies(lake_dir)
    try:
        with _open(lake_dir, "analyst", copies=copies) as session:
            assert _pseudonyms(session) == {PSEUDO.one(p) for p in PLATES}
            # The restrictions table dropped and made again (a new table id)...
            with Lake.open(lake_dir) as lake:
                lake.execute("DROP TABLE subject_restrictions")
            Lake.open(lake_dir).close()  # opening makes the missing table again
            assert _pseudonyms(session) == {PSEUDO.one(p) for p in PLATES}
            # ...then used: the copy follows the new table.
            with Lake.open(lake_dir) as lake:
                restrict(lake, PLATES[0], (NOW + timedelta(days=30)).date(), user="dora",
                         reason=None, now=NOW, retention_months=6)  # fmt: skip
            assert PSEUDO.one(PLATES[0]) not in _pseudonyms(session)
            # A column added to the lake, seen first by this session (its view lacks it)...
            with Lake.open(lake_dir) as lake:
                lake.execute("ALTER TABLE plate_reads ADD COLUMN lane_note VARCHAR")
            assert PSEUDO.one(PLATES[1]) in _pseudonyms(session)
        # ...then a later session's view shows it, and new rows keep coming.
        later = NOW + timedelta(minutes=1)
        with _open(lake_dir, "analyst", later, copies) as session:
            with Lake.open(lake_dir) as lake:
                write_reads(lake, plate_reads([NOW], prefix="DRN", plates=["DRV4001"]))
            table = session.run("SELECT plate_pseudonym, lane_note FROM plate_reads")
            assert PSEUDO.one("DRV4001") in table["plate_pseudonym"].to_pylist()
    finally:
        copies.close()
