"""A mixed batch: canonical reads and every vendor's payloads, decoded together."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.codec.batch import decode_batch
from pipeline.codec.plate_reads import DecodeLimits
from pipeline.codec.reasons import Reason
from pipeline.codec.vendors import VENDOR_RULES, VENDORS
from pipeline.reference.sites import DEFAULT_REGISTRY, load_registry
from pipeline.simulate.traffic import TrafficModel, encode
from pipeline.simulate.vendor_payloads import encode_vendor, mapped_event_id

REGISTRY = load_registry(DEFAULT_REGISTRY, VENDOR_RULES)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
FORMAT_OF_VENDOR = {
    "canonical": "canonical",
    "openalpr": "openalpr_group",
    "platerecognizer": "platerecognizer",
    "hikvision": "hikvision",
    "genetec": "genetec",
}


def messages(count: int, seed: int = 3) -> tuple[list[bytes], list[str | None], list[str]]:
    """Encoded messages of every format, their content types and expected event ids."""
    model = TrafficModel(REGISTRY, seed=seed, formats=VENDORS, retransmit_ratio=0.0)
    reads = model.reads(NOW - timedelta(hours=6))
    rng = random.Random(seed)
    values, types, ids = [], [], []
    for _ in range(count):
        read = next(reads)
        camera = REGISTRY.camera(str(read["camera_id"]))
        assert camera is not None
        if camera.vendor == "canonical":
            values.append(encode(read)[1])
            types.append(None)
            ids.append(str(read["event_id"]))
        else:
            value, content_type = encode_vendor(read, camera, rng)
            values.append(value)
            types.append(content_type)
            ids.append(mapped_event_id(read, camera))
    return values, types, ids


def decode(values: list[bytes], types: list[str | None]):  # type: ignore[no-untyped-def]
    return decode_batch(
        values,
        types,
        registry=REGISTRY,
        now=NOW,
        retention_cutoff=NOW - timedelta(days=180),
        limits=DecodeLimits(),
        vendor_max_bytes=2 * 1024 * 1024,
    )


def test_every_format_lands_as_rows_with_its_source_format() -> None:
    values, types, ids = messages(600)
    batch = decode(values, types)
    table = batch.result.table
    assert batch.result.rejected == []
    assert len(table) == len(values)
    assert sorted(table["event_id"].to_pylist()) == sorted(ids)
    seen_formats = set(table["source_format"].to_pylist())
    assert seen_formats == set(FORMAT_OF_VENDOR.values())
    for row in table.to_pylist():
        camera = REGISTRY.camera(row["camera_id"])
        assert camera is not None
        assert row["source_format"] == FORMAT_OF_VENDOR[camera.vendor]
        if camera.vendor == "canonical":
            assert row["candidates"] is None
    # Images never reach a row: no long base64 run survives anywhere.
    assert not re.search(r"[A-Za-z0-9+/=]{64,}", str(table.to_pylist()))
    assert any(re.search(rb"[A-Za-z0-9+/=]{64,}", v) for v in values)  # they were sent
    assert batch.extra_reads == 0


def _plate_recognizer(values: list[bytes], types: list[str | None]) -> int:
    return next(i for i, v in enumerate(values) if b'"hook"' in v)


def test_a_payload_with_several_reads_gives_several_rows_and_reconciles() -> None:
    values, types, _ = messages(300)
    i = _plate_recognizer(values, types)
    doc = json.loads(values[i])
    first = doc["data"]["results"][0]
    doc["data"]["results"] = [first, {**first, "plate": "zz12345"}, {**first, "plate": "zz54321"}]
    values[i] = json.dumps(doc).encode()
    batch = decode(values, types)
    assert batch.extra_reads == 2
    assert batch.extra_by_format == {"platerecognizer": 2}
    rows_of_message = [m for m in batch.result.table["msg_index"].to_pylist() if m == i]
    assert len(rows_of_message) == 3
    reads = len(values) + batch.extra_reads
    result = batch.result
    assert reads == len(result.table) + len(result.rejected) + len(result.expired)


def test_one_bad_read_rejects_its_whole_payload() -> None:
    values, types, _ = messages(300)
    i = _plate_recognizer(values, types)
    doc = json.loads(values[i])
    first = doc["data"]["results"][0]
    doc["data"]["results"] = [first, {**first, "plate": "1;DROP--"}]
    values[i] = json.dumps(doc).encode()
    batch = decode(values, types)
    assert [r.index for r in batch.result.rejected] == [i]
    assert batch.result.rejected[0].reason is Reason.INVALID_PLATE
    assert batch.result.rejected[0].detail.startswith("platerecognizer:")
    assert i not in batch.result.table["msg_index"].to_pylist()
    assert batch.extra_reads == 0


@pytest.mark.parametrize(
    ("value", "content_type", "reason"),
    [
        (
            b"<ResponseStatus><code>1</code></ResponseStatus>",
            "application/xml",
            "unsupported_format",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><EventNotificationAlert/>',
            None,
            "malformed_xml",
        ),
        (b'{"hook": {"target": "x"}, "data": {}}', "application/json", "schema_violation"),
        (b'{"data_type": "alpr_group", "x": ' + b'"a" ' * 10 + b"}", None, "malformed_json"),
    ],
)
def test_broken_vendor_payloads_are_rejected_with_a_reason(
    value: bytes, content_type: str | None, reason: str
) -> None:
    values, types, _ = messages(20)
    batch = decode([*values, value], [*types, content_type])
    assert [(r.index, r.reason.value) for r in batch.result.rejected] == [(20, reason)]
    assert len(batch.result.table) == 20


def test_vendor_payload_over_its_limit_is_oversized() -> None:
    values, types, _ = messages(50)
    i = _plate_recognizer(values, types)
    doc = json.loads(values[i])
    doc["image"] = "A" * (3 * 1024 * 1024)
    values[i] = json.dumps(doc).encode()
    batch = decode(values, types)
    assert [(r.index, r.reason) for r in batch.result.rejected] == [(i, Reason.OVERSIZED)]
