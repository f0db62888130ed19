"""What the simulator needs to write any vendor's payload; each vendor module writes its own.

The inverse of the mappers: :func:`pipeline.simulate.vendor_payloads.encode_vendor` parses a
canonical read into :class:`Facts` and calls the ``encode`` of the camera's vendor. Everything
an id depends on comes from the read, never from ``rng`` (see that module).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from pipeline.reference.sites import Camera

JSON_CONTENT_TYPE: Final = "application/json"
XML_CONTENT_TYPE: Final = "application/xml"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_HEADING_JITTER: Final = 60.0  # degrees either side; well clear of the 90-degree boundary
NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "urn:anpr-pipeline:simulate:vendor")
_LOOKALIKES: Final[Mapping[str, str]] = {
    "0": "O", "O": "0", "1": "I", "I": "1", "8": "B", "B": "8", "5": "S", "S": "5",
    "2": "Z", "Z": "2", "D": "0", "M": "N", "N": "M", "E": "F", "U": "V", "V": "U",
}  # fmt: skip
# Each vendor's pair of motion words (VendorRules.motions), both ways; the mappers read them too.
OPPOSITE_MOTION: Final[Mapping[str, str]] = {
    "forward": "reverse",
    "reverse": "forward",
    "approaching": "receding",
    "receding": "approaching",
}


@dataclass(frozen=True)
class Facts:
    """The fields of a canonical read that payloads carry, parsed once."""

    event_id: str
    captured: datetime  # UTC
    plate: str  # without spaces or dashes, as cameras print it
    country: str
    confidence: float
    vehicle_class: str | None
    direction: str


def digest(*parts: str, size: int = 16) -> bytes:
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=size).digest()


def pick(options: tuple[str, ...], *parts: str) -> str:
    """A fixed choice per key (a camera's firmware or locale does not change per read)."""
    return options[digest(*parts)[0] % len(options)]


def to_epoch_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // _MS


def oslo_offset(moment: datetime) -> timedelta:
    """Europe/Oslo's UTC offset: EU summer time, last Sunday of March to last Sunday of October,
    01:00 UTC both ends. Written out so the simulator needs no tz database."""

    def last_sunday(month: int) -> datetime:
        last_day = datetime(moment.year, month + 1, 1, 1, tzinfo=UTC) - timedelta(days=1)
        return last_day - timedelta(days=(last_day.weekday() + 1) % 7)

    summer = last_sunday(3) <= moment < last_sunday(10)
    return timedelta(hours=2 if summer else 1)


def offset_text(offset: timedelta) -> str:
    return f"+{offset // timedelta(hours=1):02d}:00"


def fake_jpeg(rng: random.Random, size: int) -> str:
    """Base64 of a few hundred bytes framed like a JPEG; no image, nobody in it."""
    return base64.b64encode(b"\xff\xd8\xff\xe0" + rng.randbytes(size) + b"\xff\xd9").decode()


def class_word(table: Mapping[str, tuple[str, ...]], facts: Facts, rng: random.Random) -> str:
    options = table.get(facts.vehicle_class or "")
    return rng.choice(options) if options else "unknown"


def lookalike(plate: str, rng: random.Random) -> str:
    """A misreading an OCR engine might offer as a candidate."""
    at = rng.randrange(len(plate))
    swapped = _LOOKALIKES.get(plate[at])
    if swapped is None:
        # A character missed, or one read twice where a miss would leave almost nothing.
        return plate[:at] + plate[at + 1 :] if len(plate) > 2 else plate + plate[at]
    return plate[:at] + swapped + plate[at + 1 :]


def dump_json(doc: Mapping[str, object]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


# -- directions --------------------------------------------------------------------------------


def heading_for(facts: Facts, camera: Camera, vendor_id: str, rng: random.Random) -> float:
    """A travel heading in degrees that the camera's ``entry_heading`` reads as the direction."""
    # Optional registry keys: a camera without them gets a fixed made-up heading per camera.
    entry: float | None = getattr(camera, "entry_heading", None)
    if entry is None:
        entry = digest("heading", vendor_id)[0] * 360.0 / 256
    base = entry if facts.direction == "entry" else entry + 180.0
    return round((base + rng.uniform(-_HEADING_JITTER, _HEADING_JITTER)) % 360.0, 1) % 360.0


def motion_for(facts: Facts, camera: Camera, *, without_rule: str) -> str:
    """The vendor motion word for the read's direction, under the camera's ``entry_motion``."""
    entry: str | None = getattr(camera, "entry_motion", None)
    if entry is None:
        return without_rule  # ingest uses the lane's direction: traffic flows with the lane
    return entry if facts.direction == "entry" else OPPOSITE_MOTION[entry]
