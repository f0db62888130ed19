"""What a vendor camera would send for a simulated read: the inverse of the ingest mappers.

:func:`encode_vendor` turns one canonical ``plate_read/1`` dict into the payload a camera of
``camera.vendor`` posts, in the shapes and field names :mod:`pipeline.codec.vendors` reads. The
``encode`` of each vendor module (registered in ``VENDOR_CODECS``) writes it; that module's
docstring says what its payloads hold.

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

import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from pipeline.codec.vendors import VENDOR_CODECS, VendorCodec
from pipeline.codec.vendors._payloads import JSON_CONTENT_TYPE, XML_CONTENT_TYPE, Facts
from pipeline.reference.sites import Camera

__all__ = [
    "JSON_CONTENT_TYPE",
    "MAX_PAYLOAD_BYTES",
    "XML_CONTENT_TYPE",
    "encode_vendor",
    "mapped_event_id",
]

MAX_PAYLOAD_BYTES: Final = 16 * 1024

Read = Mapping[str, object]

_VENDORS: Final[Mapping[str, VendorCodec]] = {vendor.name: vendor for vendor in VENDOR_CODECS}


def encode_vendor(
    read: Read, camera: Camera, rng: random.Random, *, retransmission: bool = False
) -> tuple[bytes, str]:
    """The payload ``camera`` would send for ``read``, and its content type.

    ``retransmission`` sets Hikvision's ``isDataRetransmission``; the other vendors have no such
    flag and re-send the same content. ``ValueError`` for a canonical camera, a camera without a
    ``vendor_camera_id`` or a read of another camera.
    """
    facts = _facts(read, camera)
    vendor = _vendor(camera)
    payload, content_type = vendor.encode(facts, camera, _vendor_id(camera), rng, retransmission)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"{camera.vendor} payload exceeds {MAX_PAYLOAD_BYTES} bytes")
    return payload, content_type


def mapped_event_id(read: Read, camera: Camera) -> str:
    """The ``event_id`` ingest gives the read mapped from :func:`encode_vendor`'s payload."""
    vendor = _vendor(camera)
    return vendor.predicted_event_id(_facts(read, camera), _vendor_id(camera))


def _vendor(camera: Camera) -> VendorCodec:
    vendor = _VENDORS.get(camera.vendor)
    if vendor is None:
        raise ValueError(f"camera {camera.id} sends canonical reads, not a vendor payload")
    return vendor


def _facts(read: Read, camera: Camera) -> Facts:
    if read.get("camera_id") != camera.id or read.get("site_id") != camera.site_id:
        raise ValueError(f"the read is not from camera {camera.id}")
    captured = datetime.fromisoformat(str(read["captured_at"]))
    if captured.tzinfo is None:
        raise ValueError("captured_at has no offset")
    confidence = read["confidence"]
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        raise ValueError("confidence must be a number")
    vehicle_class = read.get("vehicle_class")
    return Facts(
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
