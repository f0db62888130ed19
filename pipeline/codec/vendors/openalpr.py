"""OpenALPR / Rekor Scout webhooks: ``alpr_group`` (one vehicle) and ``alpr_results`` (a frame).

Field mapping: see the table in :mod:`pipeline.codec.vendors`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import partial
from typing import Final

from pipeline.codec.reasons import Reason, Rejection
from pipeline.codec.vendors._shared import (
    BOM,
    CanonicalRead,
    MappedRead,
    VendorCodec,
    VendorRegistry,
    as_object,
    attempt,
    candidates_of,
    canonical_read,
    checked_event_id,
    class_key,
    country_code,
    epoch_ms,
    find_target,
    fraction,
    heading_of,
    parse_json_object,
    plate_text,
    present,
    required,
    results_of,
    vendor_key,
    violation,
)
from pipeline.reference.sites import DateOrder, VendorRules

_OPENALPR_CLASSES: Final[Mapping[str, str]] = {
    "van-mini": "car",  # a minivan carries people
    "truck-standard": "van",  # Rekor's pickup truck: a light goods vehicle
    "tractor-trailer": "truck",
}
_OPENALPR_PREFIXES: Final[Mapping[str, str]] = {
    "sedan": "car",
    "suv": "car",
    "hatchback": "car",
    "wagon": "car",
    "coupe": "car",
    "convertible": "car",
    "van": "van",
    "truck": "truck",
    "bus": "bus",
    "motorcycle": "motorcycle",
}


def _openalpr_class(vehicle: object) -> str | None:
    if not isinstance(vehicle, dict):
        return None
    body_types = vehicle.get("body_type")
    if not isinstance(body_types, list) or not body_types or not isinstance(body_types[0], dict):
        return None
    key = class_key(body_types[0].get("name"))
    if key is None:
        return None
    if key in _OPENALPR_CLASSES:
        return _OPENALPR_CLASSES[key]
    return _OPENALPR_PREFIXES.get(key.split("-", 1)[0])


def _openalpr_header(doc: Mapping[str, object], data_type: str) -> None:
    if doc.get("data_type") != data_type:
        raise violation(f"field 'data_type' must be {data_type}")
    version = doc.get("version")
    if version is not None and (type(version) is not int or version not in (1, 2)):
        raise violation("field 'version' must be 1 or 2")


def map_openalpr_group(doc: Mapping[str, object], registry: VendorRegistry) -> list[MappedRead]:
    """One ``alpr_group`` (a vehicle seen over several frames) -> one read."""
    try:
        return [_openalpr_group(doc, registry)]
    except Rejection as failure:
        return [failure]


def _openalpr_group(doc: Mapping[str, object], registry: VendorRegistry) -> CanonicalRead:
    _openalpr_header(doc, "alpr_group")
    target = find_target(registry, "openalpr", [vendor_key(doc.get("camera_id"), "camera_id")])
    event_id = checked_event_id(required(doc, "best_uuid"), "best_uuid")
    uuids = doc.get("uuids")
    if uuids is not None and (not isinstance(uuids, list) or event_id not in uuids):
        raise violation("field 'uuids' must be an array holding best_uuid")
    start = epoch_ms(required(doc, "epoch_start"), "epoch_start")
    end = doc.get("epoch_end")
    if end is not None and epoch_ms(end, "epoch_end") < start:
        raise violation("field 'epoch_end' is before epoch_start")
    best = doc.get("best_plate")
    best_plate = {} if best is None else as_object(best, "best_plate")
    plate = present(doc, "best_plate_number")
    if plate is None:
        plate = required(best_plate, "plate")
    confidence = present(doc, "best_confidence")
    if confidence is None:
        confidence = required(best_plate, "confidence")
    region = present(doc, "best_region") or present(best_plate, "region")
    candidates = present(doc, "candidates")
    if candidates is None:
        candidates = best_plate.get("candidates")
    return canonical_read(
        target,
        event_id=event_id,
        direction=target.rule.by_heading(
            heading_of(doc.get("travel_direction"), "travel_direction")
        ),
        captured_at=start,
        plate=plate_text(plate, "best_plate_number"),
        country=country_code(region or required(doc, "country"), "best_region"),
        confidence=fraction(confidence, "best_confidence", percent=True),
        vehicle_class=_openalpr_class(doc.get("vehicle")),
        candidates=candidates_of(candidates, "candidates", percent=True),
        source_format="openalpr_group",
    )


def map_openalpr_results(doc: Mapping[str, object], registry: VendorRegistry) -> list[MappedRead]:
    """One ``alpr_results`` frame -> one read per plate in it (``epoch_time`` in ms)."""
    try:
        _openalpr_header(doc, "alpr_results")
        target = find_target(registry, "openalpr", [vendor_key(doc.get("camera_id"), "camera_id")])
        uuid = checked_event_id(required(doc, "uuid"), "uuid")
        captured_at = epoch_ms(required(doc, "epoch_time"), "epoch_time")
        fallback_country = doc.get("country")
        results = results_of(doc, "results")
    except Rejection as failure:
        return [failure]

    def build(i: int, result: Mapping[str, object]) -> CanonicalRead:
        region = present(result, "region") or fallback_country
        return canonical_read(
            target,
            event_id=uuid if i == 0 else checked_event_id(f"{uuid}:{i}", "uuid"),
            direction=target.rule.by_heading(None),  # frames carry no travel direction
            captured_at=captured_at,
            plate=plate_text(required(result, "plate"), "results.plate"),
            country=country_code(region, "results.region"),
            confidence=fraction(required(result, "confidence"), "results.confidence", percent=True),
            vehicle_class=None,
            candidates=candidates_of(result.get("candidates"), "results.candidates", percent=True),
            source_format="openalpr_results",
        )

    return [attempt(partial(build, i, result)) for i, result in enumerate(results)]


_GROUP: Final = re.compile(rb'"data_type"[ \t\r\n]*:[ \t\r\n]*"alpr_group"')
_RESULTS: Final = re.compile(rb'"data_type"[ \t\r\n]*:[ \t\r\n]*"alpr_results"')


def detect(value: bytes) -> str | None:
    if _GROUP.search(value):
        return "openalpr_group"
    if _RESULTS.search(value):
        return "openalpr_results"
    return None


def map_payload(
    value: bytes, fmt: str, registry: VendorRegistry, date_order: DateOrder | None
) -> list[MappedRead]:
    # Windows-hosted Rekor agents prepend a BOM; accepted on version 2 only.
    bom = value.startswith(BOM)
    doc = parse_json_object(value[len(BOM) :] if bom else value)
    if bom and doc.get("version") != 2:
        raise Rejection(
            Reason.MALFORMED_JSON, "a byte-order mark is accepted on OpenALPR version 2"
        )
    if fmt == "openalpr_group":
        return map_openalpr_group(doc, registry)
    return map_openalpr_results(doc, registry)


VENDOR: Final = VendorCodec(
    rules=VendorRules("openalpr", heading=True),
    formats=("openalpr_group", "openalpr_results"),
    syntax="json",
    keys=(b'"data_type"',),
    detect=detect,
    map_payload=map_payload,
)
