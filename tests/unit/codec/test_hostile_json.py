"""One hostile-JSON policy for every JSON decoder (see :mod:`pipeline.codec`).

Each case takes a valid message of a decoder, replaces the value of one string field that the
decoder reads, and checks the message is rejected as ``malformed_json`` with nothing stored.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from pipeline.codec.batch import decode_batch
from pipeline.codec.passenger_lists import (
    PassengerLimits,
    decode_passenger_lists,
    manifest_document,
)
from pipeline.codec.paxlst import Person
from pipeline.codec.plate_reads import DecodeLimits, decode_plate_reads
from pipeline.codec.reasons import Reason, Rejection, strict_json
from pipeline.codec.vendors import BOM, VENDOR_RULES
from pipeline.reference.sites import DEFAULT_REGISTRY, load_registry
from pipeline.simulate.traffic import TrafficModel
from pipeline.simulate.vendor_payloads import encode_vendor
from tests.unit.codec.manifests import departure

REGISTRY = load_registry(DEFAULT_REGISTRY, VENDOR_RULES)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=180)
MARK = "HOSTILE-MARK"
LIMITS = DecodeLimits(max_message_bytes=1 << 20)

Outcome = tuple[int, list[Reason]]  # rows stored, reasons of the rejections


@dataclass(frozen=True)
class Decoder:
    name: str
    document: dict[str, Any]  # a valid message, decoded as one row or more
    key: str  # a string field the decoder reads ...
    place: Callable[[dict[str, Any]], dict[str, Any]]  # ... inside this object
    decode: Callable[[bytes], Outcome]
    indent: int | None = None  # pretty-printed: the canonical decoder's slow path


def _reads() -> dict[str, dict[str, Any]]:
    """One read of a camera of every vendor, from the simulator."""
    model = TrafficModel(
        REGISTRY,
        seed=11,
        formats=("canonical", "openalpr", "platerecognizer", "genetec"),
        retransmit_ratio=0.0,
    )
    found: dict[str, dict[str, Any]] = {}
    reads = model.reads(NOW - timedelta(hours=1))
    while len(found) < 4:
        read = next(reads)
        found.setdefault(REGISTRY.camera(str(read["camera_id"])).vendor, dict(read))
    return found


READS = _reads()


def _vendor_document(vendor: str) -> dict[str, Any]:
    read = READS[vendor]
    payload, _ = encode_vendor(read, REGISTRY.camera(str(read["camera_id"])), random.Random(1))
    document: dict[str, Any] = json.loads(payload.removeprefix(BOM))
    return document


def _canonical(value: bytes) -> Outcome:
    result = decode_plate_reads(
        [value], registry=REGISTRY, now=NOW, retention_cutoff=CUTOFF, limits=LIMITS
    )
    return len(result.table), [r.reason for r in result.rejected]


def _vendor(value: bytes) -> Outcome:
    batch = decode_batch(
        [value],
        ["application/json"],
        registry=REGISTRY,
        now=NOW,
        retention_cutoff=CUTOFF,
        limits=LIMITS,
        vendor_max_bytes=1 << 20,
    )
    return len(batch.result.table), [r.reason for r in batch.result.rejected]


def _passengers(value: bytes) -> Outcome:
    collected = int((NOW - timedelta(hours=5)).timestamp() * 1000)
    batch = decode_passenger_lists(
        [value], [collected], retention_cutoff=CUTOFF, limits=PassengerLimits()
    )
    return len(batch.table), [r.reason for r in batch.rejected]


def _top(doc: dict[str, Any]) -> dict[str, Any]:
    return doc


# Invented: a syllable name and a made-up document.
PERSON = Person(
    "passenger", "Talveno", "Kari", date(1980, 1, 2), "F", "NOR", "P", "X1", "NOR", None
)
CANONICAL = {k: v for k, v in READS["canonical"].items() if v is not None}
DECODERS = [
    Decoder("canonical, vectorised path", CANONICAL, "plate", _top, _canonical),
    Decoder("canonical, slow path", CANONICAL, "plate", _top, _canonical, indent=2),
    Decoder("openalpr", _vendor_document("openalpr"), "best_plate_number", _top, _vendor),
    Decoder(
        "platerecognizer",
        _vendor_document("platerecognizer"),
        "plate",
        lambda doc: doc["data"]["results"][0],
        _vendor,
    ),
    Decoder("genetec", _vendor_document("genetec"), "Plate", _top, _vendor),
    Decoder(
        "passenger list",
        manifest_document(departure(PERSON)),
        "surname",
        lambda doc: doc["people"][0],
        _passengers,
    ),
]

DEEP = b"[" * 5_000 + b"]" * 5_000
# Each replaces the marked string value; ``original`` is that value as JSON.
HOSTILE: dict[str, Callable[[bytes, str], bytes]] = {
    "repeated read key": lambda original, key: original + f', "{key}": '.encode() + original,
    "unpaired high surrogate": lambda original, key: b'"AB\\ud800C"',
    "unpaired low surrogate": lambda original, key: b'"AB\\udfffC"',
    "NaN": lambda original, key: b"NaN",
    "Infinity in an unknown field": lambda original, key: original + b', "extra": -Infinity',
    "nested too deep": lambda original, key: DEEP,
    "invalid UTF-8": lambda original, key: b'"AB\xffC"',
    "second document": lambda original, key: original + b"} {",
}


def _message(decoder: Decoder, hostile: Callable[[bytes, str], bytes] | None) -> bytes:
    doc = copy.deepcopy(decoder.document)
    place = decoder.place(doc)
    original = json.dumps(place[decoder.key], ensure_ascii=False).encode()
    place[decoder.key] = MARK
    text = json.dumps(doc, indent=decoder.indent, ensure_ascii=False).encode()
    replacement = original if hostile is None else hostile(original, decoder.key)
    assert text.count(f'"{MARK}"'.encode()) == 1
    return text.replace(f'"{MARK}"'.encode(), replacement)


@pytest.mark.parametrize("decoder", DECODERS, ids=[d.name for d in DECODERS])
def test_the_valid_message_is_stored(decoder: Decoder) -> None:
    # The cases below then fail for the hostile part alone.
    stored, reasons = decoder.decode(_message(decoder, None))
    assert (stored > 0, reasons) == (True, [])


@pytest.mark.parametrize("hostile", list(HOSTILE))
@pytest.mark.parametrize("decoder", DECODERS, ids=[d.name for d in DECODERS])
def test_hostile_json_is_malformed_and_nothing_is_stored(decoder: Decoder, hostile: str) -> None:
    stored, reasons = decoder.decode(_message(decoder, HOSTILE[hostile]))
    assert (stored, reasons) == (0, [Reason.MALFORMED_JSON])


def test_canonical_reads_skip_what_they_do_not_read() -> None:
    # The documented scope: the vectorised reader never parses unknown fields, so their
    # repeats are not seen; both canonical paths agree and store the read.
    for indent in (None, 2):
        doc = dict(CANONICAL, extra=1)
        text = json.dumps(doc, indent=indent).replace('"extra": 1', '"extra": 1, "extra": 2')
        assert _canonical(text.encode()) == (1, [])


def test_a_read_shape_holds_repeats_to_the_fields_read_at_their_places() -> None:
    # OpenALPR groups' scope (pipeline.codec): a repeat elsewhere, even of a read field's
    # name, is not seen; a repeat of a read field is, in any item of a list.
    shape = {"a": {}, "b": {"c": {}}}
    text = b'{"x": 1, "x": 2, "y": {"a": 1, "a": 2}, "b": [{"c": 1, "z": 1, "z": 2}], "a": 3}'
    assert strict_json(text, read=shape) == {"x": 2, "y": {"a": 2}, "b": [{"c": 1, "z": 2}], "a": 3}
    repeats = {
        b'{"a": 1, "a": 2}': "a",
        b'{"b": {"c": 1, "c": 2}}': "b.c",
        b'{"b": [{"c": 1}, {"c": 1, "c": 1}]}': "b.c",
        b'{"b": {}, "b": {}}': "b",
    }
    for repeated, field in repeats.items():
        with pytest.raises(Rejection) as caught:
            strict_json(repeated, read=shape)
        assert (caught.value.reason, caught.value.detail) == (
            Reason.MALFORMED_JSON,
            f"field '{field}' appears more than once",
        )
    # Every other rule still covers the whole document.
    for hostile in (
        b'{"x": NaN}',
        b'{"x": "\\ud800"}',
        b'{"x": 1} 2',
        b'{"x": ' + b"9" * 5000 + b"}",
    ):
        with pytest.raises(Rejection) as caught:
            strict_json(hostile, read=shape)
        assert caught.value.reason == Reason.MALFORMED_JSON
