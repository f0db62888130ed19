from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.live.watchlist import (
    CONFUSION_GROUPS,
    Entry,
    Rejection,
    RejectReason,
    Removal,
    Upsert,
    WatchlistIndex,
    confusion_class,
    entry_from_record,
    normalise_fast,
    parse_change,
)
from pipeline.reference.plates import normalise_plate

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=30)


def entry(plate: str, list_name: str = "stolen", expires_at: datetime = LATER) -> Entry:
    return Entry(plate, list_name, "R12", "officer-1", expires_at)


def value(**fields: object) -> bytes:
    record: dict[str, object] = {
        "list": "stolen",
        "reason": "R12",
        "added_by": "officer-1",
        "expires_at": "2026-12-01T00:00:00Z",
    }
    record.update(fields)
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


# --- normalisation and confusion classes ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("ab 123-45", "AB12345"), ("AB12345", "AB12345"), ("\u0410\u0412 12345", "AB12345"),
     ("xy.9_9\t9", "XY999"), ("", "")],
)  # fmt: skip
def test_normalise_fast_examples(raw: str, expected: str) -> None:
    assert normalise_fast(raw) == expected


@given(st.text(max_size=12))
def test_normalise_fast_agrees_with_the_ingest_normaliser(raw: str) -> None:
    assert normalise_fast(raw) == normalise_plate(raw)


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -.abcxyz", max_size=10))
def test_normalise_fast_agrees_on_plate_like_ascii(raw: str) -> None:
    assert normalise_fast(raw) == normalise_plate(raw)


def test_each_confusion_group_maps_to_one_character() -> None:
    for group in CONFUSION_GROUPS:
        assert {confusion_class(c) for c in group} == {group[0]}
    assert confusion_class("AB12345") == confusion_class("A812345") == "A812345"
    assert confusion_class("QO0D") == "0000"
    assert confusion_class("S5Z2G6I1") == "55226611"
    assert confusion_class("XK7") == "XK7"  # no confusable characters


# --- records --------------------------------------------------------------------------------------


def test_a_valid_record_is_an_upsert_under_the_normalised_plate() -> None:
    change = parse_change(b"ab 12345", value(), now=NOW, max_days=90)
    assert change == Upsert(
        Entry("AB12345", "stolen", "R12", "officer-1", datetime(2026, 12, 1, tzinfo=UTC))
    )


def test_a_tombstone_removes_the_normalised_plate() -> None:
    assert parse_change(b"AB 12345", None, now=NOW, max_days=90) == Removal("AB12345")


@pytest.mark.parametrize(
    ("key", "raw", "reason"),
    [
        (b"AB12345", value(expires_at=...), RejectReason.NO_EXPIRY),
        (b"AB12345", value(expires_at=None), RejectReason.NO_EXPIRY),
        (b"AB12345", value(expires_at="2026-12-01T00:00:00"), RejectReason.BAD_EXPIRY),
        (b"AB12345", value(expires_at="next week"), RejectReason.BAD_EXPIRY),
        (b"AB12345", value(expires_at=1767225600), RejectReason.BAD_EXPIRY),
        (b"AB12345", value(expires_at="2026-11-22T12:00:00Z"), RejectReason.EXPIRED),
        (b"AB12345", value(expires_at="2027-02-21T12:00:01Z"), RejectReason.EXPIRY_TOO_FAR),
        (b"AB12345", value(list="Stolen Cars"), RejectReason.INVALID_FIELD),
        (b"AB12345", value(reason=...), RejectReason.INVALID_FIELD),
        (b"AB12345", value(added_by=""), RejectReason.INVALID_FIELD),
        (b"AB12345", b"[1, 2]", RejectReason.MALFORMED),
        (b"AB12345", b"{not json", RejectReason.MALFORMED),
        (b"AB12345", b"\xff\xfe", RejectReason.MALFORMED),
        (b"AB12345", b"{" + b" " * 5000 + b"}", RejectReason.MALFORMED),
    ],
)
def test_records_that_break_a_rule_are_rejected_and_name_the_plate(
    key: bytes, raw: bytes, reason: RejectReason
) -> None:
    assert parse_change(key, raw, now=NOW, max_days=90) == Rejection("AB12345", reason)


def test_the_maximum_expiry_is_inclusive() -> None:
    edge = (NOW + timedelta(days=90)).isoformat()
    assert isinstance(
        parse_change(b"AB12345", value(expires_at=edge), now=NOW, max_days=90), Upsert
    )


@pytest.mark.parametrize(
    "key", [None, b"", b"\xff", b"A", b"AB-12-34-56-78-9", b"AB?12", b"x" * 65]
)
def test_bad_keys_are_rejected_without_a_plate(key: bytes | None) -> None:
    assert parse_change(key, value(), now=NOW, max_days=90) == Rejection(
        None, RejectReason.INVALID_KEY
    )


def test_entries_round_trip_through_the_table_record() -> None:
    original = entry("AB12345")
    assert entry_from_record("AB12345", original.to_record()) == original
    # An entry that expired while the app was down still comes back, to be expired at once.
    old = entry("AB12345", expires_at=NOW - timedelta(days=1))
    assert entry_from_record("AB12345", old.to_record()) == old
    assert entry_from_record("AB12345", {"list": "x"}) is None
    assert entry_from_record(7, original.to_record()) is None


# --- the index ------------------------------------------------------------------------------------


def test_exact_match() -> None:
    index = WatchlistIndex()
    index.put(entry("AB12345"))
    assert index.match("AB12345", at=NOW) == [(entry("AB12345"), "exact")]
    assert index.match("AB12346", at=NOW) == []


@pytest.mark.parametrize("read", ["A812345", "ABI2345", "A8I2345", "AB1Z345", "AB1234S"])
def test_reads_differing_only_by_ocr_confusions_are_possible_matches(read: str) -> None:
    index = WatchlistIndex()
    index.put(entry("AB12345"))
    assert index.match(read, at=NOW) == [(entry("AB12345"), "possible")]


@pytest.mark.parametrize("read", ["AC12345", "AB12344", "AB1234", "AB123456", "XB12345"])
def test_other_differences_are_no_match(read: str) -> None:
    index = WatchlistIndex()
    index.put(entry("AB12345"))
    assert index.match(read, at=NOW) == []


def test_an_exact_match_is_never_also_possible() -> None:
    index = WatchlistIndex()
    index.put(entry("AB12345", "stolen"))
    index.put(entry("A812345", "wanted"))  # the same confusion class
    assert index.match("AB12345", at=NOW) == [(entry("AB12345", "stolen"), "exact")]
    assert index.match("A8I2345", at=NOW) == [
        (entry("A812345", "wanted"), "possible"),
        (entry("AB12345", "stolen"), "possible"),
    ]


def test_expired_entries_never_hit_and_are_popped() -> None:
    index = WatchlistIndex()
    index.put(entry("AB12345", expires_at=NOW + timedelta(seconds=10)))
    index.put(entry("CD12345", expires_at=NOW + timedelta(days=1)))
    later = NOW + timedelta(seconds=10)
    assert index.match("AB12345", at=later) == []
    assert index.match("A812345", at=later) == []
    assert index.pop_expired(NOW) == []
    assert index.pop_expired(later) == ["AB12345"]
    assert "AB12345" not in index
    assert len(index) == 1


def test_a_renewed_entry_is_not_expired_by_its_old_expiry() -> None:
    index = WatchlistIndex()
    index.put(entry("AB12345", expires_at=NOW + timedelta(seconds=10)))
    index.put(entry("AB12345", expires_at=NOW + timedelta(days=1)))
    assert index.pop_expired(NOW + timedelta(seconds=10)) == []
    assert index.match("AB12345", at=NOW + timedelta(hours=1))


def test_removal_leaves_the_rest_of_the_class() -> None:
    index = WatchlistIndex()
    index.put(entry("AB12345", "stolen"))
    index.put(entry("A812345", "wanted"))
    assert index.remove("AB12345")
    assert not index.remove("AB12345")
    assert index.match("AB12345", at=NOW) == [(entry("A812345", "wanted"), "possible")]
    assert index.remove("A812345")
    assert index.match("AB12345", at=NOW) == []
    assert len(index) == 0


def test_a_large_list_finds_exactly_the_confusable_plates() -> None:
    index = WatchlistIndex()
    for i in range(100_000):
        index.put(entry(f"XK{i:05d}"))
    assert index.match("XK00042", at=NOW) == [(entry("XK00042"), "exact")]
    # 0 reads as O/Q/D: XK0OQ42 is possibly XK00042, and nothing else.
    assert index.match("XKDOQ42", at=NOW) == [(entry("XK00042"), "possible")]
    assert index.match("XK1I1I1", at=NOW) == [(entry("XK11111"), "possible")]
    assert index.match("XY00042", at=NOW) == []
