"""Genetec reads (JSON): Security Center / AutoVu exports and SharpV's own HTTP extension.

The date order rule: see :mod:`pipeline.codec.vendors`.

Mapping (vendor field -> canonical field; shared rules in :mod:`pipeline.codec.vendors`):

=================  ==========================================  ==================================
canonical          Security Center / AutoVu (``genetec``)      SharpV HTTP (``genetec_sharpv``)
=================  ==========================================  ==================================
event_id           ``VehicleID``                               ``Id``
camera             ``CameraName``                              ``SourceUrl:LprCameraName``, else
                                                               ``SourceUrl`` (the Sharp unit)
captured_at        ``DateUtc`` + ``TimeUtc``, the date in the  ``Timestamp`` (no offset: UTC)
                   camera's configured order (package docs)
plate              ``Plate``                                   ``PlateRead``
confidence         ``ConfidenceScore`` (a string) /100         ``Confidence Score`` analytic /100
plate_country      ``State`` (else ``Attributes`` ``State      ``State Name`` analytic
                   Name``)
direction          ``RelativeMotion`` (else ``Attributes``     ``Relative Motion`` analytic
                   ``Relative Motion``): approaching,
                   moving away (others: none)
vehicle_class      ``VehicleType`` (else ``Attributes``        ``Vehicle Type`` analytic
                   ``Vehicle Type``; optional)
candidates         none                                        none
=================  ==========================================  ==================================

Security Center webhooks carry relative motion and vehicle type inside ``Attributes``. A SharpV
posts its own shape over the HTTP extension; ``PlateAnalytics`` is a list of ``Key``/``Value``
pairs (``-``: none). Its ``Timestamp`` without an offset is UTC: the same event in the
extension's XML form carries ``+00:00``. Its confidence comes from the ``Confidence Score``
analytic; the unit must be set to send it, and a read without it is refused rather than given a
confidence it did not state.

``State`` / ``State Name`` are bare codes that are US states and Canadian provinces in North
American deployments: a code that may be one (``CA``, ``DE``, ``MO``, ...) is stored as unknown,
never as the country that shares it (:func:`pipeline.reference.countries.vendor_country`).

Simulated payloads (:func:`encode`): an AutoVu JSON read, ``DateUtc`` in the camera's
``date_order`` (DMY when it has none) and a fake ``ContextImage``.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.codec.reasons import Rejection
from pipeline.codec.vendors._columnar import (
    ColumnReads,
    by_value,
    no_reads,
    proven_rows,
    read_columns,
    targets,
)
from pipeline.codec.vendors._payloads import (
    JSON_CONTENT_TYPE,
    NAMESPACE,
    Facts,
    class_word,
    digest,
    dump_json,
    fake_jpeg,
    motion_for,
    oslo_offset,
    pick,
)
from pipeline.codec.vendors._shared import (
    EARLIEST_CAPTURE,
    MAX_PLATE,
    VEHICLE_CLASSES,
    CanonicalRead,
    MappedRead,
    VendorCodec,
    VendorRegistry,
    attempt,
    canonical_read,
    country_code,
    find_target,
    fraction,
    lookup_class,
    parse_json_object,
    plate_text,
    plausible,
    present,
    required,
    vendor_event_id,
    vendor_key,
    vendor_time,
    violation,
)
from pipeline.reference.countries import vendor_country
from pipeline.reference.sites import Camera, DateOrder, VendorRules
from pipeline.schemas import CANDIDATES, EVENT_ID_PATTERN

_GENETEC_CLASSES: Final[Mapping[str, str]] = {c: c for c in VEHICLE_CLASSES} | {
    "pickup": "van",
    "pickup-truck": "van",
    "suv": "car",
    "passenger-vehicle": "car",  # Security Center's "Passenger Vehicle"
}


_GENETEC_DATE: Final = re.compile(r"([0-9]{1,4})([./:-])([0-9]{1,4})\2([0-9]{1,4})")
_GENETEC_TIME: Final = re.compile(
    r"([0-9]{1,2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,7}))?(?: ?([AaPp][Mm]))?"
)
_GENETEC_PERCENT: Final = re.compile(r"[0-9]{1,3}(?:[.,][0-9]{1,6})?")
_GENETEC_MOTIONS: Final[Mapping[str, str]] = {
    "approaching": "approaching",
    "receding": "receding",
    "moving-away": "receding",
    "going-away": "receding",
}


def map_genetec(
    doc: Mapping[str, object],
    registry: VendorRegistry,
    *,
    date_order: DateOrder | None = None,
) -> list[MappedRead]:
    """A Genetec AutoVu read (``Plate``, ``DateUtc``, ``TimeUtc``, ...) -> one read.

    ``date_order`` is the default for cameras without a ``date_order`` of their own.
    """
    return [attempt(partial(_genetec, doc, registry, date_order))]


def _genetec(
    doc: Mapping[str, object], registry: VendorRegistry, default_order: DateOrder | None
) -> CanonicalRead:
    quirks: list[str] = []
    target = find_target(registry, "genetec", [vendor_key(doc.get("CameraName"), "CameraName")])
    event_id = vendor_event_id(required(doc, "VehicleID"), "VehicleID", quirks)
    order = target.date_order or default_order
    if order is None:
        raise violation("no Genetec date order configured for this camera")
    captured_at = plausible(
        _genetec_time(required(doc, "DateUtc"), required(doc, "TimeUtc"), order), "DateUtc"
    )
    raw_attributes = doc.get("Attributes")
    attributes = raw_attributes if isinstance(raw_attributes, dict) else {}
    motion = present(doc, "RelativeMotion") or attributes.get("Relative Motion")
    kind = present(doc, "VehicleType") or attributes.get("Vehicle Type")
    return canonical_read(
        target,
        event_id=event_id,
        direction=target.rule.by_motion(lookup_class(_GENETEC_MOTIONS, motion)),
        captured_at=captured_at,
        plate=plate_text(required(doc, "Plate"), "Plate"),
        country=country_code(
            present(doc, "State") or attributes.get("State Name"),
            "State",
            quirks,
            bare_may_be_subdivision=True,
        ),
        confidence=_genetec_confidence(required(doc, "ConfidenceScore"), "ConfidenceScore"),
        vehicle_class=lookup_class(_GENETEC_CLASSES, kind),
        candidates=[],
        source_format="genetec",
        quirks=quirks,
    )


def map_sharpv(doc: Mapping[str, object], registry: VendorRegistry) -> list[MappedRead]:
    """What a SharpV posts over its HTTP extension (JSON) -> one read; see the module doc."""
    return [attempt(partial(_sharpv, doc, registry))]


def _sharpv(doc: Mapping[str, object], registry: VendorRegistry) -> CanonicalRead:
    quirks: list[str] = []
    unit = vendor_key(doc.get("SourceUrl"), "SourceUrl")
    camera = doc.get("LprCameraName")
    keys = [f"{unit}:{camera}", unit] if isinstance(camera, str) and camera else [unit]
    target = find_target(registry, "genetec", keys)
    event_id = vendor_event_id(required(doc, "Id"), "Id", quirks)
    captured_at = vendor_time(required(doc, "Timestamp"), "Timestamp", naive_is_utc=True)
    analytics = _analytics(doc.get("PlateAnalytics"))
    confidence = analytics.get("Confidence Score")
    if confidence is None:
        raise violation("PlateAnalytics has no 'Confidence Score' (set the unit to send it)")
    return canonical_read(
        target,
        event_id=event_id,
        direction=target.rule.by_motion(
            lookup_class(_GENETEC_MOTIONS, analytics.get("Relative Motion"))
        ),
        captured_at=captured_at,
        plate=plate_text(required(doc, "PlateRead"), "PlateRead"),
        country=country_code(
            analytics.get("State Name"), "State Name", quirks, bare_may_be_subdivision=True
        ),
        confidence=_genetec_confidence(confidence, "Confidence Score"),
        vehicle_class=lookup_class(_GENETEC_CLASSES, analytics.get("Vehicle Type")),
        candidates=[],
        source_format="genetec_sharpv",
        quirks=quirks,
    )


_MAX_ANALYTICS: Final = 64


def _analytics(value: object) -> dict[str, object]:
    """``PlateAnalytics`` ``[{"Key", "Score", "Value"}]`` as ``{Key: Value}``; ``-`` is none."""
    if value is None:
        return {}
    if not isinstance(value, list) or len(value) > _MAX_ANALYTICS:
        raise violation(f"field 'PlateAnalytics' must be an array of at most {_MAX_ANALYTICS}")
    found: dict[str, object] = {}
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("Key"), str):
            raise violation("field 'PlateAnalytics' entries must be objects with a Key")
        item = entry.get("Value")
        if item is not None and item != "-":
            found[entry["Key"]] = item
    return found


def _genetec_confidence(value: object, field: str) -> float:
    # Sent as a string ("87"); a JSON number means the same and is taken too.
    if isinstance(value, str):
        if not _GENETEC_PERCENT.fullmatch(value.strip()):
            raise violation(f"field '{field}' must be a number from 0 to 100")
        value = float(value.strip().replace(",", "."))
    return fraction(value, field, percent=True)


def _genetec_time(date: object, time: object, order: DateOrder) -> datetime:
    """``DateUtc`` + ``TimeUtc`` as a UTC datetime, the date read in ``order`` only.

    Example::

        _genetec_time("03/04/2026", "22:13:11", "DMY")  # 2026-04-03 22:13:11 UTC
    """
    date_match = _GENETEC_DATE.fullmatch(date) if isinstance(date, str) else None
    if date_match is None:
        raise violation("field 'DateUtc' must be a date of three numbers")
    first, _, second, third = date_match.groups()
    fields = {
        "DMY": (third, second, first),
        "MDY": (third, first, second),
        "YMD": (first, second, third),
    }[order]
    year, month, day = fields
    mismatch = violation(f"date does not match configured order {order}")
    if len(year) != 4 or len(month) > 2 or len(day) > 2:
        raise mismatch
    time_match = _GENETEC_TIME.fullmatch(time.strip()) if isinstance(time, str) else None
    if time_match is None:
        raise violation("field 'TimeUtc' must be a time HH:MM:SS")
    hour_text, minute, second_text, fraction, half = time_match.groups()
    hour = int(hour_text)
    if half is not None:
        if not 1 <= hour <= 12:
            raise violation("field 'TimeUtc' has an hour outside 1-12 with AM/PM")
        hour = hour % 12 + (12 if half.lower() == "pm" else 0)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        day_start = datetime(int(year), int(month), int(day), tzinfo=UTC)
    except ValueError as exc:
        raise mismatch from exc
    try:
        return day_start.replace(
            hour=hour, minute=int(minute), second=int(second_text), microsecond=micro
        )
    except ValueError as exc:
        raise violation("field 'TimeUtc' is not a valid time of day") from exc


_PLATE: Final = re.compile(rb'"Plate"[ \t\r\n]*:')
_KEYS: Final = re.compile(rb'"(?:VehicleID|DateUtc)"[ \t\r\n]*:')


_SHARPV: Final = re.compile(rb'"PlateRead"[ \t\r\n]*:')
_SHARPV_KEYS: Final = re.compile(rb'"(?:LprCameraName|SourceUrl)"[ \t\r\n]*:')


def detect(value: bytes) -> str | None:
    if _PLATE.search(value) and _KEYS.search(value):
        return "genetec"
    if _SHARPV.search(value) and _SHARPV_KEYS.search(value):
        return "genetec_sharpv"
    return None


def map_payload(
    value: bytes, fmt: str, registry: VendorRegistry, date_order: DateOrder | None
) -> list[MappedRead]:
    doc = parse_json_object(value)
    if fmt == "genetec_sharpv":
        return map_sharpv(doc, registry)
    return map_genetec(doc, registry, date_order=date_order)


# -- simulated payloads ------------------------------------------------------------------------

_GENETEC_NS: Final = uuid.uuid5(NAMESPACE, "genetec")
# Vendor words per canonical class, each mapped back to that class by the table above.
_GENETEC_TYPES: Final[Mapping[str, tuple[str, ...]]] = {
    "car": ("Car", "SUV"),
    "van": ("Van", "Pickup"),
    "truck": ("Truck",),
    "bus": ("Bus",),
    "motorcycle": ("Motorcycle",),
}


def _written_date(moment: datetime, order: DateOrder, vendor_id: str) -> str:
    """The date as the exporting Windows locale writes it (fixed per camera)."""
    if order == "MDY":  # en-US: no leading zeros
        return f"{moment.month}/{moment.day}/{moment.year}"
    if order == "YMD":
        sep = pick(("-", "/"), "genetec-locale", vendor_id)
        return f"{moment.year}{sep}{moment.month:02d}{sep}{moment.day:02d}"
    sep = pick(("/", ".", "-"), "genetec-locale", vendor_id)  # en-GB, nb-NO, nl-NL
    return f"{moment.day:02d}{sep}{moment.month:02d}{sep}{moment.year}"


def _written_time(moment: datetime, order: DateOrder) -> str:
    millis = f"{moment.microsecond // 1000:03d}"
    if order == "MDY":  # en-US: 12-hour clock
        hour = moment.hour % 12 or 12
        half = "AM" if moment.hour < 12 else "PM"
        return f"{hour}:{moment:%M:%S}.{millis} {half}"
    return f"{moment:%H:%M:%S}.{millis}"


def encode(
    facts: Facts, camera: Camera, vendor_id: str, rng: random.Random, retransmission: bool
) -> tuple[bytes, str]:
    order: DateOrder = getattr(camera, "date_order", None) or "DMY"
    local = facts.captured + oslo_offset(facts.captured)
    # A front camera sees traffic approach, a rear one sees it move away.
    usual = "approaching" if camera.position == "front" else "receding"
    doc: dict[str, object] = {
        "Plate": facts.plate.upper(),
        "State": facts.country,
        "ConfidenceScore": str(round(facts.confidence * 100)),
        "DateUtc": _written_date(facts.captured, order, vendor_id),
        "TimeUtc": _written_time(facts.captured, order),
        "DateLocal": _written_date(local, order, vendor_id),
        "TimeLocal": _written_time(local, order),
        "CameraName": vendor_id,
        "SourceName": f"AUTOVU-{digest('genetec-unit', vendor_id).hex()[:8].upper()}",
        "VehicleID": str(uuid.uuid5(_GENETEC_NS, facts.event_id)),
        "RelativeMotion": motion_for(facts, camera, without_rule=usual).capitalize(),
        "ContextImage": fake_jpeg(rng, rng.randint(200, 400)),
    }
    if facts.vehicle_class in _GENETEC_TYPES:
        doc["VehicleType"] = class_word(_GENETEC_TYPES, facts, rng)
    return dump_json(doc), JSON_CONTENT_TYPE


def predicted_event_id(facts: Facts, vendor_id: str) -> str:
    return str(uuid.uuid5(_GENETEC_NS, facts.event_id))


# -- by the batch (see pipeline.codec.vendors._columnar) --------------------------------------

_TEXT_FIELDS: Final = (
    "CameraName",
    "VehicleID",
    "DateUtc",
    "TimeUtc",
    "Plate",
    "ConfidenceScore",
    "State",
    "RelativeMotion",
    "VehicleType",
)
_ATTRIBUTES: Final = ("Relative Motion", "Vehicle Type", "State Name")
_BATCH_SCHEMA: Final = pa.schema(
    [
        *(pa.field(name, pa.string()) for name in _TEXT_FIELDS),
        pa.field("Attributes", pa.struct([pa.field(n, pa.string()) for n in _ATTRIBUTES])),
    ]
)
# _GENETEC_TIME and _GENETEC_PERCENT for Arrow (RE2), anchored as fullmatch is.
_TIME_PARTS: Final = (
    r"^(?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
    r"(?:\.(?P<fraction>[0-9]{1,7}))?(?: ?(?P<half>[AaPp][Mm]))?$"
)
_PERCENT: Final = r"^[0-9]{1,3}(?:[.,][0-9]{1,6})?$"
_MICROS: Final = {"hour": 3_600_000_000, "minute": 60_000_000, "second": 1_000_000}


def map_batch(values: Sequence[bytes], registry: VendorRegistry) -> ColumnReads:
    """Many Security Center / AutoVu reads at once; the same reads as :func:`map_genetec` (with
    no site-wide date order: each camera's own), or the payload back to it (module doc of
    :mod:`pipeline.codec.vendors._columnar`). SharpV payloads take the per-message mapper."""
    col, position, slow = proven_rows(values, _BATCH_SCHEMA)
    if not len(position):
        return no_reads(sorted(slow))
    attributes = col["Attributes"]

    def either(key: str, attribute: str) -> pa.Array:
        # The mapper's ``present(doc, key) or attributes.get(attribute)``: "" falls through.
        own = col[key]
        return pc.if_else(
            pc.greater(pc.utf8_length(own), 0).fill_null(False),
            own,
            pc.struct_field(attributes, attribute),
        )

    plate, vehicle_id = col["Plate"], col["VehicleID"]
    percent_text = pc.utf8_trim_whitespace(col["ConfidenceScore"])
    percent_ok = pc.match_substring_regex(percent_text, _PERCENT).fill_null(False)
    percent = pc.cast(
        pc.replace_substring(
            pc.if_else(percent_ok, percent_text, pa.scalar("0")), pattern=",", replacement="."
        ),
        pa.float64(),
    )
    ok = pc.and_(
        pc.and_(
            pc.greater(pc.utf8_length(col["CameraName"]), 0),
            pc.match_substring_regex(vehicle_id, EVENT_ID_PATTERN),
        ),
        pc.and_(
            pc.and_(
                pc.match_substring_regex(plate, "[!-~]"),
                pc.less_equal(pc.utf8_length(plate), MAX_PLATE),
            ),
            pc.and_(percent_ok, pc.less_equal(percent, 100.0)),
        ),
    )
    ok_np = np.asarray(ok.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    keys = col["CameraName"]
    found = targets(registry, "genetec", keys)
    key_list = keys.to_pylist()
    ok_np &= np.fromiter(
        (k in found and found[k].date_order is not None for k in key_list),
        dtype=bool,
        count=len(key_list),
    )
    # Times: each distinct date once, in its camera's order; times of day with Arrow.
    dates = col["DateUtc"].to_pylist()
    days: dict[tuple[str, str], int | None] = {}
    day_us = np.zeros(len(key_list), dtype=np.int64)
    for k in np.flatnonzero(ok_np).tolist():
        order = found[key_list[k]].date_order
        assert order is not None
        day = (dates[k], order)
        if day not in days:
            try:
                start = _genetec_time(dates[k], "0:00:00", order)
            except Rejection:
                days[day] = None
            else:
                days[day] = (start - _EPOCH) // _US
        micros = days[day]
        if micros is None:
            ok_np[k] = False
        else:
            day_us[k] = micros
    parts = pc.extract_regex(pc.utf8_trim_whitespace(col["TimeUtc"]), _TIME_PARTS)
    shaped = np.asarray(pc.is_valid(parts).to_numpy(zero_copy_only=False), dtype=bool)
    ok_np &= shaped
    clean = pc.if_else(
        pc.is_valid(parts),
        parts,
        pa.scalar(
            {"hour": "0", "minute": "0", "second": "0", "fraction": "", "half": ""}, parts.type
        ),
    )
    number = {
        name: pc.cast(pc.struct_field(clean, name), pa.int64()).to_numpy(zero_copy_only=False)
        for name in _MICROS
    }
    half = pc.utf8_lower(pc.struct_field(clean, "half")).to_numpy(zero_copy_only=False)
    hour = number["hour"]
    twelve = half != ""
    ok_np &= ~twelve | ((hour >= 1) & (hour <= 12))
    hour = np.where(twelve, hour % 12 + np.where(half == "pm", 12, 0), hour)
    ok_np &= (hour < 24) & (number["minute"] < 60) & (number["second"] < 60)
    fraction = pc.utf8_slice_codeunits(pc.struct_field(clean, "fraction"), 0, 6)
    micro = pc.cast(pc.utf8_rpad(fraction, width=6, padding="0"), pa.int64()).to_numpy(
        zero_copy_only=False
    )
    moment = (
        day_us
        + hour * _MICROS["hour"]
        + number["minute"] * _MICROS["minute"]
        + number["second"] * _MICROS["second"]
        + micro
    )
    ok_np &= moment >= _EARLIEST_US
    slow += position[~ok_np].tolist()
    rows = np.flatnonzero(ok_np)
    if not len(rows):
        return no_reads(sorted(slow))
    take = pa.array(rows)
    row_targets = [found[key_list[r]] for r in rows.tolist()]
    motions = either("RelativeMotion", "Relative Motion").take(take).to_pylist()
    words = {m: lookup_class(_GENETEC_MOTIONS, m) for m in set(motions)}
    directions = [t.rule.by_motion(words[m]) for t, m in zip(row_targets, motions, strict=True)]
    captured = pc.strftime(
        pa.array(moment[rows], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        format="%Y-%m-%dT%H:%M:%SZ",
    )
    mapped = read_columns(
        row_targets,
        directions,
        event_id=vehicle_id.take(take),
        captured_at=captured,
        plate=plate.take(take),
        plate_country=by_value(
            either("State", "State Name").take(take),
            lambda code: vendor_country(code, bare_may_be_subdivision=True),
        ),
        confidence=pc.divide(percent.take(take), 100.0),
        vehicle_class=by_value(
            either("VehicleType", "Vehicle Type").take(take),
            lambda kind: lookup_class(_GENETEC_CLASSES, kind),
        ),
    )
    empty = pa.array([[]] * len(rows), CANDIDATES)
    return ColumnReads(mapped, position[rows], empty, sorted(slow))


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_EARLIEST_US: Final = (EARLIEST_CAPTURE - _EPOCH) // _US


VENDOR: Final = VendorCodec(
    rules=VendorRules("genetec", motions=("approaching", "receding"), date_order=True),
    formats=("genetec", "genetec_sharpv"),
    syntax="json",
    keys=(b'"Plate"', b'"PlateRead"'),
    detect=detect,
    map_payload=map_payload,
    encode=encode,
    predicted_event_id=predicted_event_id,
    map_batch=map_batch,
)
