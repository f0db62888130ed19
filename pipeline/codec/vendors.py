"""Vendor plate-read payloads: recognise them and map them to ``plate_read/1``.

Pure: bytes or parsed documents in, canonical dicts and rejections out; no Kafka, no clock, no
files. :func:`detect_format` sniffs a few bytes per message; :func:`map_vendor` parses one
vendor payload and dispatches to the mapper of its format; each ``map_*`` function maps one
parsed payload and is table-tested. The canonical decoder
(:func:`pipeline.codec.plate_reads.decode_plate_reads`) still validates every mapped read: the
mappers check what only they can see (vendor units, shapes, ids) and the string bounds of
``PLATE_READ_INPUT``; plate formats, retention, future times and the dedup window stay there.

Example::

    fmt = detect_format(value, headers.get("content-type"))
    if fmt != "canonical":
        reads, rejects = map_vendor(value, fmt, registry, genetec_date_order="DMY")

Mapping (vendor field -> canonical field):

=================  ==============================  ============================================
canonical          OpenALPR / Rekor Scout          Plate Recognizer (Stream, Snapshot)
=================  ==============================  ============================================
event_id           group: ``best_uuid``;           ``pr-`` + 32 hex of BLAKE2b(camera_id,
                   results: ``uuid`` (``uuid:i``   timestamp, result index): the payload has
                   for the i-th plate, i >= 1)     no id, a re-sent webhook hashes the same
camera             ``camera_id`` (integer)         ``data.camera_id``
captured_at        ``epoch_start`` / results       ``data.timestamp`` (RFC 3339 with offset)
                   ``epoch_time``: epoch **ms**
plate              ``best_plate_number`` or        ``results[].plate`` (lower case, kept raw)
                   ``best_plate.plate``; results
                   ``results[].plate``
confidence         ``best_confidence`` 0-100 /100  ``score`` 0-1
plate_country      ``best_region``, else           ``region.code``
                   ``best_plate.region``, else
                   ``country``
direction          ``travel_direction`` degrees    ``direction`` degrees ("" or absent: none)
vehicle_class      ``vehicle.body_type[0].name``   ``vehicle.type``
candidates         ``candidates`` (or              ``candidates[]`` (``score`` 0-1; Stream
                   ``best_plate.candidates``),     sends none, so confidence is null)
                   0-100 /100
=================  ==============================  ============================================

=================  ==============================  ============================================
canonical          Hikvision ISAPI (XML)           Genetec AutoVu / Security Center (JSON)
=================  ==============================  ============================================
event_id           ``UUID``                        ``VehicleID``
camera             ``deviceID:channelID``, else    ``CameraName``
                   ``deviceID``
captured_at        ``dateTime`` (offset required)  ``DateUtc`` + ``TimeUtc``, the date in the
                                                   camera's configured order (see below)
plate              ``ANPR/licensePlate``           ``Plate``
confidence         ``ANPR/confidenceLevel`` /100   ``ConfidenceScore`` (a string) /100
plate_country      ``ANPR/countryAbbreviation``    ``State``
direction          ``ANPR/direction`` forward,     ``RelativeMotion`` approaching, moving
                   reverse (unknown: none)         away (others: none)
vehicle_class      ``ANPR/vehicleType``            ``VehicleType`` (optional)
candidates         none                            none
=================  ==============================  ============================================

Units. OpenALPR ``epoch_start``, ``epoch_end`` and ``epoch_time`` are epoch milliseconds (Rekor's
samples: 13 digits, equal to the millisecond suffix of the frame uuids). Every vendor time
before 2000-01-01 is rejected as ``schema_violation``, not left to expire: epoch seconds read as
milliseconds land in January 1970, and so does a camera whose clock was reset; either way the
read is recent and would otherwise vanish silently as "expired on arrival". Epoch microseconds
read as milliseconds overflow the calendar and are rejected the same way. Percentages (OpenALPR,
Hikvision, Genetec) are divided by 100; Plate Recognizer scores are already 0-1.

Countries. The vendor code is upper-cased and split on ``-``/``_``: ``no`` and ``NO`` -> NO,
``de-by``/``us-mo`` -> DE/US (country of a subdivision), ``eu-no`` -> NO (a multi-country prefix
is skipped), ``uk`` -> GB, ``el`` -> GR, alpha-3 codes of European neighbours (``NOR`` -> NO,
``SWE`` -> SE, ...) -> alpha-2. Anything that is not then an assigned ISO 3166-1 alpha-2 code
(``eu``, ``-``, an empty string, a US state such as ``mo`` alone) is a ``schema_violation``.
A bare subdivision that is also a country code (``CA``) cannot be told apart: it maps to the
country, so Genetec ``State`` must carry country codes.

Directions. Every camera sits on a lane whose direction (entry/exit relative to Norway) is in
the registry; that is the answer unless the camera has a :class:`DirectionRule` for its
vendor's direction: ``entry_heading`` (degrees) for OpenALPR and Plate Recognizer, ``entry_motion``
(a vendor motion word) for Hikvision and Genetec. A heading less than 90 degrees away from
``entry_heading`` is entry, more than 90 is exit, exactly 90 or no heading is the lane's.
A vendor direction that contradicts the lane (a wrong-way vehicle) wins when a rule exists.

Vehicle classes (ours: car, van, truck, bus, motorcycle; anything unknown or malformed is null,
never a rejection: the class is optional): pickups count as light goods vehicles (van), minivans
as cars, articulated and heavy goods vehicles as trucks. See the ``_*_CLASSES`` tables.

Genetec dates. ``DateUtc`` follows the exporting Windows locale: ``03/04/2026`` is 3 April under
DMY and 4 March under MDY. The order comes from the camera's ``date_order`` in the registry, else
from the site-wide ``genetec_date_order`` argument; with neither, the read is rejected. A date
impossible in that order (``13/25/2026`` under DMY: month 25) is rejected with "date does not
match configured order DMY"; the other order is never tried, since a read placed on the wrong
day would silently move its retention deadline.

Idempotency: the event id comes from the vendor (see the table), so re-sent payloads repeat it
and the dedup window stores them once; Hikvision ``isDataRetransmission=true`` maps to the same
id and is flagged ``retransmission: True`` so metrics can count it.

Data minimisation: images (OpenALPR ``vehicle_crop_jpeg``/``plate_crop_jpeg``, Plate
Recognizer crops, Hikvision ``pictureInfoList``, Genetec ``ContextImage``/``PlateImage``) are
never read: outputs are built field by field, so nothing unlisted can leak into them. Output
dicts hold the ``plate_read/1`` fields plus ``candidates`` (up to :data:`MAX_CANDIDATES`
``{"plate", "confidence"}`` entries, best first, for later rectification), ``source_format``
(the detected format) and ``retransmission``. Rejection details name fields and rules only,
never a value from the payload.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Final, Literal, Protocol, get_args

import defusedxml.ElementTree as safe_xml
from defusedxml import DefusedXmlException

from pipeline.codec.reasons import Reason
from pipeline.reference.sites import (
    ENTRY_MOTIONS,
    Camera,
    DateOrder,
    Direction,
    Site,
)
from pipeline.schemas import (
    EVENT_ID_PATTERN,
    PLATE_READ_INPUT,
    PLATE_READ_SCHEMA_ID,
    RFC3339_PATTERN,
)

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

logger = logging.getLogger(__name__)

Format = Literal[
    "canonical",
    "openalpr_group",
    "openalpr_results",
    "platerecognizer",
    "hikvision",
    "genetec",
    "unknown",
]
FORMATS: Final[tuple[Format, ...]] = get_args(Format)

CANONICAL_CONTENT_TYPE: Final = "application/vnd.anpr.plate-read+json"
MAX_READS_PER_PAYLOAD: Final = 50
MAX_CANDIDATES: Final = 5
# Longest vendor candidate list read at all; OpenALPR's default top-n is 10.
MAX_VENDOR_CANDIDATES: Final = 100
EARLIEST_CAPTURE: Final = datetime(2000, 1, 1, tzinfo=UTC)
VEHICLE_CLASSES: Final = ("car", "van", "truck", "bus", "motorcycle")
# Vendor name in the site registry for each detected format.
REGISTRY_VENDOR: Final[Mapping[str, str]] = {
    "openalpr_group": "openalpr",
    "openalpr_results": "openalpr",
    "platerecognizer": "platerecognizer",
    "hikvision": "hikvision",
    "genetec": "genetec",
}

CanonicalRead = dict[str, object]


@dataclass(frozen=True)
class VendorReject:
    """A payload (or one read of it) that cannot become a canonical read."""

    reason: Reason
    detail: str  # names fields and rules, never a value from the payload


MappedRead = CanonicalRead | VendorReject


class VendorRegistry(Protocol):
    """What the mappers need from :class:`pipeline.reference.sites.SiteRegistry`."""

    def vendor_camera(self, vendor: str, vendor_camera_id: str) -> Camera | None: ...

    def site(self, site_id: str) -> Site: ...


# -- format detection --------------------------------------------------------------------------

_BOM: Final = b"\xef\xbb\xbf"
CANONICAL_PREFIX: Final = b'{"schema":"plate_read/1"'
_JSON_TYPES: Final = frozenset({"application/json", "text/json"})
_XML_TYPES: Final = frozenset({"application/xml", "text/xml"})
# Keys and values, not bare words: a plate or filename holding "hook" must not match. Vendor
# payloads carry base64 images in keys that may come first, so the whole value is searched.
_JSON_SIGNATURES: Final[tuple[tuple[Format, re.Pattern[bytes]], ...]] = (
    ("openalpr_group", re.compile(rb'"data_type"[ \t\r\n]*:[ \t\r\n]*"alpr_group"')),
    ("openalpr_results", re.compile(rb'"data_type"[ \t\r\n]*:[ \t\r\n]*"alpr_results"')),
    ("platerecognizer", re.compile(rb'"hook"[ \t\r\n]*:[ \t\r\n]*\{')),
)
_GENETEC_PLATE: Final = re.compile(rb'"Plate"[ \t\r\n]*:')
# Every signature above holds one of these keys.
_SIGNATURE_KEYS: Final = (b'"data_type"', b'"hook"', b'"Plate"')
_GENETEC_KEYS: Final = re.compile(rb'"(?:VehicleID|DateUtc)"[ \t\r\n]*:')
_HIKVISION_ROOT: Final = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?EventNotificationAlert[\s/>]")
# The root element follows at most an XML declaration and a comment or two.
_XML_SNIFF_BYTES: Final = 4096


def detect_format(value: bytes, content_type: str | None = None) -> Format:
    """Which format a raw ``anpr.plate-reads`` value is in, from a few byte checks.

    Our producers' values start with ``{"schema":"plate_read/1"`` and the
    ``application/vnd.anpr.plate-read+json`` header: both are answered without looking further.
    Otherwise an XML body (after an optional BOM and whitespace) is ``hikvision`` when its root
    is ``EventNotificationAlert``; a JSON body is the first vendor whose key signature it holds;
    a body with no signature is ``canonical`` and left to the decoder, which gives empty, broken
    and BOM-prefixed values their precise reasons. ``unknown``: XML that is not a Hikvision
    alert, or a body that contradicts its content-type (XML declared as JSON or the reverse, or
    any other media type such as ``multipart/form-data``).
    """
    media = _media_type(content_type)
    if media == CANONICAL_CONTENT_TYPE or value.startswith(CANONICAL_PREFIX):
        return "canonical"
    start = len(_BOM) if value.startswith(_BOM) else 0
    first = value[start : start + _XML_SNIFF_BYTES].lstrip(b" \t\r\n")[:1]
    if first == b"<":
        if media is not None and media not in _XML_TYPES:
            return "unknown"
        return "hikvision" if _HIKVISION_ROOT.search(value, 0, _XML_SNIFF_BYTES) else "unknown"
    if media is not None and media not in _JSON_TYPES:
        return "unknown"
    # Substring tests first: a canonical value in another key order is answered in a few
    # memchr-speed scans, without running the regexes.
    if not any(key in value for key in _SIGNATURE_KEYS):
        return "canonical"
    for fmt, signature in _JSON_SIGNATURES:
        if signature.search(value):
            return fmt
    if _GENETEC_PLATE.search(value) and _GENETEC_KEYS.search(value):
        return "genetec"
    return "canonical"


def _media_type(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    return media or None


# -- parsing and dispatch ----------------------------------------------------------------------


def map_vendor(
    value: bytes,
    fmt: str,
    registry: VendorRegistry,
    *,
    genetec_date_order: DateOrder | None = None,
) -> tuple[list[CanonicalRead], list[tuple[Reason, str]]]:
    """Parse one vendor payload of format ``fmt`` and map it; never raises on its content.

    Returns the canonical reads and the rejections; a payload that cannot be read at all is
    one rejection, a payload with several results may give reads and rejections. JSON is
    strict (UTF-8, one object, no NaN/Infinity, no repeated keys); XML is parsed by defusedxml
    with DTDs, entities and external references forbidden. A UTF-8 BOM is accepted on OpenALPR
    version 2 payloads only. ``genetec_date_order`` is the site-wide default for Genetec cameras
    that have no ``date_order`` of their own. ``fmt`` must come from :func:`detect_format`;
    ``canonical`` is the decoder's job and raises ``ValueError``.
    """
    if fmt == "canonical" or fmt not in FORMATS:
        raise ValueError(f"map_vendor cannot map format {fmt!r}")
    mapped: list[MappedRead]
    try:
        if fmt == "unknown":
            raise _Reject(Reason.UNSUPPORTED_FORMAT, "payload shape not recognised")
        if fmt == "hikvision":
            mapped = map_hikvision(_parse_xml(value), registry)
        else:
            bom = fmt in ("openalpr_group", "openalpr_results") and value.startswith(_BOM)
            doc = _parse_json(value[len(_BOM) :] if bom else value)
            if bom and doc.get("version") != 2:
                raise _Reject(
                    Reason.MALFORMED_JSON, "a byte-order mark is accepted on OpenALPR version 2"
                )
            mapped = _JSON_MAPPERS[fmt](doc, registry, genetec_date_order)
    except _Reject as failure:
        mapped = [failure.reject]
    reads = [m for m in mapped if not isinstance(m, VendorReject)]
    rejects = [(m.reason, m.detail) for m in mapped if isinstance(m, VendorReject)]
    return reads, rejects


class _Reject(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reject = VendorReject(reason, detail)


def _violation(detail: str) -> _Reject:
    return _Reject(Reason.SCHEMA_VIOLATION, detail)


class _RepeatedKey(Exception):
    pass


class _NonFinite(Exception):
    pass


def _no_repeats(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _RepeatedKey
    return obj


def _no_constant(name: str) -> object:
    raise _NonFinite


# Built once: json.loads with hooks would build a new decoder per message.
_JSON_DECODER: Final = json.JSONDecoder(parse_constant=_no_constant, object_pairs_hook=_no_repeats)


def _parse_json(value: bytes) -> dict[str, object]:
    malformed = Reason.MALFORMED_JSON
    try:
        document = _JSON_DECODER.decode(value.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _Reject(malformed, f"not valid UTF-8 at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise _Reject(malformed, f"not valid JSON: {exc.msg} at char {exc.pos}") from exc
    except _RepeatedKey as exc:
        raise _Reject(malformed, "a JSON object repeats a key") from exc
    except _NonFinite as exc:
        raise _Reject(malformed, "NaN and Infinity are not JSON numbers") from exc
    except RecursionError as exc:
        raise _Reject(malformed, "JSON nested too deeply to be read") from exc
    except ValueError as exc:  # an integer literal beyond Python's digit limit
        raise _Reject(malformed, "number literal too long") from exc
    if not isinstance(document, dict):
        raise _Reject(malformed, "the payload is not a JSON object")
    return document


def _parse_xml(value: bytes) -> Element:
    malformed = Reason.MALFORMED_XML
    try:
        root: Element = safe_xml.fromstring(
            value, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as exc:
        raise _Reject(malformed, "XML with a DTD, entities or external references") from exc
    except safe_xml.ParseError as exc:
        raise _Reject(malformed, "not well-formed XML") from exc
    except (LookupError, ValueError) as exc:  # unknown or impossible declared encoding
        raise _Reject(malformed, "XML in an unreadable encoding") from exc
    return root


# -- shared field rules ------------------------------------------------------------------------

_MAX_LENGTHS: Final[Mapping[str, int]] = {
    f.name: f.max_length for f in PLATE_READ_INPUT if f.max_length is not None
}
_MAX_PLATE: Final = _MAX_LENGTHS["plate"]
_EVENT_ID: Final = re.compile(EVENT_ID_PATTERN)
_RFC3339: Final = re.compile(RFC3339_PATTERN)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST_MS: Final = int((datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH).total_seconds()) * 1000
_MAX_VENDOR_CAMERA_ID: Final = 64


def _present(doc: Mapping[str, object], *keys: str) -> object:
    """The first of ``keys`` that is present and not null, else None."""
    for key in keys:
        value = doc.get(key)
        if value is not None:
            return value
    return None


def _required(doc: Mapping[str, object], key: str) -> object:
    value = doc.get(key)
    if value is None:
        raise _violation(f"field '{key}' is missing or null")
    return value


def _object(value: object, field: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise _violation(f"field '{field}' must be an object")
    return value


def _finite(value: object, field: str) -> float:
    # bool is an int in Python, and JSON true is not a number.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _violation(f"field '{field}' must be a number")
    try:
        number = float(value)
    except OverflowError as exc:
        raise _violation(f"field '{field}' must be a finite number") from exc
    if not math.isfinite(number):
        raise _violation(f"field '{field}' must be a finite number")
    return number


def _fraction(value: object, field: str, *, percent: bool) -> float:
    """A confidence: 0-1, or 0-100 from vendors that send percentages."""
    number = _finite(value, field)
    top = 100.0 if percent else 1.0
    if not 0.0 <= number <= top:
        raise _violation(f"field '{field}' must be from 0 to {top:g}")
    return number / top


def _plate(value: object, field: str) -> str:
    """The plate text exactly as sent; normalisation happens in the decoder."""
    if not isinstance(value, str) or not value.strip():
        raise _violation(f"field '{field}' must be a non-empty string")
    if len(value) > _MAX_PLATE:
        raise _violation(f"field '{field}' is longer than {_MAX_PLATE} characters")
    return value


def _event_id(value: object, field: str) -> str:
    if not isinstance(value, str) or not _EVENT_ID.fullmatch(value):
        raise _violation(f"field '{field}' must be an event id matching {EVENT_ID_PATTERN}")
    return value


def _plausible(moment: datetime, field: str) -> datetime:
    if moment < EARLIEST_CAPTURE:
        raise _violation(f"field '{field}' is before 2000-01-01: a unit or camera clock error")
    return moment


def _epoch_ms(value: object, field: str) -> datetime:
    number = _finite(value, field)
    if not 0 <= number <= _LATEST_MS:
        raise _violation(f"field '{field}' is not a time in epoch milliseconds")
    return _plausible(_EPOCH + timedelta(milliseconds=int(number)), field)


def _rfc3339(value: object, field: str) -> datetime:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise _violation(f"field '{field}' must be an RFC 3339 time with Z or ±HH:MM")
    try:
        moment = datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # not on the calendar, or beyond it in UTC
        raise _violation(f"field '{field}' is not a valid date and time") from exc
    return _plausible(moment, field)


def _utc_text(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    spec = "milliseconds" if utc.microsecond % 1000 == 0 else "microseconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


# -- countries ---------------------------------------------------------------------------------

_ISO_ALPHA2_CODES: Final = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW XK
"""
_ISO_ALPHA2: Final = frozenset(_ISO_ALPHA2_CODES.split())
# Vendor spellings that are not ISO alpha-2: EU usage (UK, EL) and the alpha-3 codes of the
# countries whose vehicles cross into Norway; Hikvision firmware differs on which it sends.
_ALPHA3_CODES: Final = """
    NOR=NO SWE=SE FIN=FI DNK=DK ISL=IS FRO=FO DEU=DE POL=PL LTU=LT LVA=LV EST=EE RUS=RU
    BLR=BY UKR=UA NLD=NL BEL=BE LUX=LU FRA=FR GBR=GB IRL=IE ESP=ES PRT=PT ITA=IT AUT=AT
    CHE=CH LIE=LI CZE=CZ SVK=SK HUN=HU ROU=RO BGR=BG SVN=SI HRV=HR SRB=RS BIH=BA MNE=ME
    MKD=MK ALB=AL GRC=GR TUR=TR CYP=CY MLT=MT MDA=MD GEO=GE ARM=AM AZE=AZ KAZ=KZ USA=US
    CAN=CA XKX=XK
"""
_COUNTRY_ALIASES: Final[Mapping[str, str]] = {
    "UK": "GB",
    "EL": "GR",
    **dict(pair.split("=", 1) for pair in _ALPHA3_CODES.split()),
}
# Prefixes that name a group of countries, followed by the country (OpenALPR ``eu-no``).
_MULTI_COUNTRY: Final = frozenset({"EU"})
_COUNTRY_SPLIT: Final = re.compile(r"[-_]")


def _country(value: object, field: str) -> str:
    """ISO 3166-1 alpha-2 of a vendor country or region code; see the module docstring."""
    if not isinstance(value, str) or len(value) > 16:
        raise _violation(f"field '{field}' must be a country or region code")
    parts = _COUNTRY_SPLIT.split(value.strip().upper())
    head = parts[1] if parts[0] in _MULTI_COUNTRY and len(parts) > 1 else parts[0]
    code = _COUNTRY_ALIASES.get(head, head)
    if code not in _ISO_ALPHA2:
        raise _violation(f"field '{field}' is not a mappable country code")
    return code


# -- vehicle classes ---------------------------------------------------------------------------

# Keys are lower case with spaces and underscores as dashes.
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
_PLATERECOGNIZER_CLASSES: Final[Mapping[str, str]] = {
    "sedan": "car",
    "suv": "car",
    "van": "van",
    "pickup-truck": "van",
    "big-truck": "truck",
    "bus": "bus",
    "motorcycle": "motorcycle",
}
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
_GENETEC_CLASSES: Final[Mapping[str, str]] = {c: c for c in VEHICLE_CLASSES} | {
    "pickup": "van",
    "pickup-truck": "van",
    "suv": "car",
}


def _class_key(value: object) -> str | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    return value.strip().lower().replace(" ", "-").replace("_", "-")


def _openalpr_class(vehicle: object) -> str | None:
    if not isinstance(vehicle, dict):
        return None
    body_types = vehicle.get("body_type")
    if not isinstance(body_types, list) or not body_types or not isinstance(body_types[0], dict):
        return None
    key = _class_key(body_types[0].get("name"))
    if key is None:
        return None
    if key in _OPENALPR_CLASSES:
        return _OPENALPR_CLASSES[key]
    return _OPENALPR_PREFIXES.get(key.split("-", 1)[0])


def _lookup(table: Mapping[str, str], value: object) -> str | None:
    key = _class_key(value)
    return None if key is None else table.get(key)


# -- candidates --------------------------------------------------------------------------------


def _candidates(value: object, field: str, *, percent: bool) -> list[dict[str, object]]:
    """Up to MAX_CANDIDATES ``{"plate", "confidence"}``, best first; confidence may be null."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _violation(f"field '{field}' must be an array")
    if len(value) > MAX_VENDOR_CANDIDATES:
        raise _violation(f"field '{field}' has more than {MAX_VENDOR_CANDIDATES} entries")
    found: list[tuple[str, float | None]] = []
    for item in value:
        entry = _object(item, field)
        plate = _plate(entry.get("plate"), f"{field}.plate")
        raw = _present(entry, "confidence", "score")
        confidence = None if raw is None else _fraction(raw, f"{field}.confidence", percent=percent)
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
        if _OPPOSITE_MOTION.get(self.entry_motion) == motion:
            return "exit"
        return self.lane_direction


_OPPOSITE_MOTION: Final[Mapping[str, str]] = {
    "forward": "reverse",
    "reverse": "forward",
    "approaching": "receding",
    "receding": "approaching",
}
MOTIONS: Final = ENTRY_MOTIONS


@dataclass(frozen=True)
class _Target:
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


def _vendor_key(value: object, field: str) -> str:
    # OpenALPR camera ids are integers, the registry's vendor ids strings.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value:
        return value
    if value is None:
        raise _violation(f"field '{field}' is missing or null")
    raise _violation(f"field '{field}' must be a string or an integer")


def _target(registry: VendorRegistry, vendor: str, keys: Sequence[str]) -> _Target:
    camera = None
    for key in keys:
        if len(key) <= _MAX_VENDOR_CAMERA_ID:
            camera = registry.vendor_camera(vendor, key)
            if camera is not None:
                break
    unknown = _Reject(Reason.UNKNOWN_SITE, f"{vendor} camera is not in the site registry")
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
    return _Target(camera, rule, order)


def _heading(value: object, field: str) -> float | None:
    """A vendor heading in degrees, or None when the vendor has none ("" or null)."""
    if value is None or value == "":
        return None
    number = _finite(value, field)
    if not 0.0 <= number <= 360.0:
        raise _violation(f"field '{field}' must be from 0 to 360 degrees")
    return number


def _canonical(
    target: _Target,
    *,
    event_id: str,
    direction: Direction,
    captured_at: datetime,
    plate: str,
    country: str,
    confidence: float,
    vehicle_class: str | None,
    candidates: list[dict[str, object]],
    source_format: Format,
    retransmission: bool = False,
) -> CanonicalRead:
    camera = target.camera
    read: CanonicalRead = {
        "schema": PLATE_READ_SCHEMA_ID,
        "event_id": event_id,
        "site_id": camera.site_id,
        "camera_id": camera.id,
        "lane": camera.lane,
        "direction": direction,
        "captured_at": _utc_text(captured_at),
        "plate": plate,
        "plate_country": country,
        "confidence": confidence,
        "vehicle_class": vehicle_class,
        "candidates": candidates,
        "source_format": source_format,
        "retransmission": retransmission,
    }
    for name, limit in _MAX_LENGTHS.items():
        text = read[name]
        if isinstance(text, str) and len(text) > limit:
            raise _violation(f"field '{name}' is longer than {limit} characters")
    return read


def _attempt(build: Callable[[], CanonicalRead]) -> MappedRead:
    try:
        return build()
    except _Reject as failure:
        return failure.reject


def _results(doc: Mapping[str, object], key: str) -> list[Mapping[str, object]]:
    results = _required(doc, key)
    if not isinstance(results, list):
        raise _violation(f"field '{key}' must be an array")
    if not results:
        raise _violation(f"field '{key}' holds no reads")
    if len(results) > MAX_READS_PER_PAYLOAD:
        raise _Reject(
            Reason.OVERSIZED, f"field '{key}' holds more than {MAX_READS_PER_PAYLOAD} reads"
        )
    return [_object(result, key) for result in results]


# -- OpenALPR / Rekor Scout --------------------------------------------------------------------


def _openalpr_header(doc: Mapping[str, object], data_type: str) -> None:
    if doc.get("data_type") != data_type:
        raise _violation(f"field 'data_type' must be {data_type}")
    version = doc.get("version")
    if version is not None and (type(version) is not int or version not in (1, 2)):
        raise _violation("field 'version' must be 1 or 2")


def map_openalpr_group(doc: Mapping[str, object], registry: VendorRegistry) -> list[MappedRead]:
    """One ``alpr_group`` (a vehicle seen over several frames) -> one read."""
    try:
        return [_openalpr_group(doc, registry)]
    except _Reject as failure:
        return [failure.reject]


def _openalpr_group(doc: Mapping[str, object], registry: VendorRegistry) -> CanonicalRead:
    _openalpr_header(doc, "alpr_group")
    target = _target(registry, "openalpr", [_vendor_key(doc.get("camera_id"), "camera_id")])
    event_id = _event_id(_required(doc, "best_uuid"), "best_uuid")
    uuids = doc.get("uuids")
    if uuids is not None and (not isinstance(uuids, list) or event_id not in uuids):
        raise _violation("field 'uuids' must be an array holding best_uuid")
    start = _epoch_ms(_required(doc, "epoch_start"), "epoch_start")
    end = doc.get("epoch_end")
    if end is not None and _epoch_ms(end, "epoch_end") < start:
        raise _violation("field 'epoch_end' is before epoch_start")
    best = doc.get("best_plate")
    best_plate = {} if best is None else _object(best, "best_plate")
    plate = _present(doc, "best_plate_number")
    if plate is None:
        plate = _required(best_plate, "plate")
    confidence = _present(doc, "best_confidence")
    if confidence is None:
        confidence = _required(best_plate, "confidence")
    region = _present(doc, "best_region") or _present(best_plate, "region")
    candidates = _present(doc, "candidates")
    if candidates is None:
        candidates = best_plate.get("candidates")
    return _canonical(
        target,
        event_id=event_id,
        direction=target.rule.by_heading(_heading(doc.get("travel_direction"), "travel_direction")),
        captured_at=start,
        plate=_plate(plate, "best_plate_number"),
        country=_country(region or _required(doc, "country"), "best_region"),
        confidence=_fraction(confidence, "best_confidence", percent=True),
        vehicle_class=_openalpr_class(doc.get("vehicle")),
        candidates=_candidates(candidates, "candidates", percent=True),
        source_format="openalpr_group",
    )


def map_openalpr_results(doc: Mapping[str, object], registry: VendorRegistry) -> list[MappedRead]:
    """One ``alpr_results`` frame -> one read per plate in it (``epoch_time`` in ms)."""
    try:
        _openalpr_header(doc, "alpr_results")
        target = _target(registry, "openalpr", [_vendor_key(doc.get("camera_id"), "camera_id")])
        uuid = _event_id(_required(doc, "uuid"), "uuid")
        captured_at = _epoch_ms(_required(doc, "epoch_time"), "epoch_time")
        fallback_country = doc.get("country")
        results = _results(doc, "results")
    except _Reject as failure:
        return [failure.reject]

    def build(i: int, result: Mapping[str, object]) -> CanonicalRead:
        region = _present(result, "region") or fallback_country
        return _canonical(
            target,
            event_id=uuid if i == 0 else _event_id(f"{uuid}:{i}", "uuid"),
            direction=target.rule.by_heading(None),  # frames carry no travel direction
            captured_at=captured_at,
            plate=_plate(_required(result, "plate"), "results.plate"),
            country=_country(region, "results.region"),
            confidence=_fraction(
                _required(result, "confidence"), "results.confidence", percent=True
            ),
            vehicle_class=None,
            candidates=_candidates(result.get("candidates"), "results.candidates", percent=True),
            source_format="openalpr_results",
        )

    return [_attempt(partial(build, i, result)) for i, result in enumerate(results)]


# -- Plate Recognizer --------------------------------------------------------------------------


def map_platerecognizer(doc: Mapping[str, object], registry: VendorRegistry) -> list[MappedRead]:
    """A Stream or Snapshot webhook (``hook`` + ``data``) -> one read per result."""
    try:
        _object(_required(doc, "hook"), "hook")
        data = _object(_required(doc, "data"), "data")
        camera_key = _vendor_key(data.get("camera_id"), "data.camera_id")
        target = _target(registry, "platerecognizer", [camera_key])
        stamp = _required(data, "timestamp")
        captured_at = _rfc3339(stamp, "data.timestamp")
        results = _results(data, "results")
    except _Reject as failure:
        return [failure.reject]

    def build(i: int, result: Mapping[str, object]) -> CanonicalRead:
        region = result.get("region")
        vehicle = result.get("vehicle")
        return _canonical(
            target,
            event_id=platerecognizer_event_id(camera_key, str(stamp), i),
            direction=target.rule.by_heading(_heading(result.get("direction"), "direction")),
            captured_at=captured_at,
            plate=_plate(_required(result, "plate"), "results.plate"),
            country=_country(
                _required(_object(region, "results.region"), "code") if region else None,
                "results.region.code",
            ),
            confidence=_fraction(_required(result, "score"), "results.score", percent=False),
            vehicle_class=_lookup(
                _PLATERECOGNIZER_CLASSES,
                vehicle.get("type") if isinstance(vehicle, dict) else None,
            ),
            candidates=_candidates(result.get("candidates"), "results.candidates", percent=False),
            source_format="platerecognizer",
        )

    return [_attempt(partial(build, i, result)) for i, result in enumerate(results)]


def platerecognizer_event_id(camera_key: str, timestamp: str, index: int) -> str:
    # No id in the payload: derive one from what a re-sent webhook repeats, never the plate.
    digest = hashlib.blake2b(
        f"{camera_key}\x00{timestamp}\x00{index}".encode(), digest_size=16
    ).hexdigest()
    return f"pr-{digest}"


# -- Hikvision ISAPI ---------------------------------------------------------------------------


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
        raise _violation(f"element '{name}' is missing or empty")
    return text


_HIKVISION_INTEGER: Final = re.compile(r"[0-9]{1,3}")


def map_hikvision(root: Element, registry: VendorRegistry) -> list[MappedRead]:
    """An ``EventNotificationAlert`` with ``eventType`` ANPR -> one read.

    The camera is registered as ``<deviceID>:<channelID>`` (an NVR channel) or ``<deviceID>``
    (a camera); the first that the registry knows wins.
    """
    try:
        return [_hikvision(root, registry)]
    except _Reject as failure:
        return [failure.reject]


def _hikvision(root: Element, registry: VendorRegistry) -> CanonicalRead:
    if _local(root.tag) != "EventNotificationAlert":
        raise _Reject(Reason.UNSUPPORTED_FORMAT, "root element is not EventNotificationAlert")
    if _text(root, "eventType") != "ANPR":
        raise _Reject(Reason.UNSUPPORTED_FORMAT, "eventType is not ANPR")
    device = _required_text(root, "deviceID")
    channel = _text(root, "channelID")
    keys = [f"{device}:{channel}", device] if channel else [device]
    target = _target(registry, "hikvision", keys)
    event_id = _event_id(_required_text(root, "UUID"), "UUID")
    captured_at = _rfc3339(_required_text(root, "dateTime"), "dateTime")
    retransmission = _text(root, "isDataRetransmission")
    if retransmission not in (None, "true", "false"):
        raise _violation("element 'isDataRetransmission' must be true or false")
    anpr = _child(root, "ANPR")
    if anpr is None:
        raise _violation("element 'ANPR' is missing")
    level = _required_text(anpr, "confidenceLevel")
    if not _HIKVISION_INTEGER.fullmatch(level):
        raise _violation("element 'confidenceLevel' must be an integer from 0 to 100")
    motion = (_text(anpr, "direction") or "").lower()
    return _canonical(
        target,
        event_id=event_id,
        direction=target.rule.by_motion(motion if motion in MOTIONS["hikvision"] else None),
        captured_at=captured_at,
        plate=_plate(_required_text(anpr, "licensePlate"), "licensePlate"),
        country=_country(_required_text(anpr, "countryAbbreviation"), "countryAbbreviation"),
        confidence=_fraction(int(level), "confidenceLevel", percent=True),
        vehicle_class=_lookup(_HIKVISION_CLASSES, _text(anpr, "vehicleType")),
        candidates=[],
        source_format="hikvision",
        retransmission=retransmission == "true",
    )


# -- Genetec AutoVu ----------------------------------------------------------------------------

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
    except _Reject as failure:
        return [failure.reject]


def _genetec(
    doc: Mapping[str, object], registry: VendorRegistry, default_order: DateOrder | None
) -> CanonicalRead:
    target = _target(registry, "genetec", [_vendor_key(doc.get("CameraName"), "CameraName")])
    event_id = _event_id(_required(doc, "VehicleID"), "VehicleID")
    order = target.date_order or default_order
    if order is None:
        raise _violation("no Genetec date order configured for this camera")
    captured_at = _plausible(
        _genetec_time(_required(doc, "DateUtc"), _required(doc, "TimeUtc"), order), "DateUtc"
    )
    motion = _lookup(_GENETEC_MOTIONS, doc.get("RelativeMotion"))
    return _canonical(
        target,
        event_id=event_id,
        direction=target.rule.by_motion(motion),
        captured_at=captured_at,
        plate=_plate(_required(doc, "Plate"), "Plate"),
        country=_country(_required(doc, "State"), "State"),
        confidence=_genetec_confidence(_required(doc, "ConfidenceScore")),
        vehicle_class=_lookup(_GENETEC_CLASSES, doc.get("VehicleType")),
        candidates=[],
        source_format="genetec",
    )


def _genetec_confidence(value: object) -> float:
    # Sent as a string ("87"); a JSON number means the same and is taken too.
    if isinstance(value, str):
        if not _GENETEC_PERCENT.fullmatch(value.strip()):
            raise _violation("field 'ConfidenceScore' must be a number from 0 to 100")
        value = float(value.strip().replace(",", "."))
    return _fraction(value, "ConfidenceScore", percent=True)


def _genetec_time(date: object, time: object, order: DateOrder) -> datetime:
    """``DateUtc`` + ``TimeUtc`` as a UTC datetime, the date read in ``order`` only.

    Example::

        _genetec_time("03/04/2026", "22:13:11", "DMY")  # 2026-04-03 22:13:11 UTC
    """
    date_match = _GENETEC_DATE.fullmatch(date) if isinstance(date, str) else None
    if date_match is None:
        raise _violation("field 'DateUtc' must be a date of three numbers")
    first, _, second, third = date_match.groups()
    fields = {
        "DMY": (third, second, first),
        "MDY": (third, first, second),
        "YMD": (first, second, third),
    }[order]
    year, month, day = fields
    mismatch = _violation(f"date does not match configured order {order}")
    if len(year) != 4 or len(month) > 2 or len(day) > 2:
        raise mismatch
    time_match = _GENETEC_TIME.fullmatch(time.strip()) if isinstance(time, str) else None
    if time_match is None:
        raise _violation("field 'TimeUtc' must be a time HH:MM:SS")
    hour_text, minute, second_text, fraction, half = time_match.groups()
    hour = int(hour_text)
    if half is not None:
        if not 1 <= hour <= 12:
            raise _violation("field 'TimeUtc' has an hour outside 1-12 with AM/PM")
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
        raise _violation("field 'TimeUtc' is not a valid time of day") from exc


# -- dispatch table ----------------------------------------------------------------------------

_JsonMapper = Callable[[dict[str, object], VendorRegistry, DateOrder | None], list[MappedRead]]
_JSON_MAPPERS: Final[Mapping[str, _JsonMapper]] = {
    "openalpr_group": lambda doc, registry, _: map_openalpr_group(doc, registry),
    "openalpr_results": lambda doc, registry, _: map_openalpr_results(doc, registry),
    "platerecognizer": lambda doc, registry, _: map_platerecognizer(doc, registry),
    "genetec": lambda doc, registry, order: map_genetec(doc, registry, date_order=order),
}
