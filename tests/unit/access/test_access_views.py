from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from pipeline.access.views import plan_views

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
TABLES = {
    "plate_reads": ["event_id", "captured_at", "plate", "plate_raw", "candidates", "lane"],
    "passengers": ["collected_at", "name"],
    "traffic_stats": ["day", "site_id", "n"],
    "subject_restrictions": ["plate", "restricted_until"],
    "plate_read_versions": ["event_id", "old_plate"],
    "ingest_offsets": ["topic"],
}


def _plan(role: str, tables: dict[str, list[str]] = TABLES):  # type: ignore[no-untyped-def]
    return plan_views(role, tables, now=NOW, analyst_max_age_days=90, retention_months=6)


def test_analyst_sees_pseudonyms_of_the_last_90_days_and_statistics() -> None:
    plan = _plan("analyst")
    assert plan.names == {"plate_reads", "traffic_stats"}
    sql = dict((v.name, v.sql) for v in plan.views)["plate_reads"]
    assert "anpr_pseudonym(plate) AS plate_pseudonym" in sql
    for hidden in ('"plate"', "plate_raw", "candidates"):
        assert hidden not in sql
    assert "2026-08-24T12:00:00+00:00" in sql  # 90 days before NOW
    assert 'plate NOT IN (SELECT plate FROM lake.main."subject_restrictions"' in sql


def test_investigator_sees_clear_rows_within_the_legal_limit() -> None:
    plan = _plan("investigator")
    assert plan.names == {"plate_reads", "passengers", "traffic_stats"}
    sql = dict((v.name, v.sql) for v in plan.views)
    assert sql["plate_reads"].startswith('SELECT * FROM lake.main."plate_reads"')
    assert "2026-05-22T12:00:00+00:00" in sql["plate_reads"]  # 6 calendar months
    assert "NOT IN" not in sql["passengers"]  # no plate column to restrict by


def test_investigator_passengers_hide_restricted_vehicle_plates_only() -> None:
    """Run the view on a real (in-memory) DuckDB: the passenger of a restricted vehicle is
    hidden, a passenger without a vehicle plate is not."""
    con = duckdb.connect(":memory:")
    con.execute("ATTACH ':memory:' AS lake")
    con.execute(
        "CREATE TABLE lake.main.passengers (collected_at TIMESTAMPTZ, name VARCHAR, "
        "vehicle_plate VARCHAR)"
    )
    con.execute("CREATE TABLE lake.main.subject_restrictions (plate VARCHAR, restricted_until "
                "TIMESTAMPTZ)")  # fmt: skip
    at = NOW - timedelta(days=1)
    con.executemany(
        "INSERT INTO lake.main.passengers VALUES (?, ?, ?)",
        [[at, "TESTNAME ONE", "TEST1"], [at, "TESTNAME TWO", "TEST2"], [at, "TESTNAME 3", None]],
    )
    con.execute(
        "INSERT INTO lake.main.subject_restrictions VALUES ('TEST1', ?)", [NOW + timedelta(days=9)]
    )
    tables = {
        "passengers": ["collected_at", "name", "vehicle_plate"],
        "subject_restrictions": ["plate", "restricted_until"],
    }
    sql = dict((v.name, v.sql) for v in _plan("investigator", tables).views)["passengers"]
    names = sorted(str(n) for (n,) in con.execute(f"SELECT name FROM ({sql})").fetchall())
    assert names == ["TESTNAME 3", "TESTNAME TWO"]


def test_statistics_and_dpo() -> None:
    assert _plan("statistics").names == {"traffic_stats"}
    dpo = _plan("dpo")
    assert dpo.activity_log
    assert dpo.names == set(TABLES) - {"ingest_offsets"} | {"activity_log"}
    assert all("WHERE" not in v.sql for v in dpo.views)


def test_no_restriction_filter_without_the_table_and_unknown_roles_fail() -> None:
    tables = {"plate_reads": TABLES["plate_reads"]}
    assert "NOT IN" not in _plan("analyst", tables).views[0].sql
    with pytest.raises(ValueError, match="unknown role"):
        _plan("admin")
