"""Genetec AutoVu / Security Center reads (JSON): ``Plate``, ``DateUtc``, ``TimeUtc``, ...

Field mapping and the date order rule: see :mod:`pipeline.codec.vendors`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from pipeline.codec.reasons import Rejection
from pipeline.codec.vendors._shared import (
    VEHICLE_CLASSES,
    CanonicalRead,
    MappedRead,
    VendorCodec,
    VendorRegistry,
    canonical_read,
    checked_event_id,
    country_code,
    find_target,
    fraction,
    lookup_class,
    parse_json_object,
    plate_text,
    plausible,
    required,
    vendor_key,
    violation,
)
from pipeline.reference.sites import DateOrder, VendorRules

_GENETEC_CLASSES: Final[Mapping[str, str]] = {c: c for c in VEHICLE_CLASSES} | {
    "pickup": "van",
    "pickup-truck": "van",
    "suv": "car",
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
    try:
        return [_genetec(doc, registry, date_order)]
    except Rejection as failure:
        return [failure]


def _genetec(
    doc: Mapping[str, object], registry: VendorRegistry, default_order: DateOrder | None
) -> CanonicalRead:
    target = find_target(registry, "genetec", [vendor_key(doc.get("CameraName"), "CameraName")])
    event_id = checked_event_id(required(doc, "VehicleID"), "VehicleID")
    order = target.date_order or default_order
    if order is None:
        raise violation("no Genetec date order configured for this camera")
    captured_at = plausible(
        _genetec_time(required(doc, "DateUtc"), required(doc, "TimeUtc"), order), "DateUtc"
    )
    motion = lookup_class(_GENETEC_MOTIONS, doc.get("RelativeMotion"))
    return canonical_read(
        target,
        event_id=event_id,
        direction=target.rule.by_motion(motion),
        captured_at=captured_at,
        plate=plate_text(required(doc, "Plate"), "Plate"),
        country=country_code(required(doc, "State"), "State"),
        confidence=_genetec_confidence(required(doc, "ConfidenceScore")),
        vehicle_class=lookup_class(_GENETEC_CLASSES, doc.get("VehicleType")),
        candidates=[],
        source_format="genetec",
    )


def _genetec_confidence(value: object) -> float:
    # Sent as a string ("87"); a JSON number means the same and is taken too.
    if isinstance(value, str):
        if not _GENETEC_PERCENT.fullmatch(value.strip()):
            raise violation("field 'ConfidenceScore' must be a number from 0 to 100")
        value = float(value.strip().replace(",", "."))
    return fraction(value, "ConfidenceScore", percent=True)


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


def detect(value: bytes) -> str | None:
    return "genetec" if _PLATE.search(value) and _KEYS.search(value) else None


def map_payload(
    value: bytes, fmt: str, registry: VendorRegistry, date_order: DateOrder | None
) -> list[MappedRead]:
    return map_genetec(parse_json_object(value), registry, date_order=date_order)


VENDOR: Final = VendorCodec(
    rules=VendorRules("genetec", motions=("approaching", "receding"), date_order=True),
    formats=("genetec",),
    syntax="json",
    keys=(b'"Plate"',),
    detect=detect,
    map_payload=map_payload,
)
