"""Hikvision ISAPI ``EventNotificationAlert`` (XML) with ``eventType`` ANPR.

Mapping (vendor field -> canonical field; shared rules in :mod:`pipeline.codec.vendors`):

=================  ==============================
canonical          Hikvision ISAPI (XML)
=================  ==============================
event_id           ``UUID`` (a digest when longer
                   than ours)
camera             ``deviceID:channel``, else
                   ``deviceID``, else MAC, else
                   IP address, with the channel
captured_at        ``dateTime`` (offset required)
plate              ``ANPR/licensePlate``
confidence         ``ANPR/confidenceLevel`` /100
plate_country      ``countryAbbreviation`` in
                   ``ANPR`` or under the root
                   (absent, ``NON``: unknown)
direction          ``ANPR/direction`` forward,
                   reverse (unknown: none)
vehicle_class      ``ANPR/vehicleType``
candidates         none
=================  ==============================

The camera: real alerts often carry no ``deviceID`` (a camera left at factory settings); they
name themselves by ``macAddress``, ``ipAddress`` and ``channelID`` (else ``dynChannelID``). The
registry is asked, first match wins: ``<deviceID>:<channel>``, ``<deviceID>``, then the address
keys of :func:`pipeline.reference.sites.address_keys` (MAC with and without the channel, then
IP); cameras are registered by ``vendor_camera_id`` or by ``mac``/``ip`` and ``channel``.

Simulated payloads (:func:`encode`): an ISAPI ``EventNotificationAlert`` with the local Oslo time
(+01:00/+02:00), ``isDataRetransmission`` set from ``retransmission`` and a fake ``picData``.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final
from xml.sax.saxutils import escape

from pipeline.codec.reasons import Reason, Rejection
from pipeline.codec.vendors._payloads import (
    NAMESPACE,
    XML_CONTENT_TYPE,
    Facts,
    class_word,
    digest,
    fake_jpeg,
    motion_for,
    offset_text,
    oslo_offset,
    pick,
)
from pipeline.codec.vendors._shared import (
    CanonicalRead,
    MappedRead,
    VendorCodec,
    VendorRegistry,
    canonical_read,
    country_code,
    find_target,
    fraction,
    lookup_class,
    parse_xml,
    plate_text,
    rfc3339,
    vendor_event_id,
    violation,
)
from pipeline.reference.sites import (
    Camera,
    DateOrder,
    VendorRules,
    address_keys,
    normal_ip,
    normal_mac,
)

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


def _children(element: Element) -> dict[str, Element]:
    """An element's children by local name (any namespace), the first of a name winning."""
    found: dict[str, Element] = {}
    for child in element:
        tag = child.tag
        if isinstance(tag, str):
            found.setdefault(tag[tag.index("}") + 1 :] if tag[:1] == "{" else tag, child)
    return found


def _text(children: Mapping[str, Element], name: str) -> str | None:
    child = children.get(name)
    if child is None:
        return None
    text = (child.text or "").strip()
    return text or None


def _required_text(children: Mapping[str, Element], name: str) -> str:
    text = _text(children, name)
    if text is None:
        raise violation(f"element '{name}' is missing or empty")
    return text


_HIKVISION_INTEGER: Final = re.compile(r"[0-9]{1,3}")


def map_hikvision(root: Element, registry: VendorRegistry) -> list[MappedRead]:
    """An ``EventNotificationAlert`` with ``eventType`` ANPR -> one read.

    The camera is found by ``deviceID`` (with its channel), else by MAC or IP address and
    channel; see the module docstring.
    """
    try:
        return [_hikvision(root, registry)]
    except Rejection as failure:
        return [failure]


def _hikvision(element: Element, registry: VendorRegistry) -> CanonicalRead:
    if _local(element.tag) != "EventNotificationAlert":
        raise Rejection(Reason.UNSUPPORTED_FORMAT, "root element is not EventNotificationAlert")
    root = _children(element)
    if _text(root, "eventType") != "ANPR":
        raise Rejection(Reason.UNSUPPORTED_FORMAT, "eventType is not ANPR")
    quirks: list[str] = []
    target = find_target(registry, "hikvision", _camera_keys(root))
    event_id = vendor_event_id(_required_text(root, "UUID"), "UUID", quirks)
    captured_at = rfc3339(_required_text(root, "dateTime"), "dateTime")
    retransmission = _text(root, "isDataRetransmission")
    if retransmission not in (None, "true", "false"):
        raise violation("element 'isDataRetransmission' must be true or false")
    anpr_element = root.get("ANPR")
    if anpr_element is None:
        raise violation("element 'ANPR' is missing")
    anpr = _children(anpr_element)
    level = _required_text(anpr, "confidenceLevel")
    if not _HIKVISION_INTEGER.fullmatch(level):
        raise violation("element 'confidenceLevel' must be an integer from 0 to 100")
    motion = (_text(anpr, "direction") or "").lower()
    country = _text(anpr, "countryAbbreviation") or _text(root, "countryAbbreviation")
    return canonical_read(
        target,
        event_id=event_id,
        direction=target.rule.by_motion(motion if motion in _MOTIONS else None),
        captured_at=captured_at,
        plate=plate_text(_required_text(anpr, "licensePlate"), "licensePlate"),
        country=country_code(country, "countryAbbreviation", quirks),
        confidence=fraction(int(level), "confidenceLevel", percent=True),
        vehicle_class=lookup_class(_HIKVISION_CLASSES, _text(anpr, "vehicleType")),
        candidates=[],
        source_format="hikvision",
        retransmission=retransmission == "true",
        quirks=quirks,
    )


_CHANNEL: Final = re.compile(r"[0-9]{1,3}")


def _camera_keys(root: Mapping[str, Element]) -> list[str]:
    """The registry keys this alert may be known by, most specific first (module doc)."""
    channel_text = _text(root, "channelID") or _text(root, "dynChannelID")
    channel = int(channel_text) if channel_text and _CHANNEL.fullmatch(channel_text) else None
    keys: list[str] = []
    device = _text(root, "deviceID")
    if device is not None:
        keys += [f"{device}:{channel_text}", device] if channel_text else [device]
    mac = _text(root, "macAddress")
    ip = _text(root, "ipAddress")
    keys += address_keys(normal_mac(mac) if mac else None, normal_ip(ip) if ip else None, channel)
    if not keys:
        raise violation("no deviceID, macAddress or ipAddress names the camera")
    return keys


_ROOT: Final = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?EventNotificationAlert[\s/>]")
# The root element follows at most an XML declaration and a comment or two.
_SNIFF_BYTES: Final = 4096


def detect(value: bytes) -> str | None:
    return "hikvision" if _ROOT.search(value, 0, _SNIFF_BYTES) else None


def map_payload(
    value: bytes, fmt: str, registry: VendorRegistry, date_order: DateOrder | None
) -> list[MappedRead]:
    return map_hikvision(parse_xml(value), registry)


# -- simulated payloads ------------------------------------------------------------------------

_HIKVISION_NS: Final = uuid.uuid5(NAMESPACE, "hikvision")
# Hikvision firmware writes alpha-2 or alpha-3 (one or the other per camera).
_ALPHA3: Final[Mapping[str, str]] = {
    "NO": "NOR", "SE": "SWE", "FI": "FIN", "DK": "DNK", "DE": "DEU", "PL": "POL",
    "LT": "LTU", "LV": "LVA", "EE": "EST", "RU": "RUS", "NL": "NLD", "GB": "GBR",
}  # fmt: skip
# Vendor words per canonical class, each mapped back to that class by the table above.
_HIKVISION_TYPES: Final[Mapping[str, tuple[str, ...]]] = {
    "car": ("smallCar", "SUVMPV"),
    "van": ("van", "pickupTruck"),
    "truck": ("truck", "heavyTruck", "lightTruck"),
    "bus": ("largeBus", "mediumBus"),
    "motorcycle": ("motorcycle", "twoWheelVehicle"),
}


def encode(
    facts: Facts, camera: Camera, vendor_id: str, rng: random.Random, retransmission: bool
) -> tuple[bytes, str]:
    # The mapper looks up "<deviceID>:<channelID>" (an NVR channel), then "<deviceID>".
    device, colon, channel = vendor_id.rpartition(":")
    if not colon:
        device, channel = vendor_id, "1"
    offset = oslo_offset(facts.captured)
    local = facts.captured + offset
    when = f"{local:%Y-%m-%dT%H:%M:%S}.{local.microsecond // 1000:03d}{offset_text(offset)}"
    host = digest("hikvision-host", vendor_id)
    country = facts.country
    if pick(("alpha-2", "alpha-3"), "hikvision-firmware", vendor_id) == "alpha-3":
        country = _ALPHA3.get(country, country)
    motion = motion_for(facts, camera, without_rule="forward")
    fields = {
        "ipAddress": f"192.0.2.{host[0] % 254 + 1}",
        "portNo": "80",
        "protocol": "HTTP",
        "macAddress": "02:00:" + ":".join(f"{b:02x}" for b in host[1:5]),
        "channelID": channel,
        "dateTime": when,
        "activePostCount": "1",
        "eventType": "ANPR",
        "eventState": "active",
        "eventDescription": "ANPR",
        "channelName": f"{camera.id} lane {camera.lane}",
        "deviceID": device,
    }
    anpr = {
        "licensePlate": facts.plate.upper(),
        "line": "1",
        "direction": motion,
        "confidenceLevel": str(round(facts.confidence * 100)),
        "plateType": "unknown",
        "plateColor": "white",
        "vehicleType": class_word(_HIKVISION_TYPES, facts, rng),
    }
    picture = fake_jpeg(rng, rng.randint(200, 400))
    lines = ['<?xml version="1.0" encoding="UTF-8"?>']
    lines.append(
        '<EventNotificationAlert version="2.0" xmlns="http://www.isapi.org/ver20/XMLSchema">'
    )
    lines += [f"<{k}>{escape(v)}</{k}>" for k, v in fields.items()]
    lines.append("<ANPR>")
    lines += [f"<{k}>{escape(v)}</{k}>" for k, v in anpr.items()]
    lines += [
        "<pictureInfoList><pictureInfo>",
        "<fileName>licensePlatePicture.jpg</fileName><type>licensePlatePicture</type>",
        f"<dataType>0</dataType><picData>{picture}</picData>",
        "</pictureInfo></pictureInfoList>",
        f"<countryAbbreviation>{escape(country)}</countryAbbreviation>",
        "</ANPR>",
        f"<UUID>{uuid.uuid5(_HIKVISION_NS, facts.event_id)}</UUID>",
        "<picNum>1</picNum>",
        f"<isDataRetransmission>{'true' if retransmission else 'false'}</isDataRetransmission>",
        "</EventNotificationAlert>",
        "",
    ]
    return "\n".join(lines).encode(), XML_CONTENT_TYPE


def predicted_event_id(facts: Facts, vendor_id: str) -> str:
    return str(uuid.uuid5(_HIKVISION_NS, facts.event_id))


VENDOR: Final = VendorCodec(
    rules=VendorRules("hikvision", motions=_MOTIONS, device_address=True),
    formats=("hikvision",),
    syntax="xml",
    keys=(),
    detect=detect,
    map_payload=map_payload,
    encode=encode,
    predicted_event_id=predicted_event_id,
)
