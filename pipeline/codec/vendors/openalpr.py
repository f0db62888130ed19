"""OpenALPR / Rekor Scout webhooks: ``alpr_group`` (one vehicle) and ``alpr_results`` (a frame).

Mapping (vendor field -> canonical field; shared rules in :mod:`pipeline.codec.vendors`):

=================  =============================
canonical          OpenALPR / Rekor Scout
=================  =============================
event_id           group: ``best_uuid``;
                   results: ``uuid`` (``uuid:i``
                   for the i-th plate, i >= 1);
                   a digest when longer than ours
camera             ``camera_id`` (integer)
captured_at        ``epoch_start`` / results
                   ``epoch_time``: epoch **ms**
                   (else the frame id's ms)
plate              ``best_plate_number`` or
                   ``best_plate.plate``; results
                   ``results[].plate``
confidence         ``best_confidence`` 0-100 /10
plate_country      ``best_region``, else
                   ``best_plate.region``, else
                   ``country``; a bare region is
                   a subdivision of ``country``
direction          ``travel_direction`` degrees
vehicle_class      ``vehicle.body_type[0].name``
candidates         ``candidates`` (or
                   ``best_plate.candidates``),
                   0-100 /100
=================  =============================

Simulated payloads (:func:`encode`): an ``alpr_group`` version 2 (one vehicle over a few frames),
sometimes with a UTF-8 byte-order mark; ``best_uuid`` is ``<agent_uid>-<camera_id>-<frame epoch
ms>`` as Rekor writes it, confidences in percent, ``travel_direction`` in degrees and a fake
``vehicle_crop_jpeg``. Never ``alpr_results``: one payload, one read.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.codec.reasons import Reason, Rejection
from pipeline.codec.vendors._columnar import (
    CANDIDATE,
    ColumnReads,
    by_value,
    candidate_lists,
    directions_by_heading,
    no_reads,
    proven_rows,
    read_columns,
    read_shape,
    targets,
    utc_text,
)
from pipeline.codec.vendors._payloads import (
    JSON_CONTENT_TYPE,
    Facts,
    class_word,
    digest,
    dump_json,
    fake_jpeg,
    heading_for,
    lookalike,
    to_epoch_ms,
)
from pipeline.codec.vendors._shared import (
    BOM,
    EARLIEST_CAPTURE,
    LATEST_MS,
    MAX_CANDIDATES,
    MAX_PLATE,
    MAX_VENDOR_CANDIDATES,
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
    vendor_event_id,
    vendor_key,
    violation,
)
from pipeline.reference.countries import vendor_country
from pipeline.reference.sites import Camera, DateOrder, VendorRules
from pipeline.schemas import EVENT_ID_PATTERN

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


# Versions we know the fields of; a newer one (agent 4.x sends 3) is read by the same fields,
# which it keeps, and counted so that a change of shape would show before it hurts.
_KNOWN_VERSIONS: Final = (1, 2)
_COUNTED_VERSIONS: Final = range(3, 10)
BEST_UUID_OUTSIDE: Final = "best_uuid_outside_uuids"
TIME_FROM_UUID: Final = "time_from_uuid"
_UUID_MS: Final = re.compile(r"-([0-9]{13})")


def _openalpr_header(doc: Mapping[str, object], data_type: str, quirks: list[str]) -> None:
    if doc.get("data_type") != data_type:
        raise violation(f"field 'data_type' must be {data_type}")
    version = doc.get("version")
    if version is None or (version in _KNOWN_VERSIONS and type(version) is int):
        return
    if type(version) is not int or version < 1:
        raise violation("field 'version' must be a positive integer")
    quirks.append(f"version_{version}" if version in _COUNTED_VERSIONS else "version_other")


def map_openalpr_group(doc: Mapping[str, object], registry: VendorRegistry) -> list[MappedRead]:
    """One ``alpr_group`` (a vehicle seen over several frames) -> one read."""
    return [attempt(partial(_openalpr_group, doc, registry))]


def _openalpr_group(doc: Mapping[str, object], registry: VendorRegistry) -> CanonicalRead:
    quirks: list[str] = []
    _openalpr_header(doc, "alpr_group", quirks)
    target = find_target(registry, "openalpr", [vendor_key(doc.get("camera_id"), "camera_id")])
    best_uuid = required(doc, "best_uuid")
    event_id = vendor_event_id(best_uuid, "best_uuid", quirks)
    uuids = doc.get("uuids")
    if uuids is not None and not isinstance(uuids, list):
        raise violation("field 'uuids' must be an array")
    if uuids is not None and best_uuid not in uuids:
        # Rekor's own documented example does this; nothing we store depends on the list.
        quirks.append(BEST_UUID_OUTSIDE)
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
        country=country_code(region, "best_region", quirks, context=doc.get("country")),
        confidence=fraction(confidence, "best_confidence", percent=True),
        vehicle_class=_openalpr_class(doc.get("vehicle")),
        candidates=candidates_of(candidates, "candidates", percent=True),
        source_format="openalpr_group",
        quirks=quirks,
    )


def map_openalpr_results(doc: Mapping[str, object], registry: VendorRegistry) -> list[MappedRead]:
    """One ``alpr_results`` frame -> one read per plate in it (``epoch_time`` in ms)."""
    quirks: list[str] = []
    try:
        _openalpr_header(doc, "alpr_results", quirks)
        target = find_target(registry, "openalpr", [vendor_key(doc.get("camera_id"), "camera_id")])
        raw_uuid = required(doc, "uuid")
        uuid = vendor_event_id(raw_uuid, "uuid", quirks)
        captured_at = _frame_time(doc, raw_uuid, quirks)
        country = doc.get("country")
        results = results_of(doc, "results")
    except Rejection as failure:
        return [failure]

    def build(i: int, result: Mapping[str, object]) -> CanonicalRead:
        mine = list(quirks)
        return canonical_read(
            target,
            event_id=uuid if i == 0 else checked_event_id(f"{uuid}:{i}", "uuid"),
            direction=target.rule.by_heading(None),  # frames carry no travel direction
            captured_at=captured_at,
            plate=plate_text(required(result, "plate"), "results.plate"),
            country=country_code(
                present(result, "region") or country, "results.region", mine, context=country
            ),
            confidence=fraction(required(result, "confidence"), "results.confidence", percent=True),
            vehicle_class=None,
            candidates=candidates_of(result.get("candidates"), "results.candidates", percent=True),
            source_format="openalpr_results",
            quirks=mine,
        )

    return [attempt(partial(build, i, result)) for i, result in enumerate(results)]


def _frame_time(doc: Mapping[str, object], uuid: object, quirks: list[str]) -> datetime:
    """``epoch_time``, else the milliseconds the frame id ends with (``<agent>-<camera>-<ms>``,
    equal to ``epoch_time`` in every sample that has both)."""
    stamp = doc.get("epoch_time")
    if stamp is not None:
        return epoch_ms(stamp, "epoch_time")
    text = uuid if isinstance(uuid, str) else ""
    match = _UUID_MS.search(text)
    if match is None or match.end() != len(text):
        raise violation("field 'epoch_time' is missing and 'uuid' does not end in milliseconds")
    quirks.append(TIME_FROM_UUID)
    return epoch_ms(int(match.group(1)), "uuid")


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
    # Windows-hosted Rekor agents prepend a BOM; accepted from version 2 on.
    bom = value.startswith(BOM)
    # A group is held to repeats of the fields read, as the batch reads it (``_READ``).
    read = _READ if fmt == "openalpr_group" else None
    doc = parse_json_object(value[len(BOM) :] if bom else value, read=read)
    version = doc.get("version")
    if bom and not (type(version) is int and version >= 2):
        raise Rejection(
            Reason.MALFORMED_JSON, "a byte-order mark is accepted on OpenALPR version 2 and later"
        )
    if fmt == "openalpr_group":
        return map_openalpr_group(doc, registry)
    return map_openalpr_results(doc, registry)


# -- simulated payloads ------------------------------------------------------------------------

_BOM_RATIO: Final = 0.1  # Windows-hosted Rekor agents prepend one
_FRAME_MS: Final = 40  # 25 frames per second
_MAX_BEST_FRAME: Final = 6
# Vendor words per canonical class, each mapped back to that class by the tables above.
_OPENALPR_BODIES: Final[Mapping[str, tuple[str, ...]]] = {
    "car": ("sedan-standard", "sedan-compact", "suv-crossover", "suv-standard", "van-mini"),
    "van": ("van-full", "truck-standard"),
    "truck": ("tractor-trailer", "truck-box"),
    "bus": ("bus-coach", "bus-city"),
    "motorcycle": ("motorcycle",),
}


def _agent_uid(vendor_id: str) -> str:
    # One alprd install per camera here; Rekor agent uids are 40 characters.
    return digest("openalpr-agent", vendor_id, size=20).hex().upper()


def _openalpr_uuid(vendor_id: str, frame_ms: int) -> str:
    return f"{_agent_uid(vendor_id)}-{vendor_id}-{frame_ms}"


def _best_frame(facts: Facts) -> int:
    return digest("best-frame", facts.event_id)[0] % _MAX_BEST_FRAME


def _best_frame_ms(facts: Facts) -> int:
    return to_epoch_ms(facts.captured) + _best_frame(facts) * _FRAME_MS


def encode(
    facts: Facts, camera: Camera, vendor_id: str, rng: random.Random, retransmission: bool
) -> tuple[bytes, str]:
    start = to_epoch_ms(facts.captured)
    best = _best_frame(facts)
    frames = max(best + 1, rng.randint(2, _MAX_BEST_FRAME + 2))
    uuids = [_openalpr_uuid(vendor_id, start + k * _FRAME_MS) for k in range(frames)]
    confidence = round(facts.confidence * 100.0, 4)
    candidates = [{"plate": facts.plate, "confidence": confidence, "matches_template": 1}]
    for _ in range(rng.randint(1, 4)):
        lower = max(0.0, round(confidence - rng.uniform(2.0, 30.0), 2))
        candidates.append(
            {"plate": lookalike(facts.plate, rng), "confidence": lower, "matches_template": 0}
        )
    region = facts.country.lower()
    body_type = class_word(_OPENALPR_BODIES, facts, rng)
    doc: dict[str, object] = {
        "version": 2,
        "data_type": "alpr_group",
        "epoch_start": start,
        "epoch_end": start + (frames - 1) * _FRAME_MS,
        "frame_start": 1000 + start % 100_000,
        "frame_end": 1000 + start % 100_000 + frames - 1,
        "agent_type": "alprd",
        "agent_uid": _agent_uid(vendor_id),
        "agent_version": "4.1.1",
        "site_id": camera.site_id.lower(),
        "camera_id": int(vendor_id) if vendor_id.isdigit() else vendor_id,
        "country": "eu",
        "best_region": region,
        "best_region_confidence": round(rng.uniform(60.0, 99.0), 1),
        "uuids": uuids,
        "plate_indexes": [0] * frames,
        "best_uuid": uuids[best],
        "best_uuid_epoch_ms": start + best * _FRAME_MS,
        "best_plate_number": facts.plate,
        "best_confidence": confidence,
        "best_plate": {
            "plate": facts.plate,
            "confidence": confidence,
            "region": region,
            "matches_template": 1,
            "plate_index": 0,
            "requested_topn": 10,
            "processing_time_ms": round(rng.uniform(20.0, 60.0), 1),
        },
        "candidates": candidates,
        "travel_direction": heading_for(facts, camera, vendor_id, rng),
        "is_parked": False,
        "is_preview": False,
        "vehicle_crop_jpeg": fake_jpeg(rng, rng.randint(200, 400)),
        "vehicle": {
            "body_type": [{"name": body_type, "confidence": round(rng.uniform(50, 95), 1)}],
            "color": [{"name": "silver-gray", "confidence": round(rng.uniform(30, 90), 1)}],
        },
    }
    payload = dump_json(doc)
    if rng.random() < _BOM_RATIO:
        payload = BOM + payload
    return payload, JSON_CONTENT_TYPE


def predicted_event_id(facts: Facts, vendor_id: str) -> str:
    return _openalpr_uuid(vendor_id, _best_frame_ms(facts))


# -- by the batch (see pipeline.codec.vendors._columnar) --------------------------------------

_BEST_PLATE: Final = pa.struct(
    [
        pa.field("plate", pa.string()),
        pa.field("confidence", pa.float64()),
        pa.field("region", pa.string()),
        pa.field("candidates", pa.list_(CANDIDATE)),
    ]
)
_BATCH_SCHEMA: Final = pa.schema(
    [
        pa.field("data_type", pa.string()),
        pa.field("version", pa.int64()),
        pa.field("camera_id", pa.int64()),
        pa.field("best_uuid", pa.string()),
        pa.field("uuids", pa.list_(pa.string())),
        pa.field("epoch_start", pa.float64()),
        pa.field("epoch_end", pa.float64()),
        pa.field("best_plate_number", pa.string()),
        pa.field("best_confidence", pa.float64()),
        pa.field("best_region", pa.string()),
        pa.field("country", pa.string()),
        pa.field("best_plate", _BEST_PLATE),
        pa.field("candidates", pa.list_(CANDIDATE)),
        pa.field("travel_direction", pa.float64()),
        pa.field(
            "vehicle",
            pa.struct(
                [pa.field("body_type", pa.list_(pa.struct([pa.field("name", pa.string())])))]
            ),
        ),
    ]
)
_EARLIEST_MS: Final = to_epoch_ms(EARLIEST_CAPTURE)
# A repeat of one of these (at its place) is malformed; of any other field, ignored: the
# payload is mostly fields we never read (uuids of frames, crops, colours), and Arrow reading
# only the schema's fields costs half its inferring every other one.
_READ: Final = read_shape(_BATCH_SCHEMA)


def map_batch(values: Sequence[bytes], registry: VendorRegistry) -> ColumnReads:
    """Many ``alpr_group`` payloads at once; the same reads as :func:`map_openalpr_group`
    (module doc of :mod:`pipeline.codec.vendors._columnar`), or the payload back to it.
    ``alpr_results`` frames always take the per-message mapper."""
    marked_at = [v.startswith(BOM) for v in values]
    bom = np.array(marked_at, dtype=bool)
    unmarked = [v[len(BOM) :] if b else v for v, b in zip(values, marked_at, strict=True)]
    col, position, slow = proven_rows(unmarked, _BATCH_SCHEMA, skip_unread=True)
    if not len(position):
        return no_reads(sorted(slow))
    version = col["version"]
    best = col["best_plate"]
    plate = pc.coalesce(col["best_plate_number"], pc.struct_field(best, "plate"))
    confidence = pc.coalesce(col["best_confidence"], pc.struct_field(best, "confidence"))
    region = pc.if_else(
        pc.greater(pc.utf8_length(col["best_region"]), 0).fill_null(False),
        col["best_region"],
        pc.struct_field(best, "region"),
    )
    start, end = col["epoch_start"], col["epoch_end"]
    heading = col["travel_direction"]
    best_uuid = col["best_uuid"]
    ok = pc.and_(
        pc.and_(
            pc.equal(col["data_type"], "alpr_group"),
            pc.or_kleene(pc.is_null(version), pc.greater_equal(version, 1)),
        ),
        pc.and_(
            pc.and_(pc.is_valid(col["camera_id"]), pc.match_substring_regex(best_uuid, _ID)),
            pc.and_(
                pc.match_substring_regex(plate, "[!-~]"),
                pc.less_equal(pc.utf8_length(plate), MAX_PLATE),
            ),
        ),
    )
    ok = pc.and_(
        ok,
        pc.and_(
            pc.and_(pc.greater_equal(confidence, 0.0), pc.less_equal(confidence, 100.0)),
            pc.and_(pc.greater_equal(start, _EARLIEST_MS), pc.less_equal(start, LATEST_MS)),
        ),
    )
    # epoch_end, when sent, is a time too and not before epoch_start (both in whole ms).
    end_ok = pc.and_(
        pc.and_(pc.greater_equal(end, 0.0), pc.less_equal(end, LATEST_MS)),
        pc.greater_equal(pc.floor(end), pc.floor(start)),
    )
    heading_ok = pc.and_(pc.greater_equal(heading, 0.0), pc.less_equal(heading, 360.0))
    ok = pc.and_(
        ok,
        pc.and_(
            pc.or_kleene(pc.is_null(end), end_ok), pc.or_kleene(pc.is_null(heading), heading_ok)
        ),
    )
    ok_np = np.asarray(ok.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    # Windows-hosted agents' byte-order mark: accepted from version 2 on (the mapper's rule).
    marked = bom[position]
    ok_np &= ~marked | (version.fill_null(0).to_numpy(zero_copy_only=False) >= 2)
    keys = pc.cast(col["camera_id"], pa.string())
    found = targets(registry, "openalpr", keys)
    known = pc.is_in(keys, value_set=pa.array(list(found), pa.string()))
    ok_np &= np.asarray(known.to_numpy(zero_copy_only=False), dtype=bool)
    candidates, candidates_ok = candidate_lists(
        pc.if_else(
            pc.is_valid(col["candidates"]),
            col["candidates"],
            pc.struct_field(best, "candidates"),
        ),
        percent=True,
        max_plate=MAX_PLATE,
        keep=MAX_CANDIDATES,
        most=MAX_VENDOR_CANDIDATES,
    )
    ok_np &= candidates_ok
    slow += position[~ok_np].tolist()
    rows = np.flatnonzero(ok_np)
    if not len(rows):
        return no_reads(sorted(slow))
    take = pa.array(rows)
    row_keys = keys.take(take).dictionary_encode()
    distinct = [found[key] for key in row_keys.dictionary.to_pylist()]
    row_targets = [distinct[k] for k in row_keys.indices.to_pylist()]
    directions = directions_by_heading(row_keys, found, heading.take(take))
    captured = utc_text(pc.cast(pc.floor(start.take(take)), pa.int64()))
    # A region is read in its context (a bare "mo" beside "us" is Missouri): one look-up per
    # distinct pair, the pair joined by a byte no code holds.
    pair = pc.binary_join_element_wise(
        region.take(take).fill_null(_NONE), col["country"].take(take).fill_null(_NONE), "\x00"
    )
    countries = by_value(pair, _country_of_pair)
    # The class of the first body type; a row without one has a null name.
    first_body = pc.list_slice(pc.struct_field(col["vehicle"].take(take), "body_type"), 0, 1)
    bodies = pc.list_flatten(first_body)
    first = np.full(len(rows), -1, dtype=np.int64)
    first[pc.list_parent_indices(first_body).to_numpy(zero_copy_only=False)] = np.arange(
        len(bodies)
    )
    names = pc.struct_field(bodies, "name").take(pa.array(first, mask=first < 0))
    classes = by_value(names, lambda name: _openalpr_class({"body_type": [{"name": name}]}))
    quirks: list[tuple[int, str]] = []
    versions = version.take(take)
    newer = pc.and_(pc.is_valid(versions), pc.invert(pc.is_in(versions, _KNOWN)))
    for k in pc.indices_nonzero(newer).to_pylist():
        v = versions[k].as_py()
        quirks.append((k, f"version_{v}" if v in _COUNTED_VERSIONS else "version_other"))
    outside = _outside(col["uuids"].take(take), best_uuid.take(take))
    quirks += [(k, BEST_UUID_OUTSIDE) for k in np.flatnonzero(outside).tolist()]
    mapped = read_columns(
        row_targets,
        directions,
        event_id=best_uuid.take(take),
        captured_at=captured,
        plate=plate.take(take),
        plate_country=countries,
        confidence=pc.divide(confidence.take(take), 100.0),
        vehicle_class=classes,
    )
    return ColumnReads(mapped, position[rows], candidates.take(take), sorted(slow), quirks)


# Ids the batch takes as sent (the others, digested or refused, take the per-message mapper).
_ID: Final = EVENT_ID_PATTERN


_NONE: Final = "\x01"  # a null region or country in a pair: no code holds the byte
_KNOWN: Final = pa.array(_KNOWN_VERSIONS, pa.int64())


def _country_of_pair(pair: str | None) -> str:
    region, context = (None if part == _NONE else part for part in (pair or "").split("\x00"))
    return vendor_country(region, context=context)


def _outside(uuids: pa.Array, best: pa.Array) -> np.ndarray:
    """Whether each row's ``best_uuid`` is missing from its ``uuids`` (when that is sent)."""
    flat = pc.list_flatten(uuids)
    parent = pc.list_parent_indices(uuids)
    hit = pc.equal(flat, best.take(parent)).fill_null(False)
    found = np.zeros(len(uuids), dtype=bool)
    found[parent.to_numpy(zero_copy_only=False)[hit.to_numpy(zero_copy_only=False)]] = True
    sent = np.asarray(pc.is_valid(uuids).to_numpy(zero_copy_only=False), dtype=bool)
    outside: np.ndarray = sent & ~found
    return outside


VENDOR: Final = VendorCodec(
    rules=VendorRules("openalpr", heading=True),
    formats=("openalpr_group", "openalpr_results"),
    syntax="json",
    keys=(b'"data_type"',),
    detect=detect,
    map_payload=map_payload,
    encode=encode,
    predicted_event_id=predicted_event_id,
    map_batch=map_batch,
)
