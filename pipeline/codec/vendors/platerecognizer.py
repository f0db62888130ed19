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
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.codec.plate_reads import parse_rfc3339
from pipeline.codec.reasons import Rejection
from pipeline.codec.vendors._columnar import (
    CANDIDATE,
    ColumnReads,
    by_value,
    candidate_lists,
    no_reads,
    ordinary_mask,
    read_columns,
    read_rows,
    targets,
)
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
    MAX_CANDIDATES,
    MAX_PLATE,
    MAX_READS_PER_PAYLOAD,
    MAX_VENDOR_CANDIDATES,
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
from pipeline.reference.countries import vendor_country
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


# -- by the batch (see pipeline.codec.vendors._columnar) --------------------------------------

_RESULT: Final = pa.struct(
    [
        pa.field("plate", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("direction", pa.float64()),
        pa.field("region", pa.struct([pa.field("code", pa.string())])),
        pa.field("vehicle", pa.struct([pa.field("type", pa.string())])),
        pa.field("candidates", pa.list_(CANDIDATE)),
    ]
)
_BATCH_SCHEMA: Final = pa.schema(
    [
        pa.field("hook", pa.struct([pa.field("event", pa.string())])),
        pa.field(
            "data",
            pa.struct(
                [
                    pa.field("camera_id", pa.string()),
                    pa.field("timestamp", pa.string()),
                    pa.field("results", pa.list_(_RESULT)),
                ]
            ),
        ),
    ]
)
# What vendor_time reads, narrowed to what the columnar path proves: at most microseconds,
# offsets with a colon. Anything else goes to the per-message mapper.
_PLAIN_TIME: Final = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?$"
)
_HAS_OFFSET: Final = r"(Z|[+-][0-9]{2}:[0-9]{2})$"
_NO_DIRECTION: Final = re.compile(rb'"direction"(\s*):(\s*)""')


def map_batch(values: Sequence[bytes], registry: VendorRegistry) -> ColumnReads:
    """Many webhooks at once; the same reads as :func:`map_platerecognizer` (module doc of
    :mod:`pipeline.codec.vendors._columnar`), or the payload back to it."""
    proven = ordinary_mask(values)
    slow = np.flatnonzero(~proven).tolist()
    candidates_at = np.flatnonzero(proven).tolist()
    # Stream writes "direction": "" for no direction, which the mapper reads as none: null
    # says the same to Arrow, whose number column would refuse the empty string.
    table, read, unread = read_rows(
        [
            _NO_DIRECTION.sub(rb'"direction"\1:\2null', values[i])
            if b'""' in values[i]
            else values[i]
            for i in candidates_at
        ],
        _BATCH_SCHEMA,
    )
    slow += [candidates_at[k] for k in unread]
    if table is None or table.num_rows == 0:
        return no_reads(sorted(slow))
    position = np.asarray([candidates_at[k] for k in read], dtype=np.int64)
    hook = table.column("hook").combine_chunks()
    data = table.column("data").combine_chunks()
    camera = pc.struct_field(data, "camera_id")
    stamp = pc.struct_field(data, "timestamp")
    results = pc.struct_field(data, "results")
    counts = pc.list_value_length(results)
    message_ok = pc.and_(
        pc.and_(pc.is_valid(hook), pc.is_valid(data)),
        pc.and_(
            pc.and_(pc.greater(pc.utf8_length(camera), 0), pc.is_valid(stamp)),
            pc.and_(pc.greater(counts, 0), pc.less_equal(counts, MAX_READS_PER_PAYLOAD)),
        ),
    ).fill_null(False)
    shaped = pc.match_substring_regex(stamp, _PLAIN_TIME).fill_null(False)
    recent = pc.greater_equal(pc.utf8_slice_codeunits(stamp, 0, 10), "2000-01-02").fill_null(False)
    rfc = pc.replace_substring_regex(stamp, r"^(.{10}) ", r"\1T")
    rfc = pc.if_else(
        pc.match_substring_regex(rfc, _HAS_OFFSET).fill_null(False),
        rfc,
        pc.binary_join_element_wise(rfc, "Z", ""),
    )
    times = parse_rfc3339(rfc)
    message_ok = pc.and_(message_ok, pc.and_(pc.and_(shaped, recent), pc.is_valid(times)))
    found = targets(registry, "platerecognizer", camera)
    camera_list = camera.to_pylist()
    known = np.asarray([c in found for c in camera_list], dtype=bool)
    message_ok = pc.and_(message_ok, pa.array(known))

    # One row per result.
    safe_results = pc.if_else(message_ok, results, pa.scalar(None, results.type))
    flat = pc.list_flatten(safe_results)
    parent = pc.list_parent_indices(safe_results).to_numpy()
    offsets = safe_results.offsets.to_numpy()
    index_in_payload = np.arange(len(parent)) - offsets[parent] if len(parent) else parent
    plate = pc.struct_field(flat, "plate")
    score = pc.struct_field(flat, "score")
    heading = pc.struct_field(flat, "direction")
    code = pc.struct_field(pc.struct_field(flat, "region"), "code")
    kind = pc.struct_field(pc.struct_field(flat, "vehicle"), "type")
    read_ok = pc.and_(
        pc.and_(pc.is_valid(flat), pc.match_substring_regex(plate, "[!-~]")),
        pc.and_(
            pc.less_equal(pc.utf8_length(plate), MAX_PLATE),
            pc.and_(pc.greater_equal(score, 0.0), pc.less_equal(score, 1.0)),
        ),
    ).fill_null(False)
    heading_ok = pc.or_kleene(
        pc.is_null(heading), pc.and_(pc.greater_equal(heading, 0.0), pc.less_equal(heading, 360.0))
    ).fill_null(False)
    read_ok_np = pc.and_(read_ok, heading_ok).to_numpy(zero_copy_only=False)
    candidates, candidates_ok = candidate_lists(
        pc.struct_field(flat, "candidates"),
        percent=False,
        max_plate=MAX_PLATE,
        keep=MAX_CANDIDATES,
        most=MAX_VENDOR_CANDIDATES,
    )
    read_ok_np &= candidates_ok
    # A payload with one read the columnar path cannot prove goes whole to the slow path.
    bad_payloads = np.unique(parent[~read_ok_np])
    keep = ~np.isin(parent, bad_payloads)
    ok_messages = np.asarray(message_ok.to_numpy(zero_copy_only=False), dtype=bool)
    ok_messages[bad_payloads] = False
    slow += position[~ok_messages].tolist()
    if not keep.any():
        return no_reads(sorted(slow))

    rows = np.flatnonzero(keep)
    take = pa.array(rows)
    owner_rows = parent[rows]
    row_targets = [found[camera_list[m]] for m in owner_rows.tolist()]
    stamps = stamp.to_pylist()
    event_ids = [
        platerecognizer_event_id(camera_list[m], stamps[m], int(i))
        for m, i in zip(owner_rows.tolist(), index_in_payload[rows].tolist(), strict=True)
    ]
    countries = by_value(code.take(take), vendor_country)
    classes = by_value(kind.take(take), lambda t: lookup_class(_PLATERECOGNIZER_CLASSES, t))
    headings = heading.take(take).to_pylist()
    directions = [
        target.rule.by_heading(h) for target, h in zip(row_targets, headings, strict=True)
    ]
    table_out = read_columns(
        row_targets,
        directions,
        event_id=pa.array(event_ids, pa.string()),
        captured_at=rfc.take(pa.array(owner_rows)),
        plate=plate.take(take),
        plate_country=countries,
        confidence=score.take(take),
        vehicle_class=classes,
    )
    kept_candidates = candidates.take(take)
    return ColumnReads(table_out, position[owner_rows], kept_candidates, sorted(slow))


VENDOR: Final = VendorCodec(
    rules=VendorRules("platerecognizer", heading=True),
    formats=("platerecognizer",),
    syntax="json",
    keys=(b'"hook"',),
    detect=detect,
    map_payload=map_payload,
    encode=encode,
    predicted_event_id=predicted_event_id,
    map_batch=map_batch,
)
