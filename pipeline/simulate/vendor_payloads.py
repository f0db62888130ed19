"""What a vendor camera would send for a simulated read: the inverse of the ingest mappers.

:func:`encode_vendor` turns one canonical ``plate_read/1`` dict into the payload a camera of
``camera.vendor`` posts, in the shapes and field names :mod:`pipeline.codec.vendors` reads:

- ``openalpr``: an ``alpr_group`` version 2 (one vehicle over a few frames), sometimes with a
  UTF-8 byte-order mark; ``best_uuid`` is ``<agent_uid>-<camera_id>-<frame epoch ms>`` as Rekor
  writes it, confidences in percent, ``travel_direction`` in degrees and a fake
  ``vehicle_crop_jpeg``. Never ``alpr_results``: one payload, one read.
- ``platerecognizer``: a Stream webhook with exactly one result (the webhook may carry several,
  but one keeps the read-to-message mapping simple), the plate in lower case, ``score`` 0-1.
- ``hikvision``: an ISAPI ``EventNotificationAlert`` with the local Oslo time (+01:00/+02:00),
  ``isDataRetransmission`` set from ``retransmission`` and a fake ``picData``.
- ``genetec``: an AutoVu JSON read, ``DateUtc`` in the camera's ``date_order`` (DMY when it has
  none) and a fake ``ContextImage``.

Everything an id depends on is derived from the read, never from ``rng``, so
:func:`mapped_event_id` predicts the event id ingest will store: the uuid5 of the canonical
``event_id`` (Hikvision ``UUID``, Genetec ``VehicleID``), the mapper's own hash of camera and
timestamp (Plate Recognizer has no id), or for OpenALPR the camera's agent and a frame time
chosen by a hash of the ``event_id``. ``rng`` only varies what ingest ignores or reads the
same either way (byte-order mark, candidate lists, heading jitter, image bytes). Plates and
images are synthetic; camera addresses are in TEST-NET-1 (192.0.2.0/24).

Directions follow the camera's optional registry keys: ``entry_heading`` (OpenALPR, Plate
Recognizer) and ``entry_motion`` (Hikvision, Genetec) express the read's direction, a wrong-way
vehicle included. A camera without them gets plausible values that ingest ignores, since it
then takes the lane's direction; a read whose direction differs from its lane's therefore
maps to the lane's direction on such a camera.

Example::

    payload, content_type = encode_vendor(read, registry.camera(read["camera_id"]), rng)
    mapped_event_id(read, camera)  # the event_id ingest will give the mapped read
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from xml.sax.saxutils import escape

from pipeline.codec.vendors import platerecognizer_event_id
from pipeline.reference.sites import Camera, DateOrder

JSON_CONTENT_TYPE: Final = "application/json"
XML_CONTENT_TYPE: Final = "application/xml"
MAX_PAYLOAD_BYTES: Final = 16 * 1024

Read = Mapping[str, object]

_BOM: Final = b"\xef\xbb\xbf"
_BOM_RATIO: Final = 0.1  # Windows-hosted Rekor agents prepend one
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_FRAME_MS: Final = 40  # 25 frames per second
_MAX_BEST_FRAME: Final = 6
_HEADING_JITTER: Final = 60.0  # degrees either side; well clear of the 90-degree boundary
_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "urn:anpr-pipeline:simulate:vendor")
_HIKVISION_NS: Final = uuid.uuid5(_NAMESPACE, "hikvision")
_GENETEC_NS: Final = uuid.uuid5(_NAMESPACE, "genetec")
_LOOKALIKES: Final[Mapping[str, str]] = {
    "0": "O", "O": "0", "1": "I", "I": "1", "8": "B", "B": "8", "5": "S", "S": "5",
    "2": "Z", "Z": "2", "D": "0", "M": "N", "N": "M", "E": "F", "U": "V", "V": "U",
}  # fmt: skip
# Hikvision firmware writes alpha-2 or alpha-3 (one or the other per camera).
_ALPHA3: Final[Mapping[str, str]] = {
    "NO": "NOR", "SE": "SWE", "FI": "FIN", "DK": "DNK", "DE": "DEU", "PL": "POL",
    "LT": "LTU", "LV": "LVA", "EE": "EST", "RU": "RUS", "NL": "NLD", "GB": "GBR",
}  # fmt: skip
# Plate Recognizer reports some German plates with their Land.
_PR_GERMAN_REGIONS: Final = ("de", "de-by", "de-nw", "de-be", "de-sh")
# Vendor words per canonical class, each mapped back to that class by the ingest tables.
_OPENALPR_BODIES: Final[Mapping[str, tuple[str, ...]]] = {
    "car": ("sedan-standard", "sedan-compact", "suv-crossover", "suv-standard", "van-mini"),
    "van": ("van-full", "truck-standard"),
    "truck": ("tractor-trailer", "truck-box"),
    "bus": ("bus-coach", "bus-city"),
    "motorcycle": ("motorcycle",),
}
_PR_TYPES: Final[Mapping[str, tuple[str, ...]]] = {
    "car": ("Sedan", "SUV"),
    "van": ("Van", "Pickup Truck"),
    "truck": ("Big Truck",),
    "bus": ("Bus",),
    "motorcycle": ("Motorcycle",),
}
_HIKVISION_TYPES: Final[Mapping[str, tuple[str, ...]]] = {
    "car": ("smallCar", "SUVMPV"),
    "van": ("van", "pickupTruck"),
    "truck": ("truck", "heavyTruck", "lightTruck"),
    "bus": ("largeBus", "mediumBus"),
    "motorcycle": ("motorcycle", "twoWheelVehicle"),
}
_GENETEC_TYPES: Final[Mapping[str, tuple[str, ...]]] = {
    "car": ("Car", "SUV"),
    "van": ("Van", "Pickup"),
    "truck": ("Truck",),
    "bus": ("Bus",),
    "motorcycle": ("Motorcycle",),
}
_OPPOSITE: Final[Mapping[str, str]] = {
    "forward": "reverse",
    "reverse": "forward",
    "approaching": "receding",
    "receding": "approaching",
}


@dataclass(frozen=True)
class _Facts:
    """The fields of a canonical read that payloads carry, parsed once."""

    event_id: str
    captured: datetime  # UTC
    plate: str  # without spaces or dashes, as cameras print it
    country: str
    confidence: float
    vehicle_class: str | None
    direction: str


def encode_vendor(
    read: Read, camera: Camera, rng: random.Random, *, retransmission: bool = False
) -> tuple[bytes, str]:
    """The payload ``camera`` would send for ``read``, and its content type.

    ``retransmission`` sets Hikvision's ``isDataRetransmission``; the other vendors have no such
    flag and re-send the same content. ``ValueError`` for a canonical camera, a camera without a
    ``vendor_camera_id`` or a read of another camera.
    """
    facts = _facts(read, camera)
    encoder = _ENCODERS.get(camera.vendor)
    if encoder is None:
        raise ValueError(f"camera {camera.id} sends canonical reads, not a vendor payload")
    payload, content_type = encoder(facts, camera, _vendor_id(camera), rng, retransmission)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"{camera.vendor} payload exceeds {MAX_PAYLOAD_BYTES} bytes")
    return payload, content_type


def mapped_event_id(read: Read, camera: Camera) -> str:
    """The ``event_id`` ingest gives the read mapped from :func:`encode_vendor`'s payload."""
    if camera.vendor not in _ENCODERS:
        raise ValueError(f"camera {camera.id} sends canonical reads, not a vendor payload")
    facts = _facts(read, camera)
    vendor_id = _vendor_id(camera)
    match camera.vendor:
        case "openalpr":
            return _openalpr_uuid(vendor_id, _best_frame_ms(facts))
        case "platerecognizer":
            # The payload holds one result, so the mapper's result index is always 0.
            return platerecognizer_event_id(vendor_id, _pr_timestamp(facts.captured), 0)
        case "hikvision":
            return str(uuid.uuid5(_HIKVISION_NS, facts.event_id))
        case "genetec":
            return str(uuid.uuid5(_GENETEC_NS, facts.event_id))
    raise AssertionError(camera.vendor)  # every vendor in _ENCODERS has a case above


# -- shared ------------------------------------------------------------------------------------


def _facts(read: Read, camera: Camera) -> _Facts:
    if read.get("camera_id") != camera.id or read.get("site_id") != camera.site_id:
        raise ValueError(f"the read is not from camera {camera.id}")
    captured = datetime.fromisoformat(str(read["captured_at"]))
    if captured.tzinfo is None:
        raise ValueError("captured_at has no offset")
    confidence = read["confidence"]
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        raise ValueError("confidence must be a number")
    vehicle_class = read.get("vehicle_class")
    return _Facts(
        event_id=str(read["event_id"]),
        captured=captured.astimezone(UTC),
        plate="".join(ch for ch in str(read["plate"]) if ch.isalnum()),
        country=str(read["plate_country"]).upper(),
        confidence=float(confidence),
        vehicle_class=None if vehicle_class is None else str(vehicle_class),
        direction=str(read["direction"]),
    )


def _vendor_id(camera: Camera) -> str:
    if camera.vendor_camera_id is None:
        raise ValueError(f"camera {camera.id} has no vendor_camera_id")
    return camera.vendor_camera_id


def _digest(*parts: str, size: int = 16) -> bytes:
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=size).digest()


def _pick(options: tuple[str, ...], *parts: str) -> str:
    """A fixed choice per key (a camera's firmware or locale does not change per read)."""
    return options[_digest(*parts)[0] % len(options)]


def _epoch_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // _MS


def _oslo_offset(moment: datetime) -> timedelta:
    """Europe/Oslo's UTC offset: EU summer time, last Sunday of March to last Sunday of October,
    01:00 UTC both ends. Written out so the simulator needs no tz database."""

    def last_sunday(month: int) -> datetime:
        last_day = datetime(moment.year, month + 1, 1, 1, tzinfo=UTC) - timedelta(days=1)
        return last_day - timedelta(days=(last_day.weekday() + 1) % 7)

    summer = last_sunday(3) <= moment < last_sunday(10)
    return timedelta(hours=2 if summer else 1)


def _offset_text(offset: timedelta) -> str:
    return f"+{offset // timedelta(hours=1):02d}:00"


def _fake_jpeg(rng: random.Random, size: int) -> str:
    """Base64 of a few hundred bytes framed like a JPEG; no image, nobody in it."""
    return base64.b64encode(b"\xff\xd8\xff\xe0" + rng.randbytes(size) + b"\xff\xd9").decode()


def _class_word(table: Mapping[str, tuple[str, ...]], facts: _Facts, rng: random.Random) -> str:
    options = table.get(facts.vehicle_class or "")
    return rng.choice(options) if options else "unknown"


def _lookalike(plate: str, rng: random.Random) -> str:
    """A misreading an OCR engine might offer as a candidate."""
    at = rng.randrange(len(plate))
    swapped = _LOOKALIKES.get(plate[at])
    if swapped is None:
        # A character missed, or one read twice where a miss would leave almost nothing.
        return plate[:at] + plate[at + 1 :] if len(plate) > 2 else plate + plate[at]
    return plate[:at] + swapped + plate[at + 1 :]


def _dump_json(doc: Mapping[str, object]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


# -- directions --------------------------------------------------------------------------------


def _heading(facts: _Facts, camera: Camera, vendor_id: str, rng: random.Random) -> float:
    """A travel heading in degrees that the camera's ``entry_heading`` reads as the direction."""
    # Optional registry keys: a camera without them gets a fixed made-up heading per camera.
    entry: float | None = getattr(camera, "entry_heading", None)
    if entry is None:
        entry = _digest("heading", vendor_id)[0] * 360.0 / 256
    base = entry if facts.direction == "entry" else entry + 180.0
    return round((base + rng.uniform(-_HEADING_JITTER, _HEADING_JITTER)) % 360.0, 1) % 360.0


def _motion(facts: _Facts, camera: Camera, *, without_rule: str) -> str:
    """The vendor motion word for the read's direction, under the camera's ``entry_motion``."""
    entry: str | None = getattr(camera, "entry_motion", None)
    if entry is None:
        return without_rule  # ingest uses the lane's direction: traffic flows with the lane
    return entry if facts.direction == "entry" else _OPPOSITE[entry]


# -- OpenALPR / Rekor Scout --------------------------------------------------------------------


def _agent_uid(vendor_id: str) -> str:
    # One alprd install per camera here; Rekor agent uids are 40 characters.
    return _digest("openalpr-agent", vendor_id, size=20).hex().upper()


def _openalpr_uuid(vendor_id: str, frame_ms: int) -> str:
    return f"{_agent_uid(vendor_id)}-{vendor_id}-{frame_ms}"


def _best_frame(facts: _Facts) -> int:
    return _digest("best-frame", facts.event_id)[0] % _MAX_BEST_FRAME


def _best_frame_ms(facts: _Facts) -> int:
    return _epoch_ms(facts.captured) + _best_frame(facts) * _FRAME_MS


def _openalpr_group(
    facts: _Facts, camera: Camera, vendor_id: str, rng: random.Random, retransmission: bool
) -> tuple[bytes, str]:
    start = _epoch_ms(facts.captured)
    best = _best_frame(facts)
    frames = max(best + 1, rng.randint(2, _MAX_BEST_FRAME + 2))
    uuids = [_openalpr_uuid(vendor_id, start + k * _FRAME_MS) for k in range(frames)]
    confidence = round(facts.confidence * 100.0, 4)
    candidates = [{"plate": facts.plate, "confidence": confidence, "matches_template": 1}]
    for _ in range(rng.randint(1, 4)):
        lower = max(0.0, round(confidence - rng.uniform(2.0, 30.0), 2))
        candidates.append(
            {"plate": _lookalike(facts.plate, rng), "confidence": lower, "matches_template": 0}
        )
    region = facts.country.lower()
    body_type = _class_word(_OPENALPR_BODIES, facts, rng)
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
        "travel_direction": _heading(facts, camera, vendor_id, rng),
        "is_parked": False,
        "is_preview": False,
        "vehicle_crop_jpeg": _fake_jpeg(rng, rng.randint(200, 400)),
        "vehicle": {
            "body_type": [{"name": body_type, "confidence": round(rng.uniform(50, 95), 1)}],
            "color": [{"name": "silver-gray", "confidence": round(rng.uniform(30, 90), 1)}],
        },
    }
    payload = _dump_json(doc)
    if rng.random() < _BOM_RATIO:
        payload = _BOM + payload
    return payload, JSON_CONTENT_TYPE


# -- Plate Recognizer --------------------------------------------------------------------------


def _pr_timestamp(captured: datetime) -> str:
    # Part of the mapped event id: a function of the read alone, so it can be predicted.
    return captured.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _platerecognizer(
    facts: _Facts, camera: Camera, vendor_id: str, rng: random.Random, retransmission: bool
) -> tuple[bytes, str]:
    has_rule = getattr(camera, "entry_heading", None) is not None
    # Stream leaves direction empty when it could not track the vehicle; only harmless where
    # ingest would take the lane's direction anyway.
    direction: float | str = (
        "" if not has_rule and rng.random() < 0.3 else _heading(facts, camera, vendor_id, rng)
    )
    region = facts.country.lower()
    if region == "de":
        region = rng.choice(_PR_GERMAN_REGIONS)
    plate = facts.plate.lower()
    score = round(facts.confidence, 3)
    local = facts.captured + _oslo_offset(facts.captured)
    filename = f"{vendor_id}_screenshots/{facts.captured:%y-%m-%d/%H-%M-%S.%f}.jpg"
    result = {
        "box": {"xmin": rng.randint(300, 900), "ymin": rng.randint(200, 600), "xmax": 1000},
        "plate": plate,
        "region": {"code": region, "score": round(rng.uniform(0.5, 0.99), 3)},
        "score": score,
        "dscore": round(rng.uniform(0.5, 0.99), 3),
        "candidates": [
            {"plate": plate, "score": score},
            {"plate": _lookalike(facts.plate, rng).lower(), "score": round(score * 0.9, 3)},
        ],
        "vehicle": {
            "score": round(rng.uniform(0.5, 0.99), 3),
            "type": _class_word(_PR_TYPES, facts, rng),
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
                f"{local:%Y-%m-%d %H:%M:%S.%f}{_offset_text(_oslo_offset(facts.captured))}"
            ),
            "results": [result],
        },
    }
    return _dump_json(doc), JSON_CONTENT_TYPE


# -- Hikvision ISAPI ---------------------------------------------------------------------------


def _hikvision(
    facts: _Facts, camera: Camera, vendor_id: str, rng: random.Random, retransmission: bool
) -> tuple[bytes, str]:
    # The mapper looks up "<deviceID>:<channelID>" (an NVR channel), then "<deviceID>".
    device, colon, channel = vendor_id.rpartition(":")
    if not colon:
        device, channel = vendor_id, "1"
    offset = _oslo_offset(facts.captured)
    local = facts.captured + offset
    when = f"{local:%Y-%m-%dT%H:%M:%S}.{local.microsecond // 1000:03d}{_offset_text(offset)}"
    host = _digest("hikvision-host", vendor_id)
    country = facts.country
    if _pick(("alpha-2", "alpha-3"), "hikvision-firmware", vendor_id) == "alpha-3":
        country = _ALPHA3.get(country, country)
    motion = _motion(facts, camera, without_rule="forward")
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
        "vehicleType": _class_word(_HIKVISION_TYPES, facts, rng),
    }
    picture = _fake_jpeg(rng, rng.randint(200, 400))
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


# -- Genetec AutoVu ----------------------------------------------------------------------------


def _genetec_date(moment: datetime, order: DateOrder, vendor_id: str) -> str:
    """The date as the exporting Windows locale writes it (fixed per camera)."""
    if order == "MDY":  # en-US: no leading zeros
        return f"{moment.month}/{moment.day}/{moment.year}"
    if order == "YMD":
        sep = _pick(("-", "/"), "genetec-locale", vendor_id)
        return f"{moment.year}{sep}{moment.month:02d}{sep}{moment.day:02d}"
    sep = _pick(("/", ".", "-"), "genetec-locale", vendor_id)  # en-GB, nb-NO, nl-NL
    return f"{moment.day:02d}{sep}{moment.month:02d}{sep}{moment.year}"


def _genetec_time(moment: datetime, order: DateOrder) -> str:
    millis = f"{moment.microsecond // 1000:03d}"
    if order == "MDY":  # en-US: 12-hour clock
        hour = moment.hour % 12 or 12
        half = "AM" if moment.hour < 12 else "PM"
        return f"{hour}:{moment:%M:%S}.{millis} {half}"
    return f"{moment:%H:%M:%S}.{millis}"


def _genetec(
    facts: _Facts, camera: Camera, vendor_id: str, rng: random.Random, retransmission: bool
) -> tuple[bytes, str]:
    order: DateOrder = getattr(camera, "date_order", None) or "DMY"
    local = facts.captured + _oslo_offset(facts.captured)
    # A front camera sees traffic approach, a rear one sees it move away.
    usual = "approaching" if camera.position == "front" else "receding"
    doc: dict[str, object] = {
        "Plate": facts.plate.upper(),
        "State": facts.country,
        "ConfidenceScore": str(round(facts.confidence * 100)),
        "DateUtc": _genetec_date(facts.captured, order, vendor_id),
        "TimeUtc": _genetec_time(facts.captured, order),
        "DateLocal": _genetec_date(local, order, vendor_id),
        "TimeLocal": _genetec_time(local, order),
        "CameraName": vendor_id,
        "SourceName": f"AUTOVU-{_digest('genetec-unit', vendor_id).hex()[:8].upper()}",
        "VehicleID": str(uuid.uuid5(_GENETEC_NS, facts.event_id)),
        "RelativeMotion": _motion(facts, camera, without_rule=usual).capitalize(),
        "ContextImage": _fake_jpeg(rng, rng.randint(200, 400)),
    }
    if facts.vehicle_class in _GENETEC_TYPES:
        doc["VehicleType"] = _class_word(_GENETEC_TYPES, facts, rng)
    return _dump_json(doc), JSON_CONTENT_TYPE


_Encoder = Callable[[_Facts, Camera, str, random.Random, bool], tuple[bytes, str]]
_ENCODERS: Final[Mapping[str, _Encoder]] = {
    "openalpr": _openalpr_group,
    "platerecognizer": _platerecognizer,
    "hikvision": _hikvision,
    "genetec": _genetec,
}
