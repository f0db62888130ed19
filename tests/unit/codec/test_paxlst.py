"""The PAXLST parser: separators from UNA, release characters, groups, counts, broken input."""

from __future__ import annotations

from datetime import date

import pytest

from pipeline.codec.paxlst import (
    Manifest,
    Person,
    looks_like_edifact,
    parse_interchange,
    write_interchange,
)
from pipeline.codec.reasons import Reason, Rejection
from tests.unit.codec.manifests import departure

# Invented people: syllable names, made-up documents and plates.
PASSENGERS = departure(
    Person("passenger", "ØSTBØ", "ÅSA MARI", date(1980, 1, 2), "F", "NOR", "P", "X1?2:3", "NOR",
           "AB 12345"),
    Person("driver", "KALOVEN", "PER", date(1970, 3, 4), "M", "SWE", "P", "Y7+1", "SWE",
           "ABC 12D"),
    Person("passenger", "O'TARIN", None, None, None, None, None, None, None, None),
)  # fmt: skip
CREW = departure(Person("crew", "MERANDO", "LIV", date(1991, 5, 6), "F", "NOR", "P", "C1", "NOR"))
SEPARATOR_SETS = {
    "default": (":", "+", ".", "?", " ", "'"),
    "control characters": ("\x1f", "\x1d", ".", "?", " ", "\x1c"),
    "unusual printable": ("*", "|", ",", "!", "^", "~"),
    "no release character": ("\x1f", "\x1d", ".", " ", " ", "\x1c"),
}


@pytest.mark.parametrize("name", SEPARATOR_SETS)
@pytest.mark.parametrize("groups", [False, True], ids=["no UNG", "with UNG"])
def test_round_trip_with_any_separators_with_and_without_groups(name: str, groups: bool) -> None:
    seps = SEPARATOR_SETS[name]
    manifests = [PASSENGERS, CREW]
    if seps[3] == " ":  # nothing can be escaped: values without separators only
        manifests = [CREW]
    data = write_interchange(manifests, separators=seps, groups=groups)
    assert parse_interchange(data) == manifests


def test_release_character_keeps_separators_inside_values() -> None:
    data = write_interchange([PASSENGERS])
    assert b"X1??2?:3" in data  # escaped on the wire
    people = parse_interchange(data)[0].people
    assert people[0].document_number == "X1?2:3"
    assert people[1].document_number == "Y7+1"
    assert people[2].surname == "O'TARIN"


def test_several_messages_per_interchange_and_crew_and_driver_roles() -> None:
    parsed = parse_interchange(write_interchange([PASSENGERS, CREW, PASSENGERS]))
    assert [len(m.people) for m in parsed] == [3, 1, 3]
    assert [p.role for p in parsed[0].people] == ["passenger", "driver", "passenger"]
    assert parsed[1].people[0].role == "crew"


def test_default_separators_without_una_latin1_and_line_breaks() -> None:
    data = write_interchange([PASSENGERS], with_una=False, syntax="UNOC", line_breaks=True)
    assert not data.startswith(b"UNA")
    assert "ØSTBØ".encode("latin-1") in data
    assert parse_interchange(data) == [PASSENGERS]


def test_direction_from_the_norwegian_port() -> None:
    entry = Manifest(**{**PASSENGERS.__dict__, "departure_port": "DKHIR", "arrival_port": "NOLAR"})
    assert parse_interchange(write_interchange([entry]))[0].direction == "entry"
    abroad = Manifest(**{**PASSENGERS.__dict__, "departure_port": "DKHIR", "arrival_port": "DECPH"})
    assert parse_interchange(write_interchange([abroad]))[0].direction is None


def _text(manifests: list[Manifest] | None = None) -> str:
    return write_interchange(manifests or [PASSENGERS]).decode()


def _reason(data: bytes) -> Reason:
    with pytest.raises(Rejection) as info:
        parse_interchange(data)
    return info.value.reason


def test_control_total_that_disagrees_is_rejected() -> None:
    bad = _text().replace("CNT+42:3'", "CNT+42:4'")
    assert _reason(bad.encode()) is Reason.CONTROL_TOTAL_MISMATCH


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: t.replace("UNT+", "XXX+"), id="missing UNT"),
        pytest.param(lambda t: t.replace("UNT+37+1", "UNT+36+1"), id="wrong UNT count"),
        pytest.param(lambda t: t.replace("UNT+37+1", "UNT+37+9"), id="wrong UNT reference"),
        pytest.param(lambda t: t.replace("UNZ+1+1", "UNZ+2+1"), id="wrong UNZ count"),
        pytest.param(lambda t: t.replace("UNZ+1+1", "UNZ+1+7"), id="wrong UNZ reference"),
        pytest.param(lambda t: t[: len(t) // 2], id="truncated mid-segment"),
        pytest.param(lambda t: t[: t.index("UNZ")], id="truncated before UNZ"),
        pytest.param(lambda t: t.replace("BGM+745", "BGM+999"), id="unknown BGM"),
        pytest.param(lambda t: t.replace("PAXLST:D", "CUSRES:D"), id="not PAXLST"),
        pytest.param(lambda t: t.replace("DTM+329:19800102", "DTM+329:19801302"), id="bad date"),
        pytest.param(lambda t: t + "UNH+2'", id="segments after UNZ"),
        pytest.param(lambda t: t.replace("UNOY", "UNQQ"), id="unknown syntax"),
        pytest.param(lambda t: "UNA:+.?", id="short UNA"),
    ],
)
def test_broken_interchanges_are_malformed(mangle: object) -> None:
    text = _text()
    assert "UNT+37+1" in text  # the mangles above rely on this
    assert _reason(mangle(text).encode()) is Reason.MALFORMED_EDIFACT  # type: ignore[operator]


def test_missing_une_and_wrong_une_count() -> None:
    text = write_interchange([PASSENGERS], groups=True).decode()
    assert _reason(text.replace("UNE+1+G1'", "").encode()) is Reason.MALFORMED_EDIFACT
    assert _reason(text.replace("UNE+1+G1", "UNE+2+G1").encode()) is Reason.MALFORMED_EDIFACT


@pytest.mark.parametrize(
    "garbage",
    [b"\x00\x01\x02\xff" * 100, b"UNB\xff\xfe", b"UNA", b"UNB+UNOA:4+A+B+1'" + b"\xc3"],
)
def test_binary_garbage_is_malformed(garbage: bytes) -> None:
    assert _reason(garbage) is Reason.MALFORMED_EDIFACT


def test_non_ascii_in_an_ascii_interchange_is_malformed() -> None:
    data = write_interchange([PASSENGERS]).replace(b"UNOY", b"UNOA")
    assert _reason(data) is Reason.MALFORMED_EDIFACT


def test_recognised_by_una_or_unb() -> None:
    assert looks_like_edifact(b"UNA:+.? 'UNB+")
    assert looks_like_edifact(b"\r\nUNB+UNOA:4")
    assert not looks_like_edifact(b'{"schema": "passenger_list/1"}')
