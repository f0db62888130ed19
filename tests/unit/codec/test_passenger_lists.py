"""Passenger-list decoding: JSON and PAXLST give the same rows; normalisation; minimisation."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE

from pipeline.codec.passenger_lists import (
    PassengerLimits,
    decode_passenger_lists,
    manifest_document,
    normalise_name,
)
from pipeline.codec.paxlst import Manifest, Person, write_interchange
from pipeline.codec.reasons import Reason
from pipeline.ingest.passengers import _timestamp_ms
from pipeline.schemas import MINIMISABLE_FIELDS
from tests.unit.codec.manifests import departure

COLLECTED_MS = int(datetime(2026, 11, 22, 7, 0, tzinfo=UTC).timestamp() * 1000)
CUTOFF = datetime(2026, 5, 22, tzinfo=UTC)
MANIFEST = departure(
    Person("passenger", "østbø", "åsa   mari", date(1980, 1, 2), "F", "NOR", "P", "X1", "NOR",
           "ab-12 345"),
    Person("driver", "Kaloven", "Per", date(1970, 3, 4), "M", "SWE", "P", "Y7", "SWE",
           "abc 12d"),
    Person("crew", "Merando", None, None, None, None, None, None, None, None),
)  # fmt: skip


def as_json(m: Manifest, **extra: Any) -> dict[str, Any]:
    # Fields the purpose does not need: accepted and dropped.
    dropped = {"email": "someone@example.invalid", "seat": "12A", "baggage": 2, "booking": "BK1"}
    return {
        **manifest_document(m, dropped),
        "contact": {"phone": "+47 00 00 00 00", "address": "Nowhere 1"},
        **extra,
    }


def decode(values: list[bytes | None], **limits: Any) -> Any:
    return decode_passenger_lists(
        values,
        [COLLECTED_MS] * len(values),
        retention_cutoff=CUTOFF,
        limits=PassengerLimits(**limits),
    )


def rows_without_source(table: Any) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in row.items() if k not in ("source_format", "msg_index")}
        for row in table.to_pylist()
    ]


@pytest.mark.parametrize("groups", [False, True])
def test_json_and_paxlst_give_the_same_rows(groups: bool) -> None:
    paxlst = write_interchange([MANIFEST], groups=groups, separators=("\x1f", "\x1d", ".", "?",
                                                                       " ", "\x1c"))  # fmt: skip
    batch = decode([json.dumps(as_json(MANIFEST)).encode(), paxlst])
    assert batch.rejected == []
    assert batch.formats == ["json", "paxlst"]
    rows = rows_without_source(batch.table)
    assert len(rows) == 6
    assert rows[:3] == rows[3:]
    assert batch.table["source_format"].to_pylist() == ["json"] * 3 + ["paxlst"] * 3


def test_names_and_plates_are_normalised() -> None:
    batch = decode([json.dumps(as_json(MANIFEST)).encode()])
    first, driver, crew = batch.table.to_pylist()
    assert (first["surname"], first["given_names"]) == ("ØSTBØ", "ÅSA MARI")
    assert (first["vehicle_plate"], first["vehicle_plate_raw"]) == ("AB12345", "ab-12 345")
    assert (driver["role"], driver["vehicle_plate"]) == ("driver", "ABC12D")
    assert (crew["role"], crew["vehicle_plate"], crew["given_names"]) == ("crew", None, None)
    assert first["collected_at"] == datetime(2026, 11, 22, 7, 0, tzinfo=UTC)


def test_normalise_name() -> None:
    assert normalise_name("  øStby \t åse\n") == "ØSTBY ÅSE"
    assert normalise_name("   ") is None


def test_minimisation_drops_what_is_not_kept_and_never_stores_contact_details() -> None:
    kept = ("surname", "vehicle_plate")
    batch = decode([json.dumps(as_json(MANIFEST)).encode()], kept_fields=kept)
    row = batch.table.to_pylist()[0]
    for name in MINIMISABLE_FIELDS:
        if name not in kept:
            assert row[name] is None, name
    assert (row["surname"], row["vehicle_plate"]) == ("ØSTBØ", "AB12345")
    assert not {"email", "seat", "baggage", "booking", "contact"} & set(row)
    # Ids still tell people apart, and do not change with the configuration.
    full = decode([json.dumps(as_json(MANIFEST)).encode()])
    assert batch.table["person_id"].to_pylist() == full.table["person_id"].to_pylist()
    assert len(set(full.table["person_id"].to_pylist())) == 3


def test_a_resent_list_gives_the_same_person_ids() -> None:
    one = decode([json.dumps(as_json(MANIFEST)).encode()])
    again = decode([write_interchange([MANIFEST])])
    assert one.table["person_id"].to_pylist() == again.table["person_id"].to_pylist()


def _json(**changes: Any) -> bytes:
    doc = as_json(MANIFEST)
    doc.update(changes)
    return json.dumps(doc).encode()


def _person(**changes: Any) -> bytes:
    doc = as_json(MANIFEST)
    doc["people"][0].update(changes)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", Reason.EMPTY_VALUE),
        (None, Reason.EMPTY_VALUE),
        (b"\x00\xff\xfe garbage", Reason.MALFORMED_JSON),
        (b"[1, 2]", Reason.MALFORMED_JSON),
        (_json(schema="passenger_list/9"), Reason.UNSUPPORTED_FORMAT),
        (_json(schema=None), Reason.SCHEMA_VIOLATION),
        (_json(carrier=None), Reason.SCHEMA_VIOLATION),
        (_json(departure_port="Larvik"), Reason.SCHEMA_VIOLATION),
        (_json(departure_at="2026-11-22 08:00"), Reason.SCHEMA_VIOLATION),
        (_json(direction="north"), Reason.SCHEMA_VIOLATION),
        (_json(people=[]), Reason.SCHEMA_VIOLATION),
        (_json(people="everyone"), Reason.SCHEMA_VIOLATION),
        (_person(role="captain"), Reason.SCHEMA_VIOLATION),
        (_person(surname=None), Reason.SCHEMA_VIOLATION),
        (_person(surname=7), Reason.SCHEMA_VIOLATION),
        (_person(nationality="NO"), Reason.SCHEMA_VIOLATION),
        (_person(date_of_birth="1980-02-30"), Reason.SCHEMA_VIOLATION),
        (_person(sex="Q"), Reason.SCHEMA_VIOLATION),
        (_person(surname="A" * 71), Reason.SCHEMA_VIOLATION),
        (b"UNA:+.? 'UNB+UNOY:4+X+Y+1'", Reason.MALFORMED_EDIFACT),
        # Times with no UTC equivalent, and times no list can honestly carry.
        (_json(departure_at="0001-01-01T00:00:00+01:00"), Reason.SCHEMA_VIOLATION),
        (_json(arrival_at="9999-12-31T23:59:59-01:00"), Reason.SCHEMA_VIOLATION),
        (_json(departure_at="2028-01-01T08:00:00Z"), Reason.SCHEMA_VIOLATION),
        (_json(arrival_at="2024-01-01T08:00:00Z"), Reason.SCHEMA_VIOLATION),
        # "\ud800" escapes decode to lone surrogates: no text, and no UTF-8 for the lake.
        (_person(surname="\ud800"), Reason.MALFORMED_JSON),
        (_person(vehicle_plate="AB\udfff1"), Reason.MALFORMED_JSON),
    ],
)
def test_bad_lists_are_rejected_with_a_reason(value: bytes | None, reason: Reason) -> None:
    batch = decode([value, json.dumps(as_json(MANIFEST)).encode()])
    assert [(r.index, r.reason) for r in batch.rejected] == [(0, reason)]
    assert set(batch.table["msg_index"].to_pylist()) == {1}
    for r in batch.rejected:  # details never carry a value from the message
        assert "ØSTBØ" not in r.detail
        assert "X1" not in r.detail


def test_oversized_and_expired() -> None:
    big = _person(surname="B" * 60) + b" " * 5000
    batch = decode_passenger_lists(
        [big, _json(), _json()],
        [COLLECTED_MS, COLLECTED_MS, int(CUTOFF.timestamp() * 1000) - 1],
        retention_cutoff=CUTOFF,
        limits=PassengerLimits(max_message_bytes=4096),
    )
    assert [(r.index, r.reason) for r in batch.rejected] == [(0, Reason.OVERSIZED)]
    assert batch.expired == [2]
    assert set(batch.table["msg_index"].to_pylist()) == {1}


def test_paxlst_control_total_mismatch_rejects_the_whole_interchange() -> None:
    text = write_interchange([MANIFEST, MANIFEST]).decode()
    bad = text.replace("CNT+42:3'", "CNT+42:2'", 1).encode()
    batch = decode([bad])
    assert [r.reason for r in batch.rejected] == [Reason.CONTROL_TOTAL_MISMATCH]
    assert batch.table.num_rows == 0


class _Message:
    def __init__(self, kind: int, stamp: int) -> None:
        self._timestamp = (kind, stamp)

    def timestamp(self) -> tuple[int, int]:
        return self._timestamp


@pytest.mark.parametrize(
    ("kind", "stamp", "expected"),
    [
        (TIMESTAMP_CREATE_TIME, COLLECTED_MS - 5, COLLECTED_MS - 5),
        (TIMESTAMP_CREATE_TIME, 2**62, COLLECTED_MS),  # a producer clock far ahead
        (TIMESTAMP_CREATE_TIME, COLLECTED_MS + 1, COLLECTED_MS),
        (TIMESTAMP_NOT_AVAILABLE, 0, COLLECTED_MS),
    ],
)
def test_collection_time_is_the_kafka_timestamp_never_later_than_now(
    kind: int, stamp: int, expected: int
) -> None:
    assert _timestamp_ms(_Message(kind, stamp), COLLECTED_MS) == expected
