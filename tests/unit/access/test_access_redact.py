import json
from pathlib import Path

from pipeline.access.audit import ActivityLog, mentions
from pipeline.access.redact import MAX_TEMPLATE_CHARS, redact_sql
from pipeline.pseudonym import Pseudonymiser

PSEUDO = Pseudonymiser(bytes(range(32)))
KEY = bytes(range(1, 33))
PLATE = "QXT12345"


def _redacted(sql: str) -> dict[str, object]:
    return redact_sql(sql, PSEUDO, KEY)


def test_literals_leave_the_text_and_stay_findable_by_pseudonym() -> None:
    for spelled in ("QXT12345", "qxt-12 345", "Qxt 12345"):
        out = _redacted(f"SELECT * FROM plate_reads WHERE plate = '{spelled}' AND lane = 2")
        assert out["sql"] == "SELECT * FROM plate_reads WHERE plate = ? AND lane = ?"
        assert out["literals"] == [PSEUDO.one(PLATE), PSEUDO.one("2")]
        assert spelled not in json.dumps(out)


def test_comments_quoted_names_dollar_strings_and_digit_names_are_literals() -> None:
    sql = (
        'SELECT $$QXT12345$$ AS "QXT12345", 1 AS qxt12345 -- QXT12345\n'
        "FROM plate_reads /* QXT12345 */ WHERE plate = E'QXT12''345'"
    )
    out = _redacted(sql)
    text = json.dumps(out).upper()
    assert "QXT" not in text
    assert "12345" not in text
    assert out["literals"].count(PSEUDO.one(PLATE)) >= 3  # type: ignore[union-attr]


def test_huge_statements_are_cut_and_identified_by_a_keyed_mac() -> None:
    sql = "SELECT " + " + ".join(["plate"] * 5000) + f" FROM plate_reads WHERE plate = '{PLATE}'"
    out = _redacted(sql)
    assert len(str(out["sql"])) == MAX_TEMPLATE_CHARS
    assert out["sql_chars"] == len(sql)
    assert len(str(out["sql_mac"])) == 64
    assert PLATE not in json.dumps(out)


def test_the_log_stores_sql_redacted_and_mentions_finds_the_searcher(tmp_path: Path) -> None:
    log = ActivityLog(tmp_path / "a.jsonl", KEY, pseudo=PSEUDO)
    log.append({"kind": "query.begin", "at": "2026-12-01T00:00:00+00:00", "user": "ivan",
                "sql": f"SELECT * FROM passengers WHERE vehicle_plate = '{PLATE}'"})  # fmt: skip
    log.append({"kind": "query.begin", "at": "2026-12-01T00:00:01+00:00", "user": "ann",
                "sql": "SELECT count(*) FROM plate_reads"})  # fmt: skip
    assert PLATE.encode() not in log.path.read_bytes()
    assert log.verify().ok
    who = [
        e["user"]
        for e in log.entries()
        if mentions(e, PSEUDO.one("qxt 12345".upper().replace(" ", "")))
    ]
    assert who == ["ivan"]


def test_a_refusals_reason_loses_the_names_the_user_typed(tmp_path: Path) -> None:
    log = ActivityLog(tmp_path / "a.jsonl", KEY, pseudo=PSEUDO)
    for sql, why in (
        ('SELECT * FROM "QXT12345"', "'QXT12345' is not one of your views: plate_reads"),
        ("SELECT QXT12345(plate) FROM plate_reads", "function qxt12345() is not allowed"),
    ):
        log.append({"kind": "query.refused", "at": "2026-12-01T00:00:00+00:00", "sql": sql,
                    "why": why})  # fmt: skip
    text = log.path.read_text().upper()
    assert "QXT12345" not in text
    assert [e["why"] for e in log.entries()] == [
        "'?' is not one of your views: plate_reads",
        "function ?() is not allowed",
    ]
