"""Plate Recognizer Stream and Snapshot webhooks (``hook`` + ``data``).

Mapping (vendor field -> canonical field; shared rules in :mod:`pipeline.codec.vendors`):

=================  ==========================================
canonical          Plate Recognizer (Stream, Snapshot)
=================  ==========================================
event_id           ``pr-`` + 32 hex of BLAKE2b(camera_id,
                   timestamp, result index): the payload has
                   no id, a re-sent webhook hashes the same
camera             ``data.camera_id``
captured_at        ``data.timestamp``: ISO 8601, ``T`` or a
                   space; no offset (Snapshot): UTC, as the
                   vendor documents it
plate              ``results[].plate`` (lower case, kept raw)
confidence         ``score`` 0-1
plate_country      ``region.code`` (``""``, no region: unknown)
direction          ``direction`` degrees ("" or absent: none)
vehicle_class      ``vehicle.type``
candidates         ``candidates[]`` (``score`` 0-1; Stream
                   sends none, so confidence is null)
=================  ==========================================

Simulated payloads (:func:`encode`): a Stream webhook with exactly one result (the webhook may
carry several, but one keeps the read-to-message mapping simple), the plate in lower case,
``score`` 0-1.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import Final

from pipeline.codec.reasons import Rejection
from pipeline.codec.vendors._payloads import (
    JSON_CONTENT_TYPE,
    Facts,
    class_word,
    dump_json,
    heading_for,
    lookalike,
    offset_text,
    oslo_offset,
)
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
    vendor_key,
    vendor_time,
)
from pipeline.reference.sites import Camera, DateOrder, VendorRules

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
        # Snapshot sends "2025-09-09 23:22:38.030345": no offset, documented as UTC.
        captured_at = vendor_time(stamp, "data.timestamp", naive_is_utc=True)
        results = results_of(data, "results")
    except Rejection as failure:
        return [failure]

    def build(i: int, result: Mapping[str, object]) -> CanonicalRead:
        region = result.get("region")
        vehicle = result.get("vehicle")
        quirks: list[str] = []
        # Stream sends {"code": "", "score": 0} when it recognised no region: unknown.
        code = as_object(region, "results.region").get("code") if region is not None else None
        return canonical_read(
            target,
            event_id=platerecognizer_event_id(camera_key, str(stamp), i),
            direction=target.rule.by_heading(heading_of(result.get("direction"), "direction")),
            captured_at=captured_at,
            plate=plate_text(required(result, "plate"), "results.plate"),
            country=country_code(code, "results.region.code", quirks),
            confidence=fraction(required(result, "score"), "results.score", percent=False),
            vehicle_class=lookup_class(
                _PLATERECOGNIZER_CLASSES,
                vehicle.get("type") if isinstance(vehicle, dict) else None,
            ),
            candidates=candidates_of(result.get("candidates"), "results.candidates", percent=False),
            source_format="platerecognizer",
            quirks=quirks,
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


# -- simulated payloads ------------------------------------------------------------------------

# Plate Recognizer reports some German plates with their Land.
_PR_GERMAN_REGIONS: Final = ("de", "de-by", "de-nw", "de-be", "de-sh")
# Vendor words per canonical class, each mapped back to that class by the table above.
_PR_TYPES: Final[Mapping[str, tuple[str, ...]]] = {
    "car": ("Sedan", "SUV"),
    "van": ("Van", "Pickup Truck"),
    "truck": ("Big Truck",),
    "bus": ("Bus",),
    "motorcycle": ("Motorcycle",),
}


def _pr_timestamp(captured: datetime) -> str:
    # Part of the mapped event id: a function of the read alone, so it can be predicted.
    return captured.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode(
    facts: Facts, camera: Camera, vendor_id: str, rng: random.Random, retransmission: bool
) -> tuple[bytes, str]:
    has_rule = getattr(camera, "entry_heading", None) is not None
    # Stream leaves direction empty when it could not track the vehicle; only harmless where
    # ingest would take the lane's direction anyway.
    direction: float | str = (
        "" if not has_rule and rng.random() < 0.3 else heading_for(facts, camera, vendor_id, rng)
    )
    region = facts.country.lower()
    if region == "de":
        region = rng.choice(_PR_GERMAN_REGIONS)
    plate = facts.plate.lower()
    score = round(facts.confidence, 3)
    local = facts.captured + oslo_offset(facts.captured)
    filename = f"{vendor_id}_screenshots/{facts.captured:%y-%m-%d/%H-%M-%S.%f}.jpg"
    result = {
        "box": {"xmin": rng.randint(300, 900), "ymin": rng.randint(200, 600), "xmax": 1000},
        "plate": plate,
        "region": {"code": region, "score": round(rng.uniform(0.5, 0.99), 3)},
        "score": score,
        "dscore": round(rng.uniform(0.5, 0.99), 3),
        "candidates": [
            {"plate": plate, "score": score},
            {"plate": lookalike(facts.plate, rng).lower(), "score": round(score * 0.9, 3)},
        ],
        "vehicle": {
            "score": round(rng.uniform(0.5, 0.99), 3),
            "type": class_word(_PR_TYPES, facts, rng),
        },
        "direction": direction,
        "orientation": [{"orientation": camera.position.capitalize(), "score": 0.9}],
    }
    doc = {
        "hook": {
            "target": "http://ingest.invalid/platerecognizer",
            "id": vendor_id,
            "event": "recognition",
            "filename": filename,
        },
        "data": {
            "camera_id": vendor_id,
            "filename": filename,
            "timestamp": _pr_timestamp(facts.captured),
            "timestamp_local": (
                f"{local:%Y-%m-%d %H:%M:%S.%f}{offset_text(oslo_offset(facts.captured))}"
            ),
            "results": [result],
        },
    }
    return dump_json(doc), JSON_CONTENT_TYPE


def predicted_event_id(facts: Facts, vendor_id: str) -> str:
    # The payload holds one result, so the mapper's result index is always 0.
    return platerecognizer_event_id(vendor_id, _pr_timestamp(facts.captured), 0)


VENDOR: Final = VendorCodec(
    rules=VendorRules("platerecognizer", heading=True),
    formats=("platerecognizer",),
    syntax="json",
    keys=(b'"hook"',),
    detect=detect,
    map_payload=map_payload,
    encode=encode,
    predicted_event_id=predicted_event_id,
)
