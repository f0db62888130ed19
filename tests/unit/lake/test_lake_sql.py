"""The pure parts of the table layer: Arrow -> DuckDB DDL, identifiers, retry, conflicts."""

import random

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import Transient
from pipeline.lake.catalog import (
    CATALOG,
    DATA_TABLES,
    OffsetFenced,
    RetryPolicy,
    create_table_sql,
    duckdb_type,
    is_catalog_unreachable,
    is_write_conflict,
    partition_sql,
    quote_ident,
)
from pipeline.lake.tables import INGEST_OFFSETS
from pipeline.schemas import CANDIDATES, PLATE_READS


@pytest.mark.parametrize(
    ("arrow_type", "sql"),
    [
        (pa.string(), "VARCHAR"),
        (pa.int16(), "SMALLINT"),
        (pa.int32(), "INTEGER"),
        (pa.int64(), "BIGINT"),
        (pa.float32(), "REAL"),
        (pa.float64(), "DOUBLE"),
        (pa.timestamp("us", tz="UTC"), "TIMESTAMPTZ"),
    ],
)
def test_duckdb_type_maps_lake_types(arrow_type: pa.DataType, sql: str) -> None:
    assert duckdb_type(arrow_type) == sql


@pytest.mark.parametrize(
    "arrow_type",
    [
        pa.timestamp("us"),  # naive: every lake time is UTC
        pa.timestamp("us", tz="Europe/Oslo"),
        pa.timestamp("ns", tz="UTC"),
        pa.uint32(),
        pa.list_(pa.uint32()),
        pa.struct([pa.field("x", pa.float16())]),
    ],
)
def test_duckdb_type_refuses_other_types(arrow_type: pa.DataType) -> None:
    with pytest.raises(TypeError):
        duckdb_type(arrow_type)


def test_create_table_sql_keeps_nullability() -> None:
    sql = create_table_sql("plate_reads", PLATE_READS)
    assert sql.startswith(f'CREATE TABLE IF NOT EXISTS {CATALOG}."plate_reads" (')
    assert '"captured_at" TIMESTAMPTZ NOT NULL' in sql
    assert '"lane" SMALLINT NOT NULL' in sql
    assert '"confidence" REAL NOT NULL' in sql
    assert '"vehicle_class" VARCHAR,' in sql  # nullable in the Arrow schema


@pytest.mark.parametrize("schema", [PLATE_READS, INGEST_OFFSETS])
def test_created_table_round_trips_the_arrow_types(schema: pa.Schema) -> None:
    # A plain in-memory database under the lake's catalog name runs the same DDL.
    con = duckdb.connect(":memory:")
    con.execute(f"ATTACH ':memory:' AS {CATALOG}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(create_table_sql("t", schema))
    back = con.execute(f"SELECT * FROM {CATALOG}.t").to_arrow_table().schema
    assert [(f.name, f.type) for f in back] == [(f.name, f.type) for f in schema]
    not_null = {
        name
        for (name, notnull) in con.execute(
            "SELECT column_name, NOT is_nullable FROM duckdb_columns() WHERE table_name = 't'"
        ).fetchall()
        if notnull
    }
    assert not_null == {f.name for f in schema if not f.nullable}


@pytest.mark.parametrize(
    "name", ['plate_reads"; DROP TABLE x; --', "Plate_Reads", "a b", "", "9x", "x" * 64]
)
def test_quote_ident_refuses_anything_but_plain_names(name: str) -> None:
    with pytest.raises(ValueError):
        quote_ident(name)


def test_quote_ident_quotes_plain_names() -> None:
    assert quote_ident("plate_reads") == '"plate_reads"'


def test_plate_reads_partition_by_utc_day_of_capture() -> None:
    sql = partition_sql(DATA_TABLES["plate_reads"])
    assert sql is not None
    assert sql.endswith(
        'SET PARTITIONED BY (year("captured_at"), month("captured_at"), day("captured_at"))'
    )


@given(st.integers(min_value=0, max_value=60), st.integers(min_value=0))
def test_retry_delay_is_bounded_full_jitter(attempt: int, seed: int) -> None:
    policy = RetryPolicy(base_delay_s=0.01, max_delay_s=0.5, rng=random.Random(seed))
    delay = policy.delay(attempt)
    assert 0.0 <= delay <= min(0.5, 0.01 * 2**attempt)


@pytest.mark.parametrize(
    ("exc", "conflict"),
    [
        # What the SQLite catalog reports to the loser of two concurrent commits.
        (
            duckdb.TransactionException(
                "TransactionContext Error: Failed to commit: Failed to commit DuckLake "
                "transaction.\nFailed to flush changes into DuckLake: database is locked"
            ),
            True,
        ),
        (duckdb.Error("Failed to insert config option in DuckLake: database is locked"), True),
        (
            duckdb.TransactionException(
                'Transaction conflict - attempting to delete from table with index "2" - but '
                "another transaction has deleted from it"
            ),
            True,
        ),
        (duckdb.ConstraintException("NOT NULL constraint failed: plate_reads.plate"), False),
        (duckdb.InvalidInputException("attached in read-only mode!"), False),
        (RuntimeError("database is locked"), False),  # not from DuckDB
    ],
)
def test_is_write_conflict(exc: BaseException, conflict: bool) -> None:
    assert is_write_conflict(exc) is conflict


_LOST = 'Failed to execute query "ROLLBACK": server closed the connection unexpectedly'


@pytest.mark.parametrize(
    ("exc", "outage"),
    [
        (duckdb.Error(_LOST), True),
        (duckdb.IOException('Unable to connect to Postgres at "host=127.0.0.1"'), True),
        (duckdb.TransactionException(f"Failed to commit: {_LOST}"), True),
        # An invalidated database never recovers, whatever its message says: not an outage.
        (duckdb.FatalException(f"database has been invalidated: {_LOST}"), False),
        (duckdb.Error("Binder Error: column x not found"), False),
        (OSError(_LOST), False),
    ],
)
def test_is_catalog_unreachable(exc: BaseException, outage: bool) -> None:
    assert is_catalog_unreachable(exc) is outage


def test_offset_fenced_is_transient_and_carries_context() -> None:
    exc = OffsetFenced("anpr.plate-reads", 3, 100, 150)
    assert isinstance(exc, Transient)
    assert (exc.topic, exc.partition, exc.expected, exc.stored) == ("anpr.plate-reads", 3, 100, 150)


def test_nested_candidates_type_maps_to_a_list_of_structs() -> None:

    assert duckdb_type(CANDIDATES) == 'STRUCT("plate" VARCHAR, "confidence" REAL)[]'
