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

By the batch (:func:`map_batch`): an alert that one regular expression proves plain (a small,
safe subset of XML; see that section) is read without any XML parser, its fields mapped with
Arrow compute; every other alert takes :func:`map_hikvision` and its safe parser.

Simulated payloads (:func:`encode`): an ISAPI ``EventNotificationAlert`` with the local Oslo time
(+01:00/+02:00), ``isDataRetransmission`` set from ``retransmission`` and a fake ``picData``.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Final
from xml.sax.saxutils import escape

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.codec.plate_reads import parse_rfc3339
from pipeline.codec.reasons import Reason, Rejection
from pipeline.codec.vendors._columnar import ColumnReads, by_value, no_reads, read_columns
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
    EARLIEST_CAPTURE,
    MAX_PLATE,
    CanonicalRead,
    MappedRead,
    Target,
    VendorCodec,
    VendorRegistry,
    attempt,
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
from pipeline.schemas import CANDIDATES, EVENT_ID_PATTERN, RFC3339_PATTERN, UTC_TS

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
    return [attempt(partial(_hikvision, root, registry))]


def _hikvision(element: Element, registry: VendorRegistry) -> CanonicalRead:
    if _local(element.tag) != "EventNotificationAlert":
        raise Rejection(Reason.UNSUPPORTED_FORMAT, "root element is not EventNotificationAlert")
    root = _children(element)
    if _text(root, "eventType") != "ANPR":
        raise Rejection(Reason.UNSUPPORTED_FORMAT, "eventType is not ANPR")
    quirks: list[str] = []
    target = find_target(registry, "hikvision", _camera_keys(partial(_text, root)))
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


def _camera_keys(text: Callable[[str], str | None]) -> list[str]:
    """The registry keys this alert may be known by, most specific first (module doc);
    ``text``: the stripped text of a child of the root by name, None when absent or empty."""
    channel_text = text("channelID") or text("dynChannelID")
    channel = int(channel_text) if channel_text and _CHANNEL.fullmatch(channel_text) else None
    keys: list[str] = []
    device = text("deviceID")
    if device is not None:
        keys += [f"{device}:{channel_text}", device] if channel_text else [device]
    mac = text("macAddress")
    ip = text("ipAddress")
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


# -- by the batch (see pipeline.codec.vendors._columnar) --------------------------------------
#
# An alert is read without any XML parser when one regular expression proves it lies in a small
# subset of XML, in which every well-formed document is parsed alike by every parser and
# nothing can be declared, expanded or fetched: ASCII text without "&" (so no entity or
# character reference) or "]" (so no "]]>"), no "<!" (no DTD, comment or CDATA), no processing
# instruction but an optional UTF-8 XML declaration, unprefixed element names, attributes only
# ``version`` and ``xmlns`` on the root, every end tag naming its start tag (a back-reference),
# at most _DEPTH levels. The same expression captures the fields the mapper reads where the
# mapper reads them (children of the root, children of its one ANPR element): each such child
# may appear once, as plain text (a second one, or one with children or attributes, fails the
# match, since the mapper takes the first). Anything else goes to the per-message mapper and
# its safe parser; both give the same reads (tests/unit/codec/test_columnar.py).

_ROOT_FIELDS: Final = (
    "eventType", "UUID", "dateTime", "isDataRetransmission", "channelID", "dynChannelID",
    "deviceID", "macAddress", "ipAddress", "countryAbbreviation",
)  # fmt: skip
_ANPR_FIELDS: Final = (
    "confidenceLevel", "direction", "countryAbbreviation", "licensePlate", "vehicleType",
)  # fmt: skip
_DEPTH: Final = 8  # element levels below the root; real alerts use five
_S: Final = r"[ \t\r\n]"
_NAME: Final = r"[A-Za-z_][A-Za-z0-9_.\-]*+"
# Text: printable ASCII, tab and newlines, without < & ]. A read field's text has no CR either:
# a parser turns CR LF into LF, which the captured bytes would not.
_TEXT: Final = r"[\t\n\r\x20-\x25\x27-\x3b\x3d-\x5c\x5e-\x7e]++"
_FIELD_TEXT: Final = r"[\t\n\x20-\x25\x27-\x3b\x3d-\x5c\x5e-\x7e]*+"


def _content(level: int, tag: str) -> str:
    """Text and elements of any name below ``level``; ``tag`` keeps group names unique."""
    if level > _DEPTH:
        return f"(?:{_TEXT})?"
    group = f"{tag}{level}"
    element = rf"<(?P<{group}>{_NAME}){_S}*+(?:/>|>{_content(level + 1, tag)}</(?P={group}){_S}*+>)"
    return rf"(?:{_TEXT}|{element})*+"


def _other(read: Sequence[str], level: int, tag: str) -> str:
    """After its "<": an element not named in ``read``, with anything inside."""
    names = "|".join(read)
    group = f"{tag}{level}"
    return (
        rf"(?!(?:{names})[ \t\r\n/>])(?P<{group}>{_NAME}){_S}*+"
        rf"(?:/>|>{_content(level + 1, tag)}</(?P={group}){_S}*+>)"
    )


def _fields(names: Sequence[str], prefix: str) -> str:
    """After its "<": one of the elements ``names`` holding text, captured by name."""
    # "(?(@g@)(?!))": fail when the group was set already (a second element of that name);
    # written with the group's number once it is known (a name must be defined before use).
    return "|".join(
        rf"{n}>(?(@{prefix}{n}@)(?!))(?P<{prefix}{n}>{_FIELD_TEXT})</{n}>" for n in names
    )


def _simple_alert() -> re.Pattern[bytes]:
    # Every element after one "<": each alternative then fails on its first letter.
    anpr = rf"(?:{_TEXT}|<(?:{_fields(_ANPR_FIELDS, 'a_')}|{_other(_ANPR_FIELDS, 2, 'a')}))*+"
    root = (
        rf"(?:{_TEXT}|<(?:{_fields(_ROOT_FIELDS, 'r_')}"
        rf"|ANPR>(?(@anpr@)(?!))(?P<anpr>){anpr}</ANPR{_S}*+>"
        rf"|{_other((*_ROOT_FIELDS, 'ANPR'), 1, 'r')}))*+"
    )
    declaration = (
        r"<\?xml version=(?:\"1\.0\"|'1\.0')(?: encoding=(?:\"(?i:utf-8)\"|'(?i:utf-8)'))?"
        rf"(?: standalone=(?:\"(?:yes|no)\"|'(?:yes|no)'))?{_S}*+\?>"
    )
    # Not the XML namespaces' own URIs, which no default namespace may name.
    xmlns = r'xmlns="(?!http://www\.w3\.org/)[^"<&]*+"'
    version = r'version="[^"<&]*+"'
    attributes = rf"(?:{_S}++{version}(?:{_S}++{xmlns})?|{_S}++{xmlns}(?:{_S}++{version})?)?"
    text = (
        rf"(?:{declaration})?{_S}*+<EventNotificationAlert{attributes}{_S}*+>{root}"
        rf"</EventNotificationAlert{_S}*+>{_S}*+"
    )
    numbered = re.compile(re.sub(r"\(\?\(@\w+@\)\(\?!\)\)", "", text)).groupindex
    return re.compile(re.sub(r"@(\w+)@", lambda m: str(numbered[m.group(1)]), text).encode())


_SIMPLE_ALERT: Final = _simple_alert()
_CAPTURED: Final = (
    *(f"r_{n}" for n in _ROOT_FIELDS), "anpr", *(f"a_{n}" for n in _ANPR_FIELDS)
)  # fmt: skip
_GROUPS: Final = tuple(_SIMPLE_ALERT.groupindex[n] for n in _CAPTURED)
_CAMERA_FIELDS: Final = ("channelID", "dynChannelID", "deviceID", "macAddress", "ipAddress")
_LATEST: Final = datetime.max.replace(tzinfo=UTC)
_NO_CANDIDATES: Final = pa.array([], CANDIDATES.value_type)


def map_batch(values: Sequence[bytes], registry: VendorRegistry) -> ColumnReads:
    """Many alerts at once; the same reads as :func:`map_hikvision`, or the alert back to it."""
    found: list[tuple[bytes | None, ...]] = []
    position: list[int] = []
    slow: list[int] = []
    match = _SIMPLE_ALERT.fullmatch
    for i, value in enumerate(values):
        alert = match(value)
        if alert is None:
            slow.append(i)
        else:
            found.append(alert.group(*_GROUPS))
            position.append(i)
    if not found:
        return no_reads(slow)
    raw = dict(zip(_CAPTURED, zip(*found, strict=True), strict=True))

    def text(name: str) -> pa.Array:
        """The mapper's ``_text``: stripped, None when absent or empty."""
        stripped = pc.utf8_trim_whitespace(pa.array(raw[name], pa.binary()).cast(pa.string()))
        return pc.if_else(pc.equal(pc.binary_length(stripped), 0), None, stripped)

    cameras = list(zip(*(raw[f"r_{n}"] for n in _CAMERA_FIELDS), strict=True))
    found_targets = {camera: _target(registry, camera) for camera in set(cameras)}
    row_targets = [found_targets[camera] for camera in cameras]
    event_id, when, plate = text("r_UUID"), text("r_dateTime"), text("a_licensePlate")
    # The mapper's rule: RFC 3339 with at most six fraction digits (parse_rfc3339 takes more).
    captured = parse_rfc3339(
        pc.if_else(pc.match_substring_regex(when, RFC3339_PATTERN), when, None)
    )
    level = text("a_confidenceLevel")
    level_ok = pc.match_substring_regex(level, "^[0-9]{1,3}$")
    percent = pc.if_else(level_ok, level, "0").cast(pa.float64())
    retransmission = text("r_isDataRetransmission")
    ok = pc.and_(
        pc.and_(
            pc.and_(pc.equal(text("r_eventType"), "ANPR"), pc.is_valid(pa.array(raw["anpr"]))),
            pc.and_(
                pc.match_substring_regex(event_id, EVENT_ID_PATTERN),
                pc.or_kleene(pc.is_null(retransmission), pc.is_in(retransmission, _FLAGS)),
            ),
        ),
        pc.and_(
            pc.and_(
                pc.greater_equal(captured, pa.scalar(EARLIEST_CAPTURE, UTC_TS)),
                pc.less_equal(captured, pa.scalar(_LATEST, UTC_TS)),
            ),
            pc.and_(
                pc.and_(level_ok, pc.less_equal(percent, 100.0)),
                pc.less_equal(pc.utf8_length(plate), MAX_PLATE),
            ),
        ),
    )
    ok_np = np.asarray(ok.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    ok_np &= np.fromiter((t is not None for t in row_targets), dtype=bool, count=len(found))
    where = np.asarray(position, dtype=np.int64)
    slow += where[~ok_np].tolist()
    rows = np.flatnonzero(ok_np)
    if not len(rows):
        return no_reads(sorted(slow))
    take = pa.array(rows)
    # Every kept row has a target (ok_np); the filter only says so to the type checker.
    kept = [t for t in (row_targets[r] for r in rows.tolist()) if t is not None]
    motions = pc.utf8_lower(text("a_direction").take(take)).to_pylist()
    directions = [
        t.rule.by_motion(m if m in _MOTIONS else None) for t, m in zip(kept, motions, strict=True)
    ]
    country = pc.coalesce(text("a_countryAbbreviation"), text("r_countryAbbreviation"))
    mapped = read_columns(
        kept,
        directions,
        event_id=event_id.take(take),
        captured_at=when.take(take),
        plate=plate.take(take),
        plate_country=by_value(
            country.take(take), lambda c: country_code(c, "countryAbbreviation", [])
        ),
        confidence=pc.divide(percent.take(take), 100.0),
        vehicle_class=by_value(
            text("a_vehicleType").take(take), partial(lookup_class, _HIKVISION_CLASSES)
        ),
    )
    none = pa.ListArray.from_arrays(pa.array(np.zeros(len(rows) + 1, np.int32)), _NO_CANDIDATES)
    return ColumnReads(mapped, where[rows], none, sorted(slow))


_FLAGS: Final = pa.array(["true", "false"])


def _target(registry: VendorRegistry, camera: tuple[bytes | None, ...]) -> Target | None:
    """The registered camera of an alert's camera fields (as captured), or None."""
    texts = {
        name: (value.strip().decode() or None) if value is not None else None
        for name, value in zip(_CAMERA_FIELDS, camera, strict=True)
    }
    try:
        return find_target(registry, "hikvision", _camera_keys(texts.get))
    except Rejection:
        return None


VENDOR: Final = VendorCodec(
    rules=VendorRules("hikvision", motions=_MOTIONS, device_address=True),
    formats=("hikvision",),
    syntax="xml",
    keys=(),
    detect=detect,
    map_payload=map_payload,
    encode=encode,
    predicted_event_id=predicted_event_id,
    map_batch=map_batch,
)
