"""The attribution rule on DuckDB's own syntax trees: a subject column leaves a query only in
a form the activity log's result check still finds (issue 15, item 7)."""

import pytest

from pipeline.access import attribution
from pipeline.access.statement import Allowed, QueryRefused, check

VIEWS = frozenset({"plate_reads", "passengers", "traffic_stats"})
ANALYST = Allowed(VIEWS, attribution.subject_columns(clear_plates=False))
INVESTIGATOR = Allowed(VIEWS, attribution.subject_columns(clear_plates=True), clear_plates=True)
# {c}: the subject column of the role (the analyst's pseudonym, the investigator's plate).
ROLES = [(ANALYST, "plate_pseudonym"), (INVESTIGATOR, "plate")]

ALLOWED = [
    "SELECT {c}, upper({c}), lower({c}), {c}::VARCHAR, {c}::BLOB, trim({c}) FROM plate_reads",
    "SELECT * FROM plate_reads",
    "SELECT coalesce({c}, 'none'), min({c}), max({c}), any_value({c}) FROM plate_reads",
    "SELECT arg_max({c}, captured_at), list({c}), array_agg(DISTINCT {c}) FROM plate_reads",
    "SELECT lag({c}) OVER (PARTITION BY site_id ORDER BY captured_at) FROM plate_reads",
    "SELECT first_value({c}) OVER w FROM plate_reads WINDOW w AS (ORDER BY captured_at)",
    "SELECT struct_pack(p := {c}), [{c}], {{'p': {c}}} FROM plate_reads",
    "SELECT CASE WHEN lane = 1 THEN {c} ELSE 'other' END FROM plate_reads",
    "SELECT count(DISTINCT {c}), count(*), approx_count_distinct({c}) FROM plate_reads",
    "SELECT site_id, count(*) FROM plate_reads WHERE md5({c}) LIKE 'a%' GROUP BY ALL",
    "SELECT site_id FROM plate_reads GROUP BY site_id HAVING count(DISTINCT reverse({c})) > 1",
    "SELECT lane FROM plate_reads r JOIN plate_reads s ON md5(r.{c}) = md5(s.{c})",
    "SELECT lag({c}) OVER (PARTITION BY md5({c}) ORDER BY captured_at) FROM plate_reads",
    "SELECT CASE WHEN {c} = 'X' THEN 1 ELSE 0 END FROM plate_reads",
    "WITH c AS (SELECT {c} AS x FROM plate_reads) SELECT upper(x) FROM c",
    "WITH c(x) AS (SELECT {c} FROM plate_reads) SELECT x FROM c",
    "SELECT t.x FROM (SELECT {c} FROM plate_reads) t(x)",
    "SELECT unnest([{c}]) FROM plate_reads",
    "SELECT * RENAME ({c} AS q) FROM plate_reads",
    "SELECT md5(site_id), lane + 1, hash(event_id) FROM plate_reads",
    "SELECT x + 1 FROM range(3) t(x)",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) FROM r",
    "PIVOT plate_reads ON lane IN (1, 2) USING count(*)",
    "PIVOT plate_reads ON lane IN (1, 2) USING max({c})",
    "SELECT r.event_id, r.captured_at, r.camera_id, p.role, p.vehicle_plate "
    "FROM passengers AS p JOIN plate_reads AS r ON r.plate = p.vehicle_plate "
    "AND r.captured_at BETWEEN p.departure_at - INTERVAL 3 HOUR "
    "AND p.departure_at + INTERVAL 1 HOUR WHERE p.carrier = 'NFX' ORDER BY r.captured_at",
    "SELECT plate_country, count(*) AS vehicles FROM (SELECT {c}, "
    "any_value(plate_country) AS plate_country FROM plate_reads GROUP BY 1 "
    "HAVING count(DISTINCT direction) = 2) GROUP BY 1 ORDER BY 2 DESC",
]

REFUSED = [
    "SELECT md5({c}) FROM plate_reads",
    "SELECT reverse({c}) FROM plate_reads",
    "SELECT substr({c}, 2) FROM plate_reads",
    "SELECT {c}[1:3] FROM plate_reads",
    "SELECT hash({c}) FROM plate_reads",
    "SELECT ascii({c}) FROM plate_reads",
    "SELECT unicode({c}), ord({c}) FROM plate_reads",
    "SELECT trim({c}, 'p_0123456789abcdef') FROM plate_reads",
    "SELECT replace({c}, '_', '') FROM plate_reads",
    "SELECT {c} = 'X' FROM plate_reads",
    "SELECT md5(t::VARCHAR) FROM plate_reads t",
    "SELECT md5(plate_reads::VARCHAR) FROM plate_reads",
    "SELECT md5(COLUMNS(*)) FROM plate_reads",
    "SELECT md5(COLUMNS('.*plate.*')) FROM plate_reads",
    "SELECT md5(row(COLUMNS(*))::VARCHAR) FROM plate_reads",
    "SELECT md5(upper({c})) FROM plate_reads",
    "SELECT md5(min({c})) FROM plate_reads",
    "SELECT md5(lag({c}) OVER (ORDER BY captured_at)) FROM plate_reads",
    "SELECT sum(hash({c})) OVER () FROM plate_reads",
    "SELECT CASE WHEN lane = 1 THEN md5({c}) END FROM plate_reads",
    "WITH c AS (SELECT {c} AS x FROM plate_reads) SELECT md5(x) FROM c",
    "WITH c(x) AS (SELECT {c} FROM plate_reads) SELECT md5(x) FROM c",
    "WITH a AS (SELECT {c} AS x FROM plate_reads), b AS (SELECT x AS y FROM a) "
    "SELECT md5(y) FROM b",
    "SELECT md5(x) FROM (SELECT {c} FROM plate_reads) t(x)",
    "SELECT md5(y) FROM (SELECT x AS y FROM (SELECT {c} AS x FROM plate_reads))",
    "SELECT md5(a) FROM plate_reads t(a, b, c, d, e, f, g)",
    "SELECT md5(q) FROM (SELECT * RENAME ({c} AS q) FROM plate_reads)",
    "SELECT x.h FROM range(1) r, LATERAL (SELECT md5({c}) AS h FROM plate_reads) x",
    "SELECT (SELECT md5({c}) FROM plate_reads LIMIT 1)",
    "SELECT md5((SELECT {c} FROM plate_reads LIMIT 1))",
    "SELECT lane FROM plate_reads WHERE lane IN (SELECT hash({c}) FROM plate_reads)",
    "SELECT md5(val) FROM (UNPIVOT plate_reads ON {c}, site_id INTO NAME k VALUE val)",
    "PIVOT plate_reads ON lane IN (1, 2) USING max(md5({c}))",
    "SELECT list_transform([{c}], x -> md5(x)) FROM plate_reads",
    "SELECT * REPLACE (md5({c}) AS {c}) FROM plate_reads",
    "SELECT md5(#1) FROM (SELECT {c} FROM plate_reads)",
    "SELECT md5(p) FROM plate_reads, LATERAL (SELECT {c} AS p)",
    "SELECT md5(x) FROM plate_reads, unnest([{c}]) u(x)",
    "SELECT md5(u.unnest) FROM plate_reads, unnest([{c}]) u",
    "SELECT md5(unnest) FROM plate_reads, unnest([{c}])",
    'SELECT md5("upper({c})") FROM (SELECT upper({c}) FROM plate_reads)',
    'WITH w AS (SELECT lower({c}) FROM plate_reads) SELECT md5("lower({c})") FROM w',
]


@pytest.mark.parametrize(("allowed", "column"), ROLES)
@pytest.mark.parametrize("sql", ALLOWED)
def test_a_subject_column_returned_as_it_is_passes(allowed: Allowed, column: str, sql: str) -> None:
    text = sql.format(c=column)
    assert check(text, allowed) == text


@pytest.mark.parametrize(("allowed", "column"), ROLES)
@pytest.mark.parametrize("sql", REFUSED)
def test_a_subject_column_transformed_is_refused(allowed: Allowed, column: str, sql: str) -> None:
    with pytest.raises(QueryRefused, match="so the activity log can name whose rows"):
        check(sql.format(c=column), allowed)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT {c} || 'X' FROM plate_reads",
        "SELECT concat('#', {c}) FROM plate_reads",
        "SELECT concat_ws('', {c}, {c}) FROM plate_reads",
        "SELECT string_agg({c}, '') FROM plate_reads",
    ],
)
def test_joining_a_clear_plate_to_other_text_is_refused(sql: str) -> None:
    # A pseudonym is found anywhere in a text; a plate glued to letters is no plate-like word.
    with pytest.raises(QueryRefused, match="so the activity log"):
        check(sql.format(c="plate"), INVESTIGATOR)
    assert check(sql.format(c="plate_pseudonym"), ANALYST)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT md5(vehicle_plate) FROM passengers",
        "SELECT reverse(plate_raw) FROM plate_reads",
        "SELECT hash(candidates) FROM plate_reads",
        "SELECT md5(c.plate) FROM (SELECT unnest(candidates) AS c FROM plate_reads)",
        "SELECT left(old_plate, 2) FROM passengers",
    ],
)
def test_every_plate_column_of_the_registry_is_a_subject(sql: str) -> None:
    with pytest.raises(QueryRefused, match="so the activity log"):
        check(sql, INVESTIGATOR)


def test_the_subject_columns_come_from_the_table_registry() -> None:
    clear = attribution.subject_columns(clear_plates=True)
    assert {"plate", "plate_raw", "candidates", "vehicle_plate", "old_plate", "new_plate"} <= clear
    assert attribution.subject_columns(clear_plates=False) == {"plate_pseudonym"}


def test_without_subject_columns_nothing_is_checked() -> None:
    sql = "SELECT md5(plate_pseudonym) FROM plate_reads"
    assert check(sql, Allowed(VIEWS)) == sql
