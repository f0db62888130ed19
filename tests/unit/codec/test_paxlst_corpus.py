"""PAXLST as carriers publish it (tests/fixtures/paxlst) and dates by their DTM format code."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from pipeline.codec.passenger_lists import decode_passenger_lists
from pipeline.codec.paxlst import parse_interchange, write_interchange
from pipeline.codec.reasons import Reason, Rejection
from tests.unit.codec.test_paxlst import PASSENGERS

CORPUS = Path(__file__).parents[2] / "fixtures" / "paxlst"
CPP = (CORPUS / "cpp-paxlst-writer-test.edi").read_bytes()
BRIDGEIST = (CORPUS / "bridgeist-germany-exporter.edi").read_bytes()
# The exporter closes its message and interchange with other references than it opened them
# with (UNH 1 / UNT 1203120, UNB 1203120 / UNZ FRA1203120); this copy has them matching.
BRIDGEIST_MATCHED = BRIDGEIST.replace(b"UNT+29+1203120'", b"UNT+29+1'").replace(
    b"UNZ+1+FRA1203120'", b"UNZ+1+1203120'"
)


def _reason(data: bytes) -> Reason:
    with pytest.raises(Rejection) as info:
        parse_interchange(data)
    return info.value.reason


def _separators(data: bytes, una: bytes, table: dict[int, int]) -> bytes:
    """The interchange re-declared with other separators (no value holds the new ones)."""
    body = data.removeprefix(b"UNA:+.? '")
    assert not any(chr(c).encode() in body for c in table.values())
    return una + body.translate(bytes(table.get(i, i) for i in range(256)))


UNUSUAL = (b"UNA*|.? ~", {ord("+"): ord("|"), ord(":"): ord("*"), ord("'"): ord("~")})


def test_published_cpp_writer_output_miscounts_its_segments() -> None:
    # As published, UNT says 39 segments; the message has 37. A wrong count is never guessed at.
    assert b"UNT+39+1'" in CPP
    assert _reason(CPP) is Reason.MALFORMED_EDIFACT


@pytest.mark.parametrize("separators", ["default", "unusual"])
def test_cpp_writer_output_six_digit_births_and_groups(separators: str) -> None:
    data = CPP.replace(b"UNT+39+1'", b"UNT+37+1'")
    if separators == "unusual":
        data = _separators(data, *UNUSUAL)
    [manifest] = parse_interchange(data)
    assert manifest.departure_at == datetime(2007, 10, 8, 10, 45, tzinfo=UTC)
    assert [(p.surname, p.given_names) for p in manifest.people] == [
        ("QUASTOVA", "ZOE QUINN"),
        ("QUERTY", "ZED"),
        ("QUIXOTE", "ZANE"),
    ]
    assert [p.date_of_birth for p in manifest.people] == [
        date(1967, 6, 10),
        date(1969, 12, 9),
        date(1976, 5, 2),
    ]
    assert [p.document_number for p in manifest.people] == ["900000001", "90000002", "90000003"]
    assert manifest.people[2].document_issuing_country == "RUS"


def test_published_german_exporter_output_mismatches_its_references() -> None:
    assert _reason(BRIDGEIST) is Reason.MALFORMED_EDIFACT
    assert _reason(BRIDGEIST.replace(b"UNT+29+1203120'", b"UNT+29+1'")) is (
        Reason.MALFORMED_EDIFACT  # the UNZ reference alone is still wrong
    )


@pytest.mark.parametrize("separators", ["default", "unusual"])
def test_german_exporter_output_is_stored_whole(separators: str) -> None:
    data = BRIDGEIST_MATCHED
    if separators == "unusual":
        data = _separators(data, *UNUSUAL)
    [manifest] = parse_interchange(data)
    assert (manifest.departure_port, manifest.arrival_port) == ("FRA", "OSL")
    people = manifest.people
    # 29 February of a leap year, and 310101 on a 2026 voyage: 1931, never 2031.
    assert [p.date_of_birth for p in people] == [date(2004, 2, 29), date(1931, 1, 1)]
    # ICAO's "D" for Germany is read as DEU.
    assert [(p.nationality, p.document_issuing_country) for p in people] == [
        ("DEU", "DEU"),
        ("NOR", "NOR"),
    ]
    assert [(p.document_type, p.document_number) for p in people] == [
        ("P", "Q00000001"),
        ("P", "Q00000002"),
    ]


def test_german_exporter_output_with_a_wrong_cnt_is_still_rejected() -> None:
    bad = BRIDGEIST_MATCHED.replace(b"CNT+42:2'", b"CNT+42:3'")
    assert _reason(bad) is Reason.CONTROL_TOTAL_MISMATCH


def test_an_airline_list_is_not_a_ferry_departure() -> None:
    # IATA airports, no Norwegian port: read whole, then refused by passenger_list/1.
    collected = int(datetime(2026, 3, 1, 9, 30, tzinfo=UTC).timestamp() * 1000)
    batch = decode_passenger_lists(
        [BRIDGEIST_MATCHED], [collected], retention_cutoff=datetime(2025, 9, 1, tzinfo=UTC)
    )
    assert batch.table.num_rows == 0
    assert [(r.reason, r.detail) for r in batch.rejected] == [
        (Reason.SCHEMA_VIOLATION, "direction: missing")
    ]


# -- dates by format code ----------------------------------------------------------------------

TEXT = write_interchange([PASSENGERS]).decode()  # departs 2026-11-22 (DTM+189 ... :203)


def _with(old: str, new: str, text: str = TEXT) -> bytes:
    assert old in text
    return text.replace(old, new).encode()


def _births(data: bytes) -> list[date | None]:
    return [p.date_of_birth for p in parse_interchange(data)[0].people]


def test_the_departure_the_fixture_texts_rely_on() -> None:
    departed = parse_interchange(TEXT.encode())[0].departure_at
    assert departed is not None
    assert departed.date() == date(2026, 11, 22)
    assert "DTM+329:19800102:102'" in TEXT


@pytest.mark.parametrize(
    ("birth", "expected"),
    [
        ("800102", date(1980, 1, 2)),
        ("800102:101", date(1980, 1, 2)),
        ("19800102", date(1980, 1, 2)),
        ("040229", date(2004, 2, 29)),  # leap day, this century
        ("000229", date(2000, 2, 29)),  # 2000 is a leap year (1900 was not)
        ("961231", date(1996, 12, 31)),
        ("261122", date(2026, 11, 22)),  # born on the day of the voyage: not in the future
        ("261123", date(1926, 11, 23)),  # one day later would be: the century before
        ("270101", date(1927, 1, 1)),
    ],
)
def test_date_of_birth_by_format_and_century_rule(birth: str, expected: date) -> None:
    assert _births(_with("DTM+329:19800102:102'", f"DTM+329:{birth}'"))[0] == expected


@pytest.mark.parametrize(
    "birth",
    [
        "800102:102",  # six digits under the eight-digit code
        "19800102:101",  # eight digits under the six-digit code
        "800102:103",  # not a date-of-birth format
        "8001021",  # seven digits
        "010229",  # 29 February 2001 and 1901: neither exists
        "801302",  # month 13
        "80O102",  # a letter
    ],
)
def test_date_of_birth_that_fits_no_rule_is_malformed(birth: str) -> None:
    assert _reason(_with("DTM+329:19800102:102'", f"DTM+329:{birth}'")) is (
        Reason.MALFORMED_EDIFACT
    )


def test_six_digit_birth_without_a_voyage_time_cannot_be_placed() -> None:
    text = TEXT.replace("DTM+329:19800102:102'", "DTM+329:800102'")
    for qualifier in ("189", "232"):
        start = text.index(f"DTM+{qualifier}:")
        text = text[:start] + text[text.index("'", start) + 1 :]
    count = text.count("'", text.index("UNH"), text.index("UNT")) + 1
    text = text.replace("UNT+37+1", f"UNT+{count}+1")
    assert _reason(text.encode()) is Reason.MALFORMED_EDIFACT


def test_voyage_times_by_format_code() -> None:
    departed = parse_interchange(TEXT.encode())[0].departure_at
    assert departed is not None
    stamp = departed.strftime("%Y%m%d%H%M")
    short = _with(f"DTM+189:{stamp}:203'", f"DTM+189:{stamp[2:]}:201'")
    assert parse_interchange(short)[0].departure_at == departed
    # A two-digit year of a voyage is this century: 70 is 2070, not 1970.
    seventies = _with(f"DTM+189:{stamp}:203'", "DTM+189:7001011200:201'")
    assert parse_interchange(seventies)[0].departure_at == datetime(2070, 1, 1, 12, tzinfo=UTC)
    mismatch = _with(f"DTM+189:{stamp}:203'", f"DTM+189:{stamp[2:]}:203'")
    assert _reason(mismatch) is Reason.MALFORMED_EDIFACT
