"""What every vendor module shares: limits, field rules, countries, cameras and directions.

Helpers raise :class:`~pipeline.codec.reasons.Rejection`; each vendor's ``map_payload`` lets it
propagate and :func:`pipeline.codec.vendors.map_vendor` turns it into a rejection of the payload.
Details name fields and rules only, never a value from the payload.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import xml.etree.ElementTree as fast_xml
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final, Literal, Protocol

import defusedxml.ElementTree as safe_xml
from defusedxml import DefusedXmlException

from pipeline.codec.reasons import Reason, Rejection, Shape, strict_json
from pipeline.codec.vendors._payloads import OPPOSITE_MOTION, Facts
from pipeline.reference.countries import COUNTRY_UNKNOWN, vendor_country
from pipeline.reference.sites import Camera, DateOrder, Direction, Site, VendorRules
from pipeline.schemas import (
    EVENT_ID_PATTERN,
    PLATE_READ_INPUT,
    PLATE_READ_SCHEMA_ID,
    RFC3339_PATTERN,
    UNKNOWN_COUNTRY,
)

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

    from pipeline.codec.vendors._columnar import ColumnReads

MAX_READS_PER_PAYLOAD: Final = 50
MAX_CANDIDATES: Final = 5
# Longest vendor candidate list read at all; OpenALPR's default top-n is 10.
MAX_VENDOR_CANDIDATES: Final = 100
EARLIEST_CAPTURE: Final = datetime(2000, 1, 1, tzinfo=UTC)
VEHICLE_CLASSES: Final = ("car", "van", "truck", "bus", "motorcycle")
BOM: Final = b"\xef\xbb\xbf"

# What a mapper noticed and accepted (counted by format in ``anpr_vendor_quirks_total``; the
# values are a closed set, never taken from a payload).
EVENT_ID_DIGESTED: Final = "event_id_digested"

CanonicalRead = dict[str, object]
MappedRead = CanonicalRead | Rejection


class VendorRegistry(Protocol):
    """What the mappers need from :class:`pipeline.reference.sites.SiteRegistry`."""

    def vendor_camera(self, vendor: str, vendor_camera_id: str) -> Camera | None: ...

    def site(self, site_id: str) -> Site: ...


PayloadMapper = Callable[[bytes, str, VendorRegistry, DateOrder | None], list[MappedRead]]
# Many payloads of one format at once (pipeline.codec.vendors._columnar.ColumnReads).
BatchMapper = Callable[[Sequence[bytes], VendorRegistry], "ColumnReads"]
# The simulator's side: (facts, camera, vendor camera id, rng, retransmission) -> payload and
# content type; and the event id the mapper will give that payload's read.
PayloadEncoder = Callable[[Facts, Camera, str, random.Random, bool], tuple[bytes, str]]
EventIdPredictor = Callable[[Facts, str], str]


@dataclass(frozen=True)
class VendorCodec:
    """One vendor, as :data:`pipeline.codec.vendors.VENDOR_CODECS` registers it.

    ``rules``: its registry name and the camera keys it reads (checked by the site registry).
    ``formats``: the formats :func:`detect` returns. ``syntax``: JSON or XML body. ``keys``:
    substrings every JSON payload of the vendor holds (a cheap test before ``detect``).
    ``detect``: which of ``formats`` a body is, or None. ``map_payload``: parse and map one
    payload of a detected format; raises :class:`Rejection` when nothing can be read.
    ``encode`` and ``predicted_event_id``: what a camera of the vendor sends for a read, and
    the event id ingest will give it (for :mod:`pipeline.simulate.vendor_payloads`).
    """

    rules: VendorRules
    formats: tuple[str, ...]
    syntax: Literal["json", "xml"]
    keys: tuple[bytes, ...]
    detect: Callable[[bytes], str | None]
    map_payload: PayloadMapper
    encode: PayloadEncoder
    predicted_event_id: EventIdPredictor
    # Optional: the same reads for many payloads at once, the slow ones handed back.
    map_batch: BatchMapper | None = None

    @property
    def name(self) -> str:
        return self.rules.name


def violation(detail: str) -> Rejection:
    return Rejection(Reason.SCHEMA_VIOLATION, detail)


def parse_json_object(value: bytes, *, read: Shape | None = None) -> dict[str, object]:
    """One strict JSON object (see :func:`pipeline.codec.reasons.strict_json`, also for
    ``read``)."""
    document = strict_json(value, read=read)
    if not isinstance(document, dict):
        raise Rejection(Reason.MALFORMED_JSON, "the payload is not a JSON object")
    return document


# The fast XML path: Python's C-accelerated parser, for payloads that cannot hide a DTD from a
# byte scan. Without a DTD no entity can be declared, so nothing can expand (billion laughs)
# and nothing external can be fetched; an undeclared entity is a parse error. A payload in
# UTF-16/32, with NUL bytes or in another declared encoding goes to defusedxml instead.
_DTD_MARKERS: Final = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_DECLARED_ENCODING: Final = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)""")
_BYTE_SCAN_ENCODINGS: Final = frozenset(
    {b"utf-8", b"utf8", b"us-ascii", b"ascii", b"iso-8859-1", b"latin-1", b"latin1"}
)
_WIDE_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")
_DTD_REFUSED: Final = "XML with a DTD, entities or external references"


def _byte_scannable(value: bytes) -> bool:
    if b"\x00" in value or value.startswith(_WIDE_BOMS):
        return False
    declared = _DECLARED_ENCODING.match(value[len(BOM) :] if value.startswith(BOM) else value)
    return declared is None or declared.group(1).lower() in _BYTE_SCAN_ENCODINGS


def parse_xml(value: bytes) -> Element:
    """One XML document with no DTD, no entities, nothing external; else ``malformed_xml``."""
    malformed = Reason.MALFORMED_XML
    if _byte_scannable(value):
        if _DTD_MARKERS.search(value):
            raise Rejection(malformed, _DTD_REFUSED)
        try:
            # Safe here: no DTD (refused just above), so no entity can be declared or expanded
            # and nothing external named; ElementTree resolves no XInclude.
            return fast_xml.fromstring(value)  # noqa: S314
        except fast_xml.ParseError as exc:
            raise Rejection(malformed, "not well-formed XML") from exc
        except (LookupError, ValueError) as exc:
            raise Rejection(malformed, "XML in an unreadable encoding") from exc
    try:
        root: Element = safe_xml.fromstring(
            value, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as exc:
        raise Rejection(malformed, _DTD_REFUSED) from exc
    except safe_xml.ParseError as exc:
        raise Rejection(malformed, "not well-formed XML") from exc
    except (LookupError, ValueError) as exc:  # unknown or impossible declared encoding
        raise Rejection(malformed, "XML in an unreadable encoding") from exc
    return root


# -- shared field rules ------------------------------------------------------------------------

_MAX_LENGTHS: Final[Mapping[str, int]] = {
    f.name: f.max_length for f in PLATE_READ_INPUT if f.max_length is not None
}
MAX_PLATE: Final = _MAX_LENGTHS["plate"]
_EVENT_ID: Final = re.compile(EVENT_ID_PATTERN)
_RFC3339: Final = re.compile(RFC3339_PATTERN)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_MS: Final = int((datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH).total_seconds()) * 1000
_MAX_VENDOR_CAMERA_ID: Final = 64


def present(doc: Mapping[str, object], *keys: str) -> object:
    """The first of ``keys`` that is present and not null, else None."""
    for key in keys:
        value = doc.get(key)
        if value is not None:
            return value
    return None


def required(doc: Mapping[str, object], key: str) -> object:
    value = doc.get(key)
    if value is None:
        raise violation(f"field '{key}' is missing or null")
    return value


def as_object(value: object, field: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise violation(f"field '{field}' must be an object")
    return value


def finite(value: object, field: str) -> float:
    # bool is an int in Python, and JSON true is not a number.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise violation(f"field '{field}' must be a number")
    try:
        number = float(value)
    except OverflowError as exc:
        raise violation(f"field '{field}' must be a finite number") from exc
    if not math.isfinite(number):
        raise violation(f"field '{field}' must be a finite number")
    return number


def fraction(value: object, field: str, *, percent: bool) -> float:
    """A confidence: 0-1, or 0-100 from vendors that send percentages."""
    number = finite(value, field)
    top = 100.0 if percent else 1.0
    if not 0.0 <= number <= top:
        raise violation(f"field '{field}' must be from 0 to {top:g}")
    return number / top


def plate_text(value: object, field: str) -> str:
    """The plate text exactly as sent; normalisation happens in the decoder."""
    if not isinstance(value, str) or not value.strip():
        raise violation(f"field '{field}' must be a non-empty string")
    if len(value) > MAX_PLATE:
        raise violation(f"field '{field}' is longer than {MAX_PLATE} characters")
    return value


def checked_event_id(value: object, field: str) -> str:
    if not isinstance(value, str) or not _EVENT_ID.fullmatch(value):
        raise violation(f"field '{field}' must be an event id matching {EVENT_ID_PATTERN}")
    return value


# Vendor ids are printable ASCII; Rekor frame ids are 65 characters and more (40-character agent
# id, camera id, 13-digit milliseconds), Hikvision UUIDs 64, some vendors wrap GUIDs in braces.
MAX_VENDOR_EVENT_ID: Final = 256
_VENDOR_EVENT_ID: Final = re.compile(rf"[\x21-\x7e]{{1,{MAX_VENDOR_EVENT_ID}}}")


def vendor_event_id(value: object, field: str, quirks: list[str]) -> str:
    """The vendor's id as our event id: as sent when it fits ``event_id``, else a digest.

    ``d-`` + 32 hex of BLAKE2b over the vendor's id: stable, so a retransmission (which repeats
    the vendor's id) repeats the event id and is stored once. Noted in ``quirks``.
    """
    if isinstance(value, str) and _EVENT_ID.fullmatch(value):
        return value
    if not isinstance(value, str) or not _VENDOR_EVENT_ID.fullmatch(value):
        raise violation(
            f"field '{field}' must be an id of 1 to {MAX_VENDOR_EVENT_ID} printable characters"
        )
    quirks.append(EVENT_ID_DIGESTED)
    return "d-" + hashlib.blake2b(value.encode(), digest_size=16).hexdigest()


def plausible(moment: datetime, field: str) -> datetime:
    if moment < EARLIEST_CAPTURE:
        raise violation(f"field '{field}' is before 2000-01-01: a unit or camera clock error")
    return moment


def epoch_ms(value: object, field: str) -> datetime:
    number = finite(value, field)
    if not 0 <= number <= LATEST_MS:
        raise violation(f"field '{field}' is not a time in epoch milliseconds")
    return plausible(_EPOCH + timedelta(milliseconds=int(number)), field)


def rfc3339(value: object, field: str) -> datetime:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise violation(f"field '{field}' must be an RFC 3339 time with Z or ±HH:MM")
    try:
        moment = datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # not on the calendar, or beyond it in UTC
        raise violation(f"field '{field}' is not a valid date and time") from exc
    return plausible(moment, field)


_VENDOR_TIME: Final = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[T ]([0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(Z|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])?"
)


def vendor_time(value: object, field: str, *, naive_is_utc: bool) -> datetime:
    """An ISO 8601 time as vendors write it: ``T`` or a space, up to 9 fraction digits
    (truncated to microseconds), an offset with or without a colon. A time without an offset is
    UTC only where the vendor documents it so (``naive_is_utc``); else it is refused."""
    match = _VENDOR_TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise violation(f"field '{field}' must be an ISO 8601 date and time")
    day, clock, fraction_digits, offset = match.groups()
    if offset is None and not naive_is_utc:
        raise violation(f"field '{field}' must carry Z or an offset")
    micro = (fraction_digits or "")[:6]
    zone = "+00:00" if offset in (None, "Z") else offset
    if len(zone) == 5:  # +HHMM
        zone = f"{zone[:3]}:{zone[3:]}"
    text = f"{day}T{clock}{'.' + micro if micro else ''}{zone}"
    try:
        moment = datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise violation(f"field '{field}' is not a valid date and time") from exc
    return plausible(moment, field)


def utc_text(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    spec = "milliseconds" if utc.microsecond % 1000 == 0 else "microseconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


# -- countries ---------------------------------------------------------------------------------


def country_code(
    value: object,
    field: str,
    quirks: list[str],
    *,
    context: object = None,
    bare_may_be_subdivision: bool = False,
) -> str:
    """ISO alpha-2 of a vendor country or region code, or ZZ (unknown, noted in ``quirks``).

    See :func:`pipeline.reference.countries.vendor_country`: nothing is ever mapped to a
    country the code does not name. A value that is not a string at all is a broken payload.
    """
    if value is not None and not isinstance(value, str):
        raise violation(f"field '{field}' must be a country or region code")
    code = vendor_country(
        value,
        context=context if isinstance(context, str) else None,
        bare_may_be_subdivision=bare_may_be_subdivision,
    )
    if code == UNKNOWN_COUNTRY:
        quirks.append(COUNTRY_UNKNOWN)
    return code


# -- vehicle classes --------------------------------------------------------------------------


def class_key(value: object) -> str | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    return value.strip().lower().replace(" ", "-").replace("_", "-")


def lookup_class(table: Mapping[str, str], value: object) -> str | None:
    key = class_key(value)
    return None if key is None else table.get(key)


# -- candidates --------------------------------------------------------------------------------


def candidates_of(value: object, field: str, *, percent: bool) -> list[dict[str, object]]:
    """Up to MAX_CANDIDATES ``{"plate", "confidence"}``, best first; confidence may be null."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise violation(f"field '{field}' must be an array")
    if len(value) > MAX_VENDOR_CANDIDATES:
        raise violation(f"field '{field}' has more than {MAX_VENDOR_CANDIDATES} entries")
    found: list[tuple[str, float | None]] = []
    for item in value:
        entry = as_object(item, field)
        plate = plate_text(entry.get("plate"), f"{field}.plate")
        raw = present(entry, "confidence", "score")
        confidence = None if raw is None else fraction(raw, f"{field}.confidence", percent=percent)
        found.append((plate, confidence))
    # Vendors send them best first already; the stable sort keeps their order on ties and
    # puts candidates without a confidence last.
    found.sort(key=lambda pc: (pc[1] is None, -(pc[1] or 0.0)))
    return [{"plate": p, "confidence": c} for p, c in found[:MAX_CANDIDATES]]


# -- cameras and directions --------------------------------------------------------------------


@dataclass(frozen=True)
class DirectionRule:
    """How one camera's vendor direction becomes entry/exit relative to Norway.

    ``lane_direction`` (from the registry lane) is the answer whenever the vendor gives no
    usable direction or the camera has no rule for it. ``entry_heading``: the vendor heading
    in degrees (0-360) of a vehicle entering Norway past this camera; headings less than 90
    degrees from it are entry, more than 90 exit. ``entry_motion``: the vendor's motion word
    that means entry (Hikvision ``forward``/``reverse``, Genetec ``approaching``/``receding``);
    the other word of the pair means exit.

    Example::

        DirectionRule("entry", entry_heading=200.0).by_heading(20.0)  # "exit"
    """

    lane_direction: Direction
    entry_heading: float | None = None
    entry_motion: str | None = None

    def by_heading(self, heading: float | None) -> Direction:
        if heading is None or self.entry_heading is None:
            return self.lane_direction
        apart = abs(heading - self.entry_heading) % 360.0
        apart = min(apart, 360.0 - apart)
        if apart < 90.0:
            return "entry"
        if apart > 90.0:
            return "exit"
        return self.lane_direction

    def by_motion(self, motion: str | None) -> Direction:
        if motion is None or self.entry_motion is None:
            return self.lane_direction
        if motion == self.entry_motion:
            return "entry"
        if OPPOSITE_MOTION.get(self.entry_motion) == motion:
            return "exit"
        return self.lane_direction


@dataclass(frozen=True)
class Target:
    """A registered camera with the rules the mappers need."""

    camera: Camera
    rule: DirectionRule
    date_order: DateOrder | None


def camera_rules(
    camera: Camera, lane_direction: Direction
) -> tuple[DirectionRule, DateOrder | None]:
    """The direction rule and Genetec date order of a camera, from its registry keys."""
    rule = DirectionRule(lane_direction, camera.entry_heading, camera.entry_motion)
    return rule, camera.date_order


def vendor_key(value: object, field: str) -> str:
    # OpenALPR camera ids are integers, the registry's vendor ids strings.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value:
        return value
    if value is None:
        raise violation(f"field '{field}' is missing or null")
    raise violation(f"field '{field}' must be a string or an integer")


def find_target(registry: VendorRegistry, vendor: str, keys: Sequence[str]) -> Target:
    camera = None
    for key in keys:
        if len(key) <= _MAX_VENDOR_CAMERA_ID:
            camera = registry.vendor_camera(vendor, key)
            if camera is not None:
                break
    unknown = Rejection(Reason.UNKNOWN_SITE, f"{vendor} camera is not in the site registry")
    if camera is None:
        raise unknown
    try:
        site = registry.site(camera.site_id)
    except KeyError:
        raise unknown from None
    lane = next((lane for lane in site.lanes if lane.number == camera.lane), None)
    if lane is None:
        raise unknown
    rule, order = camera_rules(camera, lane.direction)
    return Target(camera, rule, order)


def heading_of(value: object, field: str) -> float | None:
    """A vendor heading in degrees, or None when the vendor has none ("" or null)."""
    if value is None or value == "":
        return None
    number = finite(value, field)
    if not 0.0 <= number <= 360.0:
        raise violation(f"field '{field}' must be from 0 to 360 degrees")
    return number


def canonical_read(
    target: Target,
    *,
    event_id: str,
    direction: Direction,
    captured_at: datetime,
    plate: str,
    country: str,
    confidence: float,
    vehicle_class: str | None,
    candidates: list[dict[str, object]],
    source_format: str,
    retransmission: bool = False,
    quirks: Sequence[str] = (),
) -> CanonicalRead:
    camera = target.camera
    read: CanonicalRead = {
        "schema": PLATE_READ_SCHEMA_ID,
        "event_id": event_id,
        "site_id": camera.site_id,
        "camera_id": camera.id,
        "lane": camera.lane,
        "direction": direction,
        "captured_at": utc_text(captured_at),
        "plate": plate,
        "plate_country": country,
        "confidence": confidence,
        "vehicle_class": vehicle_class,
        "candidates": candidates,
        "source_format": source_format,
        "retransmission": retransmission,
        "quirks": list(quirks),
    }
    for name, limit in _MAX_LENGTHS.items():
        text = read[name]
        if isinstance(text, str) and len(text) > limit:
            raise violation(f"field '{name}' is longer than {limit} characters")
    return read


def attempt(build: Callable[[], CanonicalRead]) -> MappedRead:
    try:
        return build()
    except Rejection as failure:
        return failure


def results_of(doc: Mapping[str, object], key: str) -> list[Mapping[str, object]]:
    results = required(doc, key)
    if not isinstance(results, list):
        raise violation(f"field '{key}' must be an array")
    if not results:
        raise violation(f"field '{key}' holds no reads")
    if len(results) > MAX_READS_PER_PAYLOAD:
        raise Rejection(
            Reason.OVERSIZED, f"field '{key}' holds more than {MAX_READS_PER_PAYLOAD} reads"
        )
    return [as_object(result, key) for result in results]
