import pytest

from pipeline.access.statement import Allowed, QueryRefused, check

VIEWS = Allowed(frozenset({"plate_reads", "traffic_stats"}))

ACCEPTED = [
    "SELECT * FROM plate_reads",
    "select site_id, count(*) from PLATE_READS group by all order by 2 desc limit 5",
    "FROM plate_reads SELECT lane",
    "SELECT column_name, column_type FROM (DESCRIBE plate_reads)",
    "SUMMARIZE plate_reads",
    "WITH x AS (SELECT * FROM plate_reads) SELECT count(*) FROM x",
    "WITH a AS (SELECT 1 AS n), b AS (SELECT n FROM a) SELECT * FROM b",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) FROM r",
    "SELECT * FROM plate_reads p JOIN traffic_stats t USING (site_id)",
    "SELECT lane, count(*) FILTER (WHERE lane > 1) FROM plate_reads GROUP BY lane",
    "SELECT row_number() OVER (PARTITION BY lane ORDER BY captured_at) FROM plate_reads",
    "SELECT [x * 2 FOR x IN [1, 2]], date_trunc('day', now())",
    "SELECT * FROM range(3)",
    "SELECT 1 UNION ALL SELECT 2",
    "SELECT * FROM plate_reads WHERE lane IN (SELECT lane FROM traffic_stats)",
    "SELECT unnest([1, 2])",
    "SELECT * FROM unnest([1, 2])",
    "PIVOT plate_reads ON lane IN (1, 2) USING count(*)",
    "SELECT 1\t+\r\n1",
]

REFUSED = [
    ("SELECT * FROM lake.plate_reads", "qualified"),
    ("SELECT * FROM lake.main.plate_reads", "qualified"),
    ("SELECT * FROM memory.access.plate_reads", "qualified"),
    ("SELECT * FROM read_parquet('lake/data/**/*.parquet')", "read_parquet"),
    ("SELECT * FROM '/etc/passwd'", "not one of your views"),
    ("SELECT * FROM glob('*')", "glob"),
    ("SELECT * FROM sqlite_scan('lake/catalog.sqlite', 'ducklake_data_file')", "sqlite_scan"),
    ("SELECT * FROM duckdb_databases()", "duckdb_databases"),
    ("SELECT * FROM duckdb_settings", "not one of your views"),
    ("SELECT current_setting('allowed_directories')", "current_setting"),
    ("SELECT getvariable('x')", "getvariable"),
    ("SELECT stats(plate) FROM plate_reads", "stats"),
    ("SELECT anpr_pseudonym('AB12345')", "anpr_pseudonym"),
    ("SELECT * FROM plate_reads AT (VERSION => 1)", "time travel"),
    ("SELECT * FROM query('SELECT 1')", "query"),
    (
        "WITH duckdb_databases AS (SELECT * FROM duckdb_databases) FROM duckdb_databases",
        "not one of your views",
    ),
    ("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", "not one of your views"),
    ("SELECT 1; SELECT 2", "one statement"),
    ("ATTACH 'x.db' AS x", "only SELECT"),
    ("COPY plate_reads TO 'out.csv'", "only SELECT"),
    ("SET enable_external_access = true", "only SELECT"),
    ("PRAGMA database_list", "SELECT"),
    ("INSTALL httpfs", "only SELECT"),
    ("SHOW TABLES", "SHOW"),
    ("SELECT * FROM (", "does not parse"),
    # The anchor of a recursive CTE does not see the CTE's own name (DuckDB's binder).
    (
        'WITH RECURSIVE "x.parquet" AS (SELECT * FROM "x.parquet" UNION ALL '
        'SELECT * FROM "x.parquet" WHERE false) SELECT * FROM "x.parquet"',
        "not one of your views",
    ),
    (
        "WITH RECURSIVE pg_settings AS (SELECT * FROM pg_settings UNION ALL "
        "SELECT * FROM pg_settings) SELECT * FROM pg_settings",
        "not one of your views",
    ),
    ("SELECT 1\x00; SELECT * FROM '/etc/passwd'", "U+0000"),
    ("SELECT 1 \x1b[2J", "U+001B"),
    ("SELECT '\x85'", "U+0085"),
    ("PIVOT plate_reads ON lane USING count(*)", "IN (...)"),
]


@pytest.mark.parametrize("sql", ACCEPTED)
def test_selects_over_the_views_pass(sql: str) -> None:
    assert check(sql, VIEWS) == sql


@pytest.mark.parametrize(("sql", "why"), REFUSED)
def test_escapes_are_refused_with_a_reason(sql: str, why: str) -> None:
    with pytest.raises(QueryRefused) as refused:
        check(sql, VIEWS)
    assert why in refused.value.why


def test_overlong_statements_are_refused() -> None:
    with pytest.raises(QueryRefused, match="longer than"):
        check("SELECT " + "1 + " * 10_000 + "1", VIEWS)
