"""The producer JSON Schema, the decoder and the committed files agree."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from jsonschema import Draft202012Validator

from pipeline import schema_files
from pipeline.codec.plate_reads import decode_plate_reads
from pipeline.codec.vendors import VENDOR_RULES
from pipeline.reference.sites import DEFAULT_REGISTRY, load_registry
from pipeline.schemas import plate_read_json_schema
from pipeline.simulate.traffic import TrafficModel

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
REGISTRY = load_registry(DEFAULT_REGISTRY, VENDOR_RULES)
VALIDATOR = Draft202012Validator(plate_read_json_schema())


def _decode(docs: list[dict[str, object]]) -> tuple[int, int]:
    result = decode_plate_reads(
        [json.dumps(d).encode() for d in docs],
        registry=REGISTRY,
        now=NOW,
        retention_cutoff=NOW - timedelta(days=180),
    )
    return len(result.table), len(result.rejected)


def test_committed_schema_files_match_the_code() -> None:
    assert schema_files.stale() == [], "run `anpr schemas write` and commit pipeline/data/schemas/"


def test_schema_is_valid_json_schema() -> None:
    Draft202012Validator.check_schema(plate_read_json_schema())


def test_simulated_reads_pass_both_the_schema_and_the_decoder() -> None:
    model = TrafficModel(REGISTRY, seed=4)
    reads = model.reads(NOW - timedelta(days=1))
    docs = [next(reads) for _ in range(2000)]
    for doc in docs:
        VALIDATOR.validate(doc)
    assert _decode(docs) == (2000, 0)


BASE = {
    "schema": "plate_read/1",
    "event_id": "SVI-TEST-000000001",
    "site_id": "NO-SVINESUND",
    "camera_id": "",  # filled below with a registered camera
    "lane": 1,
    "direction": "entry",
    "captured_at": "2026-11-22T04:31:14.123Z",
    "plate": "ZZ 12345",
    "plate_country": "NO",
    "confidence": 0.97,
    "vehicle_class": "car",
}


@pytest.mark.parametrize(
    "change",
    [
        {"lane": "2"},
        {"lane": 0},
        {"lane": 100},
        {"direction": "sideways"},
        {"captured_at": "2026-11-22T04:31:14"},
        {"captured_at": "2026-11-22 04:31:14Z"},
        {"plate_country": "no"},
        {"confidence": 1.5},
        {"event_id": "../x"},
        {"event_id": "x" * 65},
        {"vehicle_class": "CAR"},
        {"schema": "plate_read/2"},
        {"plate": "X" * 25},
    ],
)
def test_schema_and_decoder_both_refuse(change: dict[str, object]) -> None:
    camera = next(c for c in REGISTRY.site("NO-SVINESUND").cameras)
    good = {**BASE, "camera_id": camera.id, "lane": camera.lane}
    assert VALIDATOR.is_valid(good)
    assert _decode([good]) == (1, 0)
    bad = {**good, **change}
    assert not VALIDATOR.is_valid(bad)
    assert _decode([bad]) == (0, 1)


@pytest.mark.parametrize("missing", [k for k in BASE if k != "vehicle_class"])
def test_required_fields_agree(missing: str) -> None:
    camera = next(c for c in REGISTRY.site("NO-SVINESUND").cameras)
    doc = {k: v for k, v in {**BASE, "camera_id": camera.id}.items() if k != missing}
    assert not VALIDATOR.is_valid(doc)
    assert _decode([doc]) == (0, 1)
