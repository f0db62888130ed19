"""Plate Recognizer Stream and Snapshot webhooks (``hook`` + ``data``).

Field mapping: see the table in :mod:`pipeline.codec.vendors`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from functools import partial
from typing import Final

from pipeline.codec.reasons import Rejection
from pipeline.codec.vendors._shared import (
    CanonicalRead,
    MappedRead,
    VendorCodec,
    VendorRegistry,
    as_object,
    attempt,
    candidates_of,
    canonical_read,
    country_code,
    find_target,
    fraction,
    heading_of,
    lookup_class,
    parse_json_object,
    plate_text,
    required,
    results_of,
    rfc3339,
    vendor_key,
)
from pipeline.reference.sites import DateOrder, VendorRules

_PLATERECOGNIZER_CLASSES: Final[Mapping[str, str]] = {
    "sedan": "car",
    "suv": "car",
    "van": "van",
    "pickup-truck": "van",
    "big-truck": "truck",
    "bus": "bus",
    "motorcycle": "motorcycle",
}


def map_platerecognizer(doc: Mapping[str, object], registry: VendorRegistry) -> list[MappedRead]:
    """A Stream or Snapshot webhook (``hook`` + ``data``) -> one read per result."""
    try:
        as_object(required(doc, "hook"), "hook")
        data = as_object(required(doc, "data"), "data")
        camera_key = vendor_key(data.get("camera_id"), "data.camera_id")
        target = find_target(registry, "platerecognizer", [camera_key])
        stamp = required(data, "timestamp")
        captured_at = rfc3339(stamp, "data.timestamp")
        results = results_of(data, "results")
    except Rejection as failure:
        return [failure]

    def build(i: int, result: Mapping[str, object]) -> CanonicalRead:
        region = result.get("region")
        vehicle = result.get("vehicle")
        return canonical_read(
            target,
            event_id=platerecognizer_event_id(camera_key, str(stamp), i),
            direction=target.rule.by_heading(heading_of(result.get("direction"), "direction")),
            captured_at=captured_at,
            plate=plate_text(required(result, "plate"), "results.plate"),
            country=country_code(
                required(as_object(region, "results.region"), "code") if region else None,
                "results.region.code",
            ),
            confidence=fraction(required(result, "score"), "results.score", percent=False),
            vehicle_class=lookup_class(
                _PLATERECOGNIZER_CLASSES,
                vehicle.get("type") if isinstance(vehicle, dict) else None,
            ),
            candidates=candidates_of(result.get("candidates"), "results.candidates", percent=False),
            source_format="platerecognizer",
        )

    return [attempt(partial(build, i, result)) for i, result in enumerate(results)]


def platerecognizer_event_id(camera_key: str, timestamp: str, index: int) -> str:
    # No id in the payload: derive one from what a re-sent webhook repeats, never the plate.
    digest = hashlib.blake2b(
        f"{camera_key}\x00{timestamp}\x00{index}".encode(), digest_size=16
    ).hexdigest()
    return f"pr-{digest}"


_HOOK: Final = re.compile(rb'"hook"[ \t\r\n]*:[ \t\r\n]*\{')


def detect(value: bytes) -> str | None:
    return "platerecognizer" if _HOOK.search(value) else None


def map_payload(
    value: bytes, fmt: str, registry: VendorRegistry, date_order: DateOrder | None
) -> list[MappedRead]:
    return map_platerecognizer(parse_json_object(value), registry)


VENDOR: Final = VendorCodec(
    rules=VendorRules("platerecognizer", heading=True),
    formats=("platerecognizer",),
    syntax="json",
    keys=(b'"hook"',),
    detect=detect,
    map_payload=map_payload,
)
