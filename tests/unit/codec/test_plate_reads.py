"""The batch decoder: every reason code, the hostile corpus, and the path invariants.

All plates, ids and times are synthetic.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pipeline.codec.plate_reads as decode_module
from pipeline.codec.plate_reads import (
    DECODE_OUTPUT_SCHEMA,
    DecodeLimits,
    DecodeResult,
    decode_plate_reads,
)
from pipeline.codec.reasons import Reason
from pipeline.codec.vendors import VENDOR_RULES
from pipeline.reference.sites import DEFAULT_REGISTRY, SiteRegistry, load_registry
from pipeline.schemas import DECODED_PLATE_READS

NOW = datetime(2026, 11, 22, 5, 0, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=183)
PLATE = "QZ 98765"  # synthetic; tests below check it never appears in a rejection detail
EXPIRED = "expired"

REGISTRY: SiteRegistry = load_registry(DEFAULT_REGISTRY, VENDOR_RULES)

BASE: dict[str, object] = {
    "schema": "plate_read/1",
    "event_id": "SVI-L2-F-000000123",
    "site_id": "NO-SVINESUND",
    "camera_id": "SVI-L2-F",
    "lane": 2,
    "direction": "entry",
    "captured_at": "2026-11-22T04:31:14.123Z",
    "plate": PLATE,
    "plate_country": "NO",
    "confidence": 0.97,
    "vehicle_class": "car",
}


def dump(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def read(**changes: object) -> bytes:
    return dump({**BASE, **changes})


def without(name: str) -> bytes:
    return dump({k: v for k, v in BASE.items() if k != name})


def valid(i: int) -> bytes:
    return read(event_id=f"SVI-L2-F-{i:09d}", plate=f"QZ {10000 + i % 90000}")


def decode(values: list[bytes | None], **kwargs: object) -> DecodeResult:
    result = decode_plate_reads(
        values,
        registry=REGISTRY,
        now=NOW,
        retention_cutoff=CUTOFF,
        **kwargs,  # type: ignore[arg-type]
    )
    check_invariants(result, len(values))
    return result


def check_invariants(result: DecodeResult, count: int) -> None:
    assert result.table.schema == DECODE_OUTPUT_SCHEMA
    stored = result.table.column("msg_index").to_pylist()
    rejected = [r.index for r in result.rejected]
    assert stored == sorted(stored)
    assert rejected == sorted(rejected)
    assert sorted(stored + rejected + result.expired) == list(range(count))


def outcome(result: DecodeResult, index: int) -> str:
    """'stored', 'expired' or the reason code of one input index."""
    if index in result.table.column("msg_index").to_pylist():
        return "stored"
    if index in result.expired:
        return EXPIRED
    return next(str(r.reason) for r in result.rejected if r.index == index)


# -- the happy path ----------------------------------------------------------------------------


def test_valid_read_is_decoded_and_normalised() -> None:
    result = decode([read(captured_at="2026-11-22T06:31:14.123456+02:00")])
    assert result.rejected == []
    assert result.expired == []
    row = result.table.to_pylist()[0]
    assert row == {
        "event_id": "SVI-L2-F-000000123",
        "site_id": "NO-SVINESUND",
        "camera_id": "SVI-L2-F",
        "lane": 2,
        "direction": "entry",
        "captured_at": datetime(2026, 11, 22, 4, 31, 14, 123456, tzinfo=UTC),
        "plate": "QZ98765",
        "plate_raw": PLATE,
        "plate_country": "NO",
        "confidence": pytest.approx(0.97),
        "vehicle_class": "car",
        "source_format": "canonical",
        "msg_index": 0,
    }
    # Exactly the lake's decoded schema plus the index column, in that order.
    assert result.table.schema.remove(len(DECODED_PLATE_READS)) == DECODED_PLATE_READS


def test_empty_batch() -> None:
    result = decode([])
    assert result.table.num_rows == 0
    assert result.rejected == []


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(read(vehicle_class=None), id="null vehicle_class"),
        pytest.param(without("vehicle_class"), id="no vehicle_class"),
        pytest.param(read(firmware="4.2", extra={"nested": [1, 2, {"a": None}]}), id="unknown"),
        pytest.param(b"  " + read() + b"\t", id="surrounding whitespace"),
        pytest.param(json.dumps(BASE, indent=2).encode(), id="pretty-printed"),
        pytest.param(json.dumps(BASE, indent=2).encode().replace(b"\n", b"\r\n"), id="crlf"),
        pytest.param(read(plate="\u0410\u0412 12345"), id="cyrillic look-alikes"),
        pytest.param(read(captured_at="2026-11-22T04:31:14Z"), id="no fraction"),
        pytest.param(read(captured_at="2026-11-22T04:31:14.123456789Z"), id="nanoseconds"),
        pytest.param(read(captured_at="2026-11-22T03:31:14-01:00"), id="negative offset"),
        pytest.param(read(confidence=1), id="integer confidence"),
        pytest.param(read(lane=99, camera_id="SVI-L2-F"), id="lane 99"),
        pytest.param(read(event_id="3f2c9a10-5b7e-4d21-9c0a-000000000601"), id="uuid event id"),
    ],
)
def test_accepted_variants(message: bytes) -> None:
    result = decode([message])
    assert result.rejected == []
    assert result.table.num_rows == 1


def test_nanoseconds_are_truncated_to_microseconds() -> None:
    result = decode([read(captured_at="2026-11-22T04:31:14.123456789Z")])
    assert result.table.column("captured_at")[0].as_py() == datetime(
        2026, 11, 22, 4, 31, 14, 123456, tzinfo=UTC
    )


# -- every reason, alone and in the middle of a valid batch ------------------------------------

CASES: dict[str, tuple[bytes | None, str]] = {
    # empty_value
    "tombstone": (None, Reason.EMPTY_VALUE),
    "empty bytes": (b"", Reason.EMPTY_VALUE),
    # oversized
    "padding past 64 KiB": (read(padding="x" * 70_000), Reason.OVERSIZED),
    "1 MB value": (b"{" + b" " * 1_000_000 + b"}", Reason.OVERSIZED),
    # malformed_json
    "truncated": (read()[:-7], Reason.MALFORMED_JSON),
    "truncated before a brace": (read()[:-1] + b",}", Reason.MALFORMED_JSON),
    "array": (dump([BASE]), Reason.MALFORMED_JSON),
    "scalar": (b"42", Reason.MALFORMED_JSON),
    "string": (b'"plate_read/1"', Reason.MALFORMED_JSON),
    "whitespace only": (b"   ", Reason.MALFORMED_JSON),
    "two documents": (read() + read(), Reason.MALFORMED_JSON),
    "two documents with a space": (read() + b" " + read(), Reason.MALFORMED_JSON),
    "trailing garbage": (read() + b" garbage", Reason.MALFORMED_JSON),
    "trailing brace": (read() + b"}", Reason.MALFORMED_JSON),
    "bom": (b"\xef\xbb\xbf" + read(), Reason.MALFORMED_JSON),
    "nul byte raw in a string": (
        read().replace(b'"plate":"', b'"plate":"\x00', 1),
        Reason.MALFORMED_JSON,
    ),
    "nul byte outside strings": (read()[:-1] + b"\x00}", Reason.MALFORMED_JSON),
    "invalid utf-8": (read().replace(b"QZ", b"Q\xff", 1), Reason.MALFORMED_JSON),
    "deep nesting past the size limit": (b"[" * 100_000 + b"]" * 100_000, Reason.OVERSIZED),
    "unbalanced deep nesting": (b"[" * 60_000, Reason.MALFORMED_JSON),
    "deep nesting inside": (read(x=None).replace(b"null", b"[" * 30_000), Reason.MALFORMED_JSON),
    "nan confidence": (
        read().replace(b'"confidence":0.97', b'"confidence":NaN'),
        Reason.MALFORMED_JSON,
    ),
    "infinity confidence": (
        read().replace(b'"confidence":0.97', b'"confidence":Infinity'),
        Reason.MALFORMED_JSON,
    ),
    "negative infinity": (
        read().replace(b'"confidence":0.97', b'"confidence":-Infinity'),
        Reason.MALFORMED_JSON,
    ),
    "nan in an unknown field": (read()[:-1] + b',"x":NaN}', Reason.MALFORMED_JSON),
    "arrow-only Inf literal": (read()[:-1] + b',"x":-Inf}', Reason.MALFORMED_JSON),
    "lone surrogate escape": (
        read().replace(PLATE.encode(), b"\\ud800"),
        Reason.MALFORMED_JSON,
    ),
    "single quotes": (read().replace(b'"', b"'"), Reason.MALFORMED_JSON),
    "comment": (read()[:-1] + b"/* x */}", Reason.MALFORMED_JSON),
    # One policy for every JSON decoder (pipeline.codec): a repeated key is malformed_json.
    "duplicate known field": (read()[:-1] + b',"lane":3}', Reason.MALFORMED_JSON),
    # unsupported_format
    "unknown schema": (read(schema="plate_read/9"), Reason.UNSUPPORTED_FORMAT),
    "unknown schema, wrong types": (
        read(schema="openalpr/2", lane="2"),
        Reason.UNSUPPORTED_FORMAT,
    ),
    # schema_violation
    "schema as a number": (read(schema=1), Reason.SCHEMA_VIOLATION),
    "missing schema": (without("schema"), Reason.SCHEMA_VIOLATION),
    "missing event_id": (without("event_id"), Reason.SCHEMA_VIOLATION),
    "missing plate": (without("plate"), Reason.SCHEMA_VIOLATION),
    "null plate": (read(plate=None), Reason.SCHEMA_VIOLATION),
    "lane as string": (read(lane="2"), Reason.SCHEMA_VIOLATION),
    "lane as bool": (read(lane=True), Reason.SCHEMA_VIOLATION),
    "lane as float": (read(lane=2.0), Reason.SCHEMA_VIOLATION),
    "lane zero": (read(lane=0), Reason.SCHEMA_VIOLATION),
    "lane 100": (read(lane=100), Reason.SCHEMA_VIOLATION),
    "lane beyond int64": (read(lane=10**30), Reason.SCHEMA_VIOLATION),
    "lane as object": (read(lane={"n": 2}), Reason.SCHEMA_VIOLATION),
    "confidence as string": (read(confidence="0.97"), Reason.SCHEMA_VIOLATION),
    "confidence as bool": (read(confidence=True), Reason.SCHEMA_VIOLATION),
    "confidence above 1": (read(confidence=1.5), Reason.SCHEMA_VIOLATION),
    "confidence below 0": (read(confidence=-0.1), Reason.SCHEMA_VIOLATION),
    "confidence overflow": (
        read().replace(b'"confidence":0.97', b'"confidence":1e400'),
        Reason.SCHEMA_VIOLATION,
    ),
    "direction sideways": (read(direction="sideways"), Reason.SCHEMA_VIOLATION),
    "direction upper case": (read(direction="ENTRY"), Reason.SCHEMA_VIOLATION),
    "event_id with a space": (read(event_id="cam 17"), Reason.SCHEMA_VIOLATION),
    "event_id with a path": (read(event_id="../../x"), Reason.SCHEMA_VIOLATION),
    "event_id too long": (read(event_id="E" * 65), Reason.SCHEMA_VIOLATION),
    "camera_id too long": (read(camera_id="C" * 10_000), Reason.SCHEMA_VIOLATION),
    "plate too long": (read(plate="'; DROP TABLE plate_reads;--"), Reason.SCHEMA_VIOLATION),
    "country of three letters": (read(plate_country="NOR"), Reason.SCHEMA_VIOLATION),
    "country in lower case": (read(plate_country="no"), Reason.SCHEMA_VIOLATION),
    "vehicle_class with symbols": (read(vehicle_class="Car!"), Reason.SCHEMA_VIOLATION),
    "vehicle_class as number": (read(vehicle_class=3), Reason.SCHEMA_VIOLATION),
    "time without zone": (read(captured_at="2026-11-22T04:31:14.123"), Reason.SCHEMA_VIOLATION),
    "time with space": (read(captured_at="2026-11-22 04:31:14Z"), Reason.SCHEMA_VIOLATION),
    "time lower-case z": (read(captured_at="2026-11-22T04:31:14z"), Reason.SCHEMA_VIOLATION),
    "time offset without colon": (
        read(captured_at="2026-11-22T04:31:14+0200"),
        Reason.SCHEMA_VIOLATION,
    ),
    "time 30 February": (read(captured_at="2026-02-30T04:31:14Z"), Reason.SCHEMA_VIOLATION),
    "time leap second": (read(captured_at="2026-12-31T23:59:60Z"), Reason.SCHEMA_VIOLATION),
    "time offset 24h": (read(captured_at="2026-11-22T04:31:14+24:00"), Reason.SCHEMA_VIOLATION),
    "time as epoch number": (read(captured_at=1_795_000_000), Reason.SCHEMA_VIOLATION),
    "date only": (read(captured_at="2026-11-22"), Reason.SCHEMA_VIOLATION),
    # expired on arrival: counted, not rejected
    "year 1970": (read(captured_at="1970-01-01T00:00:00Z"), EXPIRED),
    "year 0001": (read(captured_at="0001-01-01T00:00:00Z"), EXPIRED),
    "just before the cutoff": (read(captured_at="2026-05-23T04:59:59.999999Z"), EXPIRED),
    # unknown_site
    "unknown site": (read(site_id="NO-NOWHERE"), Reason.UNKNOWN_SITE),
    "path in site id": (read(site_id="../../etc/passwd"), Reason.UNKNOWN_SITE),
    "unknown camera": (read(camera_id="CAM-UNKNOWN-9"), Reason.UNKNOWN_SITE),
    "camera of another site": (read(site_id="NO-ORJE"), Reason.UNKNOWN_SITE),
    "pair separator in site id": (
        read(site_id="NO-SVINESUND|SVI-L2-F", camera_id=""),
        Reason.UNKNOWN_SITE,
    ),
    "sql in site id": (read(site_id="x' OR '1'='1"), Reason.UNKNOWN_SITE),
    # invalid_plate
    "sql in plate": (read(plate="'; DROP TABLE x;--"), Reason.INVALID_PLATE),
    "empty plate": (read(plate=""), Reason.INVALID_PLATE),
    "separators only": (read(plate=" - . "), Reason.INVALID_PLATE),
    "not a look-alike": (read(plate="\u0416\u0416 12345"), Reason.INVALID_PLATE),
    "escaped nul in plate": (read(plate="QZ\u000012345"), Reason.INVALID_PLATE),
    "wrong format for country": (read(plate="ABC 123", plate_country="DK"), Reason.INVALID_PLATE),
    # future_timestamp
    "year 3000": (read(captured_at="3000-01-01T00:00:00Z"), Reason.FUTURE_TIMESTAMP),
    "an hour ahead": (read(captured_at="2026-11-22T06:00:00Z"), Reason.FUTURE_TIMESTAMP),
    "late for its offset": (
        read(captured_at="2026-11-22T07:06:00+02:00"),
        Reason.FUTURE_TIMESTAMP,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_outcome_alone(case: str) -> None:
    message, expected = CASES[case]
    assert outcome(decode([message]), 0) == expected


@pytest.mark.parametrize("case", list(CASES))
def test_outcome_in_a_valid_batch_keeps_the_others(case: str) -> None:
    message, expected = CASES[case]
    batch: list[bytes | None] = [valid(i) for i in range(60)]
    batch[31] = message
    result = decode(batch)
    assert outcome(result, 31) == expected
    assert result.table.num_rows == 60 - (expected != "stored")
    assert [i for i in range(60) if i != 31] == [
        i for i in result.table.column("msg_index").to_pylist() if i != 31
    ]


def test_rejection_details_never_carry_message_values() -> None:
    messages = [message for message, _ in CASES.values()]
    result = decode(messages)
    secrets = [PLATE, "QZ98765", "NO-NOWHERE", "passwd", "DROP", "sideways", "CAM-UNKNOWN"]
    for rejected in result.rejected:
        for secret in secrets:
            assert secret not in rejected.detail, (rejected.reason, rejected.detail)


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(DEEP, Reason.MALFORMED_JSON, id="100k brackets alone"),
        pytest.param(read(x=None).replace(b"null", DEEP), "stored", id="inside an unknown field"),
        pytest.param(
            json.dumps({**BASE, "x": None}, indent=2).encode().replace(b"null", DEEP),
            "stored",
            id="inside an unknown field, pretty-printed",
        ),
        pytest.param(read(x=None).replace(b"null", DEEP + b"]"), Reason.MALFORMED_JSON, id="extra"),
        pytest.param(read(lane=None).replace(b"null", DEEP), Reason.MALFORMED_JSON, id="in lane"),
    ],
)
def test_deep_nesting_is_read_the_same_on_both_paths(message: bytes, expected: str) -> None:
    limits = DecodeLimits(max_message_bytes=1 << 20)
    assert outcome(decode([message], limits=limits), 0) == expected
    batch: list[bytes | None] = [valid(i) for i in range(30)]
    batch[12] = message
    assert outcome(decode(batch, limits=limits), 12) == expected


def test_within_tolerance_is_stored_and_tolerance_is_configurable() -> None:
    four_minutes = read(captured_at="2026-11-22T05:04:00Z")
    assert outcome(decode([four_minutes]), 0) == "stored"
    strict = DecodeLimits(future_tolerance=timedelta(minutes=1))
    assert outcome(decode([four_minutes], limits=strict), 0) == Reason.FUTURE_TIMESTAMP


def test_exactly_at_the_cutoff_is_stored() -> None:
    at_cutoff = read(captured_at=CUTOFF.isoformat().replace("+00:00", "Z"))
    assert outcome(decode([at_cutoff]), 0) == "stored"


def test_max_message_bytes_is_configurable() -> None:
    message = read()
    tight = DecodeLimits(max_message_bytes=len(message) - 1)
    assert outcome(decode([message], limits=tight), 0) == Reason.OVERSIZED
    exact = DecodeLimits(max_message_bytes=len(message))
    assert outcome(decode([message], limits=exact), 0) == "stored"


def test_naive_clock_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decode_plate_reads(
            [read()], registry=REGISTRY, now=NOW.replace(tzinfo=None), retention_cutoff=CUTOFF
        )


# -- priority: one reason per message, by a fixed order ----------------------------------------

PRIORITY: dict[str, tuple[bytes, str]] = {
    "unsupported beats missing fields": (
        dump({"schema": "plate_read/2", "plate": PLATE}),
        Reason.UNSUPPORTED_FORMAT,
    ),
    "missing field beats bad time": (
        dump({**BASE, "captured_at": "yesterday", "event_id": None}),
        Reason.SCHEMA_VIOLATION,
    ),
    "schema violation beats expired": (
        read(captured_at="1970-01-01T00:00:00Z", direction="up"),
        Reason.SCHEMA_VIOLATION,
    ),
    "expired beats unknown site and bad plate": (
        read(captured_at="1970-01-01T00:00:00Z", site_id="NO-NOWHERE", plate="!!"),
        EXPIRED,
    ),
    "unknown site beats bad plate": (read(site_id="NO-NOWHERE", plate="!!"), Reason.UNKNOWN_SITE),
    "bad plate beats future": (
        read(plate="!!", captured_at="3000-01-01T00:00:00Z"),
        Reason.INVALID_PLATE,
    ),
}


@pytest.mark.parametrize("case", list(PRIORITY))
def test_priority(case: str) -> None:
    message, expected = PRIORITY[case]
    assert outcome(decode([message]), 0) == expected
    assert outcome(decode([*(valid(i) for i in range(20)), message]), 20) == expected


# -- isolation and path agreement --------------------------------------------------------------


def test_one_bad_message_in_the_middle_keeps_all_others() -> None:
    batch: list[bytes | None] = [valid(i) for i in range(1001)]
    batch[500] = read(lane="2")
    result = decode(batch)
    assert [(r.index, r.reason) for r in result.rejected] == [(500, Reason.SCHEMA_VIOLATION)]
    assert result.table.num_rows == 1000
    assert 500 not in result.table.column("msg_index").to_pylist()


def test_many_bad_messages_of_every_kind_are_isolated() -> None:
    kinds = list(CASES.values())
    batch: list[bytes | None] = []
    expected: dict[int, str] = {}
    for i in range(3000):
        if i % 7 == 3:
            message, want = kinds[(i // 7) % len(kinds)]
            batch.append(message)
            expected[i] = want
        else:
            batch.append(valid(i))
            expected[i] = "stored"
    result = decode(batch)
    stored = set(result.table.column("msg_index").to_pylist())
    by_index = {r.index: str(r.reason) for r in result.rejected}
    for i, want in expected.items():
        if want == "stored":
            assert i in stored
        elif want == EXPIRED:
            assert i in result.expired
        else:
            assert by_index[i] == want, i


def test_two_document_values_around_a_type_error() -> None:
    # Found by the property test below: two-document values shift Arrow's row numbers, so
    # its error names the wrong value; each input must still be accounted for exactly once.
    twice = read() + read()
    result = decode([twice, read(lane="2"), twice])
    assert [(r.index, r.reason) for r in result.rejected] == [
        (0, Reason.MALFORMED_JSON),
        (1, Reason.SCHEMA_VIOLATION),
        (2, Reason.MALFORMED_JSON),
    ]
    big: list[bytes | None] = [valid(i) for i in range(500)]
    for i in (10, 11, 200, 201, 202, 499):
        big[i] = twice if i % 2 else read(lane=True)
    result = decode(big)
    assert {r.index for r in result.rejected} == {10, 11, 200, 201, 202, 499}


def _counting_slow_path(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original: Callable[[bytes], dict[str, object]] = decode_module._parse_one

    def counted(value: bytes) -> dict[str, object]:
        calls.append(1)
        return original(value)

    monkeypatch.setattr(decode_module, "_parse_one", counted)
    return calls


def test_lanes_sent_as_text_or_boolean_go_straight_to_the_slow_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The pre-filter finds them in the batch's concatenated bytes and maps each match to
    # its value; empty and null values around them shift nothing.
    parsed: list[bytes] = []
    original: Callable[[bytes], dict[str, object]] = decode_module._parse_one

    def recorded(value: bytes) -> dict[str, object]:
        parsed.append(value)
        return original(value)

    monkeypatch.setattr(decode_module, "_parse_one", recorded)
    odd = {3: read(lane="2"), 4: read(lane=True), 9: read(lane=False)}
    batch: list[bytes | None] = [odd.get(i, valid(i)) for i in range(12)]
    batch[1], batch[7] = b"", None
    result = decode(batch)
    assert sorted(parsed) == sorted(odd.values())
    assert {r.index: r.reason for r in result.rejected if r.index in odd} == dict.fromkeys(
        odd, Reason.SCHEMA_VIOLATION
    )


def test_a_value_repeating_the_lane_shape_costs_one_search() -> None:
    # Each hit skips the rest of its value, so a hostile 64 KB value full of the pattern
    # costs what one hit costs (listing every match took 30x longer per MB).
    searches: list[int] = []

    class Counting:
        def search(self, data: bytes, pos: int = 0) -> object:
            searches.append(pos)
            return decode_module._SLOW_LANE.search(data, pos)

    hostile = b'{"lane":t' * 7000 + b"}"
    raw, data = decode_module.binary_values([valid(0), None, hostile, b"", valid(1), hostile])
    found = decode_module._values_matching(raw, data, Counting())  # type: ignore[arg-type]
    assert found == {2, 5}
    assert len(searches) == 3  # two hits, then one search that finds nothing


def test_literals_are_scanned_for_only_when_the_quotes_do_not_add_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each known non-null field of a parsed value holds 2 quotes (key) or 4 (and a string);
    # the slow-path and unparsed values' quotes are taken off. Only a surplus (an unknown
    # field, where a NaN could hide) costs a scan of the batch's bytes for literals.
    scans: list[tuple[bytes, ...]] = []
    original = decode_module._values_containing

    def recorded(raw: pa.Array, data: bytes, needles: tuple[bytes, ...]) -> set[int]:
        scans.append(needles)
        return original(raw, data, needles)

    monkeypatch.setattr(decode_module, "_values_containing", recorded)
    slow_one = json.dumps({**BASE, "event_id": "E-slow"}, indent=2).encode()  # newlines
    clean = [valid(i) for i in range(50)] + [slow_one, b"", None, b"not json"]
    assert decode(clean).table.num_rows == 51
    assert decode_module._LITERAL_NEEDLES not in scans
    hidden = read(event_id="E-hidden")[:-1] + b',"x":NaN}'
    result = decode([*clean, hidden])
    assert decode_module._LITERAL_NEEDLES in scans
    assert [r.index for r in result.rejected if r.reason == Reason.MALFORMED_JSON][-1] == 54


def test_fast_and_slow_paths_agree_on_valid_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    variants: list[tuple[str, str, dict[str, object]]] = [
        ("QZ 12345", "NO", {}),
        ("\u0430\u0432 12345", "NO", {"vehicle_class": None}),
        ("XQZ 12A", "SE", {"captured_at": "2026-11-22T06:31:14.5+02:00"}),
        ("XQZ-123", "FI", {"confidence": 1}),
        ("QZ 12 345", "DK", {"lane": 1, "camera_id": "SVI-L1-F"}),
        ("B-QZ 123E", "DE", {"firmware": "4.2", "note": "caf\u00e9"}),
        ("WQ 12345", "PL", {"direction": "exit", "lane": 5, "camera_id": "SVI-L5-F"}),
        ("XQZ 123", "LT", {"captured_at": "2026-11-22T04:31:14.123456789Z"}),
        ("QZ12 XQZ", "GB", {}),
    ]
    documents = [
        {**BASE, "event_id": f"E-{i}", "plate": plate, "plate_country": country, **extra}
        for i, (plate, country, extra) in enumerate(variants)
    ]
    calls = _counting_slow_path(monkeypatch)
    fast = decode([dump(d) for d in documents])
    assert calls == []  # really the fast path
    slow = decode([json.dumps(d, indent=2).encode() for d in documents])
    assert len(calls) == len(documents)  # really the slow path
    assert fast.table.num_rows == len(documents)
    assert fast.table.equals(slow.table)


_FIELD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
)


@st.composite
def _documents(draw: st.DrawFn) -> dict[str, object]:
    document = dict(BASE)
    for name in draw(st.sets(st.sampled_from(sorted(BASE)))):
        if draw(st.booleans()):
            del document[name]
        else:
            document[name] = draw(_FIELD_VALUES)
    if draw(st.booleans()):
        document["extra"] = draw(_FIELD_VALUES)
    return document


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_documents(), min_size=1, max_size=12))
def test_fast_and_slow_paths_agree_on_any_document(documents: list[dict[str, object]]) -> None:
    compact = decode([json.dumps(d, separators=(",", ":")).encode() for d in documents])
    pretty = decode([json.dumps(d, indent=1).encode() for d in documents])
    assert compact.table.equals(pretty.table)
    assert compact.rejected == pretty.rejected
    assert compact.expired == pretty.expired


def _mutations(message: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.integers(0, len(message)).map(lambda n: message[:n]),
        st.tuples(st.integers(0, len(message) - 1), st.integers(0, 255)).map(
            lambda p: message[: p[0]] + bytes([p[1]]) + message[p[0] + 1 :]
        ),
        st.binary(max_size=8).map(lambda b: message + b),
        st.just(message + message),
    )


_VALUES = st.one_of(
    st.none(),
    st.binary(max_size=64),
    st.sampled_from([read(), valid(7), read(lane="2"), read(site_id="NO-NOWHERE")]),
    _mutations(read()),
    st.sampled_from([m for m, _ in CASES.values() if m is None or len(m) < 4096]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_VALUES, max_size=40))
def test_decode_never_raises_and_partitions_the_input(values: list[bytes | None]) -> None:
    result = decode(values)  # check_invariants asserts the partition
    for rejected in result.rejected:
        assert isinstance(rejected.reason, Reason)
        assert PLATE not in rejected.detail


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_VALUES, min_size=1, max_size=40), st.integers(1, 80))
def test_a_value_decodes_in_a_batch_as_it_does_alone(values: list[bytes | None], n: int) -> None:
    # The batch's index bookkeeping (fast and slow paths, bisections over the batch, values
    # sent aside after a read) must not move an outcome to another value. Repeating the list
    # makes batches longer than the pieces those bisections stop at.
    batch = values * n
    together = decode(batch)
    alone = {v: outcome(decode([v]), 0) for v in values}
    assert [outcome(together, i) for i in range(len(batch))] == [alone[v] for v in batch]


@pytest.mark.parametrize("code", ["XX", "ZZ", "QQ", "AA"])
def test_a_code_that_names_no_country_is_stored_as_unknown(code: str) -> None:
    # Generic plate rule for the unknown country; never stored as if XX were a country.
    result = decode([read(plate_country=code, plate="QX 123")])
    assert result.rejected == []
    assert result.table.column("plate_country").to_pylist() == ["ZZ"]
    assert result.table.column("plate").to_pylist() == ["QX123"]


def test_unknown_country_still_needs_a_plausible_plate() -> None:
    result = decode([read(plate_country="XX", plate="QQQQQQ")])  # no digit: the generic rule
    assert [r.reason for r in result.rejected] == [Reason.INVALID_PLATE]
