"""The attack corpus: statements that try to read past a role's views, in classes.

Fixed statements live in tests/fixtures/attacks/<class>.sql (one a line); the combinatorial
classes (every relation an attacker might name, in every CTE, subquery, lateral, recursive and
quoting form) are generated here. Placeholders: ``{lake}`` ``{data}`` ``{state}`` ``{root}``,
``{plates}`` / ``{people}`` (globs over the lake's plate_reads / passengers Parquet files) and
``{file}`` (one plate_reads Parquet file).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "attacks"

# Where data lives that no role may read through a query: lake files, the catalog, the state.
FILE_TARGETS = (
    "{plates}",
    "{people}",
    "{data}/**/*.parquet",
    "{file}",
    "{lake}/catalog.sqlite",
    "{state}/access/activity.jsonl",
    "/etc/passwd",
)
# System views and catalog names reachable unqualified on a DuckDB connection.
SYSTEM_NAMES = (
    "duckdb_databases",
    "duckdb_views",
    "duckdb_tables",
    "duckdb_columns",
    "duckdb_settings",
    "duckdb_secrets",
    "duckdb_functions",
    "pg_settings",
    "sqlite_master",
    "sqlite_schema",
    "pg_tables",
    "information_schema.tables",
)
# Forms a relation ``{t}`` can be read in: plain, nested, CTE, recursive, lateral, set ops.
FORMS = (
    "SELECT * FROM {t}",
    "FROM {t}",
    "SELECT * FROM (SELECT * FROM {t}) s",
    "SELECT * FROM (SELECT * FROM (SELECT * FROM {t}) a) b",
    "WITH c AS (SELECT * FROM {t}) SELECT * FROM c",
    "WITH c AS MATERIALIZED (SELECT * FROM {t}) SELECT * FROM c",
    "WITH c AS NOT MATERIALIZED (SELECT * FROM {t}) SELECT * FROM c",
    "WITH a AS (SELECT 1), c AS (SELECT * FROM {t}) SELECT * FROM c",
    "WITH c AS (WITH d AS (SELECT * FROM {t}) SELECT * FROM d) SELECT * FROM c",
    "WITH RECURSIVE c AS (SELECT * FROM {t} UNION ALL SELECT * FROM c WHERE false) SELECT * FROM c",
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c, {t} WHERE n < 2) "
    "SELECT * FROM c",
    "WITH RECURSIVE c AS (SELECT 1 AS n UNION SELECT n FROM c) SELECT * FROM c, {t}",
    "SELECT * FROM range(1) r, LATERAL (SELECT * FROM {t}) x",
    "SELECT * FROM range(1) r CROSS JOIN LATERAL (SELECT * FROM {t} LIMIT 1) x",
    "SELECT (SELECT count(*) FROM {t})",
    "SELECT 1 WHERE EXISTS (SELECT * FROM {t})",
    "SELECT 1 WHERE 1 IN (SELECT 1 FROM {t})",
    "SELECT 1 AS n UNION ALL SELECT count(*) FROM {t}",
    "SELECT count(*) FROM {t} EXCEPT SELECT 0",
    "SELECT * FROM range(1) JOIN {t} ON true",
    "SELECT * FROM range(1) POSITIONAL JOIN {t}",
    "SELECT * FROM {t} AS plate_reads",
    "SELECT list(x) FROM (SELECT * FROM {t}) x",
    "SELECT * FROM (SELECT * FROM {t}) USING SAMPLE 10",
)
# Forms that name the CTE itself after the target: the shadowing tricks (identifiers only).
SHADOW_FORMS = (
    # The hole of issue 15: DuckDB binds a recursive CTE's anchor without the CTE's own name.
    "WITH RECURSIVE {t} AS (SELECT * FROM {t} UNION ALL SELECT * FROM {t} WHERE false) "
    "SELECT * FROM {t}",
    "WITH RECURSIVE {t} AS (SELECT * FROM {t} UNION SELECT * FROM {t}) SELECT * FROM {t}",
    "SELECT * FROM (WITH RECURSIVE {t} AS (SELECT * FROM {t} UNION ALL SELECT * FROM {t} "
    "WHERE false) SELECT * FROM {t}) s",
    "WITH RECURSIVE r AS (SELECT * FROM (WITH RECURSIVE {t} AS (SELECT * FROM {t} UNION ALL "
    "SELECT * FROM {t} WHERE false) SELECT * FROM {t}) UNION ALL SELECT * FROM r WHERE false) "
    "SELECT * FROM r",
    "WITH a AS (SELECT * FROM {t}), {t} AS (SELECT 1) SELECT * FROM a",
    "WITH {t} AS (SELECT * FROM {t}) SELECT * FROM {t}",
)
TABLE_FUNCTION_FORMS = (
    "WITH c AS (SELECT * FROM {f}) SELECT * FROM c",
    "WITH RECURSIVE c AS (SELECT * FROM {f} UNION ALL SELECT * FROM c WHERE false) SELECT * FROM c",
    "SELECT * FROM range(1) r, LATERAL (SELECT * FROM {f}) x",
    "SELECT (SELECT count(*) FROM {f})",
)
HUGE = 2_000_000
# Result shapes that would hide whose rows a query returned (issue 15, item 7): a subject
# column ``{c}`` of relation ``{v}`` transformed past what the result check finds.
WRAPPING_FORMS = (
    "SELECT md5({c}) FROM {v}",
    "SELECT sha256({c}) FROM {v}",
    "SELECT hash({c}) FROM {v}",
    "SELECT reverse({c}) FROM {v}",
    "SELECT substr({c}, 1, 4), substr({c}, 5) FROM {v}",
    "SELECT {c}[1:3], {c}[4:] FROM {v}",
    "SELECT left({c}, 3), right({c}, 4) FROM {v}",
    "SELECT ascii({c}), unicode({c}) FROM {v}",
    "SELECT list_transform(split({c}, ''), x -> ascii(x)) FROM {v}",
    "SELECT replace({c}, '_', '-') FROM {v}",
    "SELECT translate({c}, 'abcdef', 'ABCDEF') FROM {v}",
    "SELECT trim({c}, 'p_') FROM {v}",
    "SELECT to_base64({c}::BLOB) FROM {v}",
    "SELECT hex({c}) FROM {v}",
    "SELECT encode({c})::VARCHAR FROM {v}",
    "SELECT levenshtein({c}, '') FROM {v}",
    "SELECT md5(t::VARCHAR) FROM {v} t",
    "SELECT md5(COLUMNS(*)) FROM {v}",
    "SELECT md5(row(COLUMNS(*))::VARCHAR) FROM {v}",
    "SELECT md5(upper({c})) FROM {v}",
    "SELECT md5(min({c})) FROM {v}",
    "SELECT md5(lag({c}) OVER (ORDER BY {c})) FROM {v}",
    "SELECT CASE WHEN true THEN md5({c}) END FROM {v}",
    "WITH w AS (SELECT {c} AS x FROM {v}) SELECT md5(x) FROM w",
    "WITH w(x) AS (SELECT {c} FROM {v}) SELECT md5(x) FROM w",
    "WITH a AS (SELECT {c} AS x FROM {v}), b AS (SELECT x AS y FROM a) SELECT md5(y) FROM b",
    "SELECT md5(x) FROM (SELECT {c} FROM {v}) t(x)",
    "SELECT md5(y) FROM (SELECT x AS y FROM (SELECT {c} AS x FROM {v}))",
    "SELECT md5(q) FROM (SELECT * RENAME ({c} AS q) FROM {v})",
    "SELECT x.h FROM range(1) r, LATERAL (SELECT md5({c}) AS h FROM {v}) x",
    "SELECT (SELECT md5({c}) FROM {v} LIMIT 1)",
    "SELECT md5(val) FROM (UNPIVOT (SELECT {c}, {c} AS d FROM {v}) ON {c}, d "
    "INTO NAME k VALUE val)",
    "SELECT string_agg(md5({c}), ',') FROM {v}",
)
# The subject columns of each relation, in every role's spelling (pseudonym or clear).
WRAPPED = (("plate_reads", "plate_pseudonym"), ("plate_reads", "plate"),
           ("plate_reads", "plate_raw"), ("passengers", "vehicle_plate"))  # fmt: skip


def _quoted(target: str) -> tuple[str, ...]:
    return (f'"{target}"', f"'{target}'")


def generated() -> dict[str, list[str]]:
    """The combinatorial classes, as templates (placeholders not yet filled)."""
    scans = [
        form.format(t=quoted)
        for target in FILE_TARGETS
        for quoted in _quoted(target)
        for form in FORMS
    ]
    scans += [form.format(t=f'"{target}"') for target in FILE_TARGETS for form in SHADOW_FORMS]
    system = [form.format(t=name) for name in SYSTEM_NAMES for form in FORMS[:12]]
    system += [
        form.format(t=name) for name in SYSTEM_NAMES if "." not in name for form in SHADOW_FORMS
    ]
    system += [
        form.format(t=f'"{name.upper()}"') for name in SYSTEM_NAMES[:4] for form in SHADOW_FORMS
    ]
    functions = [
        form.format(f=line.removeprefix("SELECT * FROM "))
        for line in _lines("functions")
        if line.startswith("SELECT * FROM ")
        for form in TABLE_FUNCTION_FORMS
    ]
    tricks = [
        "SELECT 1; SELECT * FROM passengers",
        "SELECT 1;/* */SELECT * FROM lake.main.plate_reads",
        "SELECT 1 -- comment\n; ATTACH ':memory:' AS m",
        "/* ; */ SELECT * FROM lake.main.passengers",
        "SELECT 1;;",
        "SELECT 1 /* unterminated",
        "SELECT 1\x00; SELECT * FROM '{plates}'",
        "SELECT * FROM plate_reads\x00 WHERE false; SELECT * FROM '{people}'",
        "SELECT 1 \x1b[2K",
        "SELECT '\x07'",
        "SELECT 1\x0b",
        "SELECT 1 \x85",
        "SELECT 1 \x7f",
        "SELECT * FROM pass\x00engers",
        "SELECT 1 -- \x00\nUNION ALL SELECT count(*) FROM '{plates}'",
        "SELECT 1 UNION ALL SELECT count(*) FROM '{plates}' -- ; SELECT 2",
        'select * from "{plates}" --',
    ]
    huge = [
        "SELECT " + "1 + " * (HUGE // 4) + "1",
        "SELECT '" + "A" * HUGE + "'",
        "SELECT " + "(" * 5000 + "1" + ")" * 5000,
        "SELECT * FROM " + "(SELECT * FROM " * 400 + "'{plates}'" + ") x" * 400,
        "SELECT * FROM (",
        "SELECT 'unterminated",
        "",
        ";",
        "SELECT",
        "FROM",
        "\ufeffSELECT * FROM '{plates}'",
    ]
    wrapping = [
        form.replace("{c}", column).replace("{v}", view)
        for view, column in WRAPPED
        for form in WRAPPING_FORMS
    ]
    return {
        "result_wrapping": wrapping,
        "replacement_scans": scans,
        "system_catalog": system,
        "table_functions_nested": functions,
        "multi_statement_and_comments": tricks,
        "huge_and_malformed": huge,
    }


def _lines(name: str) -> list[str]:
    text = (FIXTURES / f"{name}.sql").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("--")]


def corpus(places: Mapping[str, str]) -> dict[str, list[str]]:
    """Every class, placeholders filled in from ``places``."""
    classes = {name: _lines(name) for name in ("catalog", "statements", "functions")}
    classes.update(generated())
    return {
        name: [_fill(template, places) for template in templates]
        for name, templates in classes.items()
    }


def _fill(template: str, places: Mapping[str, str]) -> str:
    # str.format would trip over the braces of a struct literal; only our names are replaced.
    for key, value in places.items():
        template = template.replace("{" + key + "}", value)
    return template
