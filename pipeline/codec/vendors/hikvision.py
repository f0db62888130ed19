"""Hikvision ISAPI ``EventNotificationAlert`` (XML) with ``eventType`` ANPR.

Field mapping: see the table in :mod:`pipeline.codec.vendors`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from pipeline.codec.reasons import Reason, Rejection
from pipeline.codec.vendors._shared import (
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
    parse_xml,
    plate_text,
    rfc3339,
    violation,
)
from pipeline.reference.sites import DateOrder, VendorRules

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

_MOTIONS: Final = ("forward", "reverse")
_HIKVISION_CLASSES: Final[Mapping[str, str]] = {
    "smallcar": "car",
    "minicar": "car",
    "suvmpv": "car",
    "van": "van",
    "pickuptruck": "van",
    "lighttruck": "truck",
    "truck": "truck",
    "mediumheavytruck": "truck",
    "heavytruck": "truck",
    "largebus": "bus",
    "mediumbus": "bus",
    "minibus": "bus",
    "bus": "bus",
    "motorcycle": "motorcycle",
    "twowheelvehicle": "motorcycle",
}


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child(element: Element, name: str) -> Element | None:
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _text(element: Element, name: str) -> str | None:
    child = _child(element, name)
    if child is None:
        return None
    text = (child.text or "").strip()
    return text or None


def _required_text(element: Element, name: str) -> str:
    text = _text(element, name)
    if text is None:
        raise violation(f"element '{name}' is missing or empty")
    return text


_HIKVISION_INTEGER: Final = re.compile(r"[0-9]{1,3}")


def map_hikvision(root: Element, registry: VendorRegistry) -> list[MappedRead]:
    """An ``EventNotificationAlert`` with ``eventType`` ANPR -> one read.

    The camera is registered as ``<deviceID>:<channelID>`` (an NVR channel) or ``<deviceID>``
    (a camera); the first that the registry knows wins.
    """
    try:
        return [_hikvision(root, registry)]
    except Rejection as failure:
        return [failure]


def _hikvision(root: Element, registry: VendorRegistry) -> CanonicalRead:
    if _local(root.tag) != "EventNotificationAlert":
        raise Rejection(Reason.UNSUPPORTED_FORMAT, "root element is not EventNotificationAlert")
    if _text(root, "eventType") != "ANPR":
        raise Rejection(Reason.UNSUPPORTED_FORMAT, "eventType is not ANPR")
    device = _required_text(root, "deviceID")
    channel = _text(root, "channelID")
    keys = [f"{device}:{channel}", device] if channel else [device]
    target = find_target(registry, "hikvision", keys)
    event_id = checked_event_id(_required_text(root, "UUID"), "UUID")
    captured_at = rfc3339(_required_text(root, "dateTime"), "dateTime")
    retransmission = _text(root, "isDataRetransmission")
    if retransmission not in (None, "true", "false"):
        raise violation("element 'isDataRetransmission' must be true or false")
    anpr = _child(root, "ANPR")
    if anpr is None:
        raise violation("element 'ANPR' is missing")
    level = _required_text(anpr, "confidenceLevel")
    if not _HIKVISION_INTEGER.fullmatch(level):
        raise violation("element 'confidenceLevel' must be an integer from 0 to 100")
    motion = (_text(anpr, "direction") or "").lower()
    return canonical_read(
        target,
        event_id=event_id,
        direction=target.rule.by_motion(motion if motion in _MOTIONS else None),
        captured_at=captured_at,
        plate=plate_text(_required_text(anpr, "licensePlate"), "licensePlate"),
        country=country_code(_required_text(anpr, "countryAbbreviation"), "countryAbbreviation"),
        confidence=fraction(int(level), "confidenceLevel", percent=True),
        vehicle_class=lookup_class(_HIKVISION_CLASSES, _text(anpr, "vehicleType")),
        candidates=[],
        source_format="hikvision",
        retransmission=retransmission == "true",
    )


_ROOT: Final = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?EventNotificationAlert[\s/>]")
# The root element follows at most an XML declaration and a comment or two.
_SNIFF_BYTES: Final = 4096


def detect(value: bytes) -> str | None:
    return "hikvision" if _ROOT.search(value, 0, _SNIFF_BYTES) else None


def map_payload(
    value: bytes, fmt: str, registry: VendorRegistry, date_order: DateOrder | None
) -> list[MappedRead]:
    return map_hikvision(parse_xml(value), registry)


VENDOR: Final = VendorCodec(
    rules=VendorRules("hikvision", motions=_MOTIONS),
    formats=("hikvision",),
    syntax="xml",
    keys=(),
    detect=detect,
    map_payload=map_payload,
)
