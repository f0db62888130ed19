"""Vendor plate-read payloads: recognise them and map them to ``plate_read/1``.

Pure: bytes or parsed documents in, canonical dicts and rejections out; no Kafka, no clock, no
files. One module per vendor, registered in :data:`VENDOR_CODECS`: adding a vendor is its
module plus one entry there (formats, detection, the site registry's camera keys and the
simulator's payloads all follow from it). :func:`detect_format` sniffs a few bytes per
message; :func:`map_vendor` parses one vendor payload and dispatches to its vendor's module;
each ``map_*`` function maps one parsed payload and is table-tested. The canonical decoder
(:func:`pipeline.codec.plate_reads.decode_plate_reads`) still validates every mapped read: the
mappers check what only they can see (vendor units, shapes, ids) and the string bounds of
``PLATE_READ_INPUT``; plate formats, retention, future times and the dedup window stay there.

Example::

    fmt = detect_format(value, headers.get("content-type"))
    if fmt != "canonical":
        reads, rejects = map_vendor(value, fmt, registry, genetec_date_order="DMY")

canonical          OpenALPR / Rekor Scout          Plate Recognizer (Stream, Snapshot)
=================  ==============================  ============================================
event_id           group: ``best_uuid``;           ``pr-`` + 32 hex of BLAKE2b(camera_id,
                   results: ``uuid`` (``uuid:i``   timestamp, result index): the payload has
                   for the i-th plate, i >= 1)     no id, a re-sent webhook hashes the same
camera             ``camera_id`` (integer)         ``data.camera_id``
captured_at        ``epoch_start`` / results       ``data.timestamp`` (ISO 8601, ``T`` or a
                   ``epoch_time``: epoch **ms**    space; no offset: UTC, as documented)
                   (else the frame id's ms)
plate              ``best_plate_number`` or        ``results[].plate`` (lower case, kept raw)
                   ``best_plate.plate``; results
                   ``results[].plate``
confidence         ``best_confidence`` 0-100 /100  ``score`` 0-1
plate_country      ``best_region``, else           ``region.code`` (``""`` or no region:
                   ``best_plate.region``, else     unknown)
                   ``country`` (a bare region is
                   a subdivision of ``country``)
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
camera             ``deviceID[:channelID]``, else  ``CameraName`` (SharpV:
                   MAC, else IP, with channel      ``SourceUrl[:LprCameraName]``)
captured_at        ``dateTime`` (offset required)  ``DateUtc`` + ``TimeUtc``, the date in the
                                                   camera's configured order (see below);
                                                   SharpV ``Timestamp`` (no offset: UTC)
plate              ``ANPR/licensePlate``           ``Plate``
confidence         ``ANPR/confidenceLevel`` /100   ``ConfidenceScore`` (a string) /100
plate_country      ``countryAbbreviation`` in      ``State`` / ``State Name`` (a code
                   ``ANPR`` or the root (``NON``,  that may be a US state or Canadian
                   absent: unknown)                province: unknown)
direction          ``ANPR/direction`` forward,     ``RelativeMotion`` or ``Attributes``
                   reverse (unknown: none)         ``Relative Motion``: approaching, moving
                                                   away (others: none)
vehicle_class      ``ANPR/vehicleType``            ``VehicleType`` or ``Attributes``
                                                   ``Vehicle Type`` (optional)
candidates         none                            none
=================  ==============================  ============================================
=======
Mapping: each vendor module's docstring holds its table (vendor field -> canonical field):
:mod:`~pipeline.codec.vendors.openalpr` (OpenALPR / Rekor Scout),
:mod:`~pipeline.codec.vendors.platerecognizer` (Stream, Snapshot),
:mod:`~pipeline.codec.vendors.hikvision` (ISAPI, XML) and :mod:`~pipeline.codec.vendors.genetec`
(AutoVu / Security Center, JSON). The rules they share follow.

Units. OpenALPR ``epoch_start``, ``epoch_end`` and ``epoch_time`` are epoch milliseconds (Rekor's
samples: 13 digits, equal to the millisecond suffix of the frame uuids). Every vendor time
before 2000-01-01 is rejected as ``schema_violation``, not left to expire: epoch seconds read as
milliseconds land in January 1970, and so does a camera whose clock was reset; either way the
read is recent and would otherwise vanish silently as "expired on arrival". Epoch microseconds
read as milliseconds overflow the calendar and are rejected the same way. Percentages (OpenALPR,
Hikvision, Genetec) are divided by 100; Plate Recognizer scores are already 0-1.

Countries (:func:`pipeline.reference.countries.vendor_country`). A code is stored only as the
country it names: ``us-mo`` and a bare ``mo`` beside OpenALPR's ``"country": "us"`` are US,
never Macao; Genetec's bare ``CA`` may be California and is unknown, never Canada. Absent,
empty, ``NON``, unassigned (``XX``) or unplaceable codes are stored as unknown (``ZZ``),
validated by the generic plate rule and counted (``anpr_vendor_quirks_total``).

Accepted and counted (``quirks`` of a read, ``anpr_vendor_quirks_total`` by format): OpenALPR
versions after 2 (``version_N``: the fields we read are unchanged), a ``best_uuid`` outside
``uuids`` (Rekor's own documented example), ``alpr_results`` without ``epoch_time`` (the
frame id's milliseconds), vendor event ids longer than ours (``event_id_digested``: ``d-`` +
32 hex of BLAKE2b of the vendor's id, so retransmissions still repeat it).

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

Idempotency: the event id comes from the vendor (see the table; a digest when longer than
ours), so re-sent payloads repeat it
and the dedup window stores them once; Hikvision ``isDataRetransmission=true`` maps to the same
id and is flagged ``retransmission: True`` so metrics can count it.

Data minimisation: images (OpenALPR ``vehicle_crop_jpeg``/``plate_crop_jpeg``, Plate
Recognizer crops, Hikvision ``pictureInfoList``, Genetec ``ContextImage``/``PlateImage``) are
never read: outputs are built field by field, so nothing unlisted can leak into them. Output
dicts hold the ``plate_read/1`` fields plus ``candidates`` (up to :data:`MAX_CANDIDATES`
``{"plate", "confidence"}`` entries, best first, for later rectification), ``source_format``
(the detected format), ``retransmission`` and ``quirks``. Rejection details name fields and
rules only, never a value from the payload.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Final

from pipeline.codec.reasons import Reason, Rejection
from pipeline.codec.vendors import genetec, hikvision, openalpr, platerecognizer
from pipeline.codec.vendors._shared import (
    BOM,
    MAX_CANDIDATES,
    MAX_READS_PER_PAYLOAD,
    MAX_VENDOR_CANDIDATES,
    VEHICLE_CLASSES,
    BatchMapper,
    CanonicalRead,
    DirectionRule,
    MappedRead,
    VendorCodec,
    VendorRegistry,
    camera_rules,
)
from pipeline.codec.vendors.genetec import map_genetec
from pipeline.codec.vendors.hikvision import map_hikvision
from pipeline.codec.vendors.openalpr import map_openalpr_group, map_openalpr_results
from pipeline.codec.vendors.platerecognizer import map_platerecognizer, platerecognizer_event_id
from pipeline.reference.sites import CANONICAL_VENDOR, DateOrder, VendorRules

__all__ = [
    "CANONICAL_CONTENT_TYPE",
    "CANONICAL_PREFIX",
    "FORMATS",
    "MAX_CANDIDATES",
    "MAX_READS_PER_PAYLOAD",
    "MAX_VENDOR_CANDIDATES",
    "REGISTRY_VENDOR",
    "VEHICLE_CLASSES",
    "VENDORS",
    "VENDOR_CODECS",
    "VENDOR_RULES",
    "CanonicalRead",
    "DirectionRule",
    "Format",
    "MappedRead",
    "VendorCodec",
    "VendorRegistry",
    "batch_mapper",
    "camera_rules",
    "detect_format",
    "detect_formats",
    "map_genetec",
    "map_hikvision",
    "map_openalpr_group",
    "map_openalpr_results",
    "map_platerecognizer",
    "map_vendor",
    "platerecognizer_event_id",
]

# The one list of vendors: everything below is derived from it.
VENDOR_CODECS: Final[tuple[VendorCodec, ...]] = (
    openalpr.VENDOR,
    platerecognizer.VENDOR,
    hikvision.VENDOR,
    genetec.VENDOR,
)

# A detected format: "canonical", one of a vendor's formats, or "unknown".
Format = str
FORMATS: Final[tuple[Format, ...]] = (
    "canonical",
    *(fmt for vendor in VENDOR_CODECS for fmt in vendor.formats),
    "unknown",
)
# Vendor name in the site registry for each detected format.
REGISTRY_VENDOR: Final[Mapping[str, str]] = {
    fmt: vendor.name for vendor in VENDOR_CODECS for fmt in vendor.formats
}
# What the site registry checks on each vendor's cameras: pass to ``load_registry``.
VENDOR_RULES: Final[tuple[VendorRules, ...]] = tuple(vendor.rules for vendor in VENDOR_CODECS)
# Every value of a camera's ``vendor`` key, ours first.
VENDORS: Final[tuple[str, ...]] = (CANONICAL_VENDOR, *(vendor.name for vendor in VENDOR_CODECS))
_BY_FORMAT: Final[Mapping[str, VendorCodec]] = {
    fmt: vendor for vendor in VENDOR_CODECS for fmt in vendor.formats
}
_JSON_VENDORS: Final = tuple(v for v in VENDOR_CODECS if v.syntax == "json")
_XML_VENDORS: Final = tuple(v for v in VENDOR_CODECS if v.syntax == "xml")
# Every JSON vendor's payloads hold one of its keys (keys, not bare words: a plate or filename
# holding "hook" must not match). Vendor payloads carry base64 images in keys that may come
# first, so the whole value is searched.
_JSON_DETECTS: Final = tuple((v.keys, v.detect) for v in _JSON_VENDORS)
_XML_DETECTS: Final = tuple(v.detect for v in _XML_VENDORS)

# -- format detection --------------------------------------------------------------------------

CANONICAL_CONTENT_TYPE: Final = "application/vnd.anpr.plate-read+json"
CANONICAL_PREFIX: Final = b'{"schema":"plate_read/1"'
_JSON_TYPES: Final = frozenset({"application/json", "text/json"})
_XML_TYPES: Final = frozenset({"application/xml", "text/xml"})
# The XML root element follows at most an XML declaration and a comment or two.
_XML_SNIFF_BYTES: Final = 4096


def detect_format(value: bytes, content_type: str | None = None) -> Format:
    """Which format a raw ``anpr.plate-reads`` value is in, from a few byte checks.

    Our producers' values start with ``{"schema":"plate_read/1"`` and the
    ``application/vnd.anpr.plate-read+json`` header: both are answered without looking further.
    Otherwise an XML body (after an optional BOM and whitespace) is ``hikvision`` when its root
    is ``EventNotificationAlert``; a JSON body is the first vendor (in :data:`VENDOR_CODECS`
    order) whose key signature it holds;
    a body with no signature is ``canonical`` and left to the decoder, which gives empty, broken
    and BOM-prefixed values their precise reasons. ``unknown``: XML that is not a Hikvision
    alert, or a body that contradicts its content-type (XML declared as JSON or the reverse, or
    any other media type such as ``multipart/form-data``).
    """
    media = _media_type(content_type)
    if media == CANONICAL_CONTENT_TYPE or value.startswith(CANONICAL_PREFIX):
        return "canonical"
    start = len(BOM) if value.startswith(BOM) else 0
    first = value[start : start + 1]
    if first in b" \t\r\n":  # rare: whitespace first (or nothing); the copy costs
        first = value[start : start + _XML_SNIFF_BYTES].lstrip(b" \t\r\n")[:1]
    if first == b"<":
        if media is not None and media not in _XML_TYPES:
            return "unknown"
        return _xml_format(value)
    if media is not None and media not in _JSON_TYPES:
        return "unknown"
    return _json_format(value)


def detect_formats(values: Sequence[bytes], content_types: Sequence[str | None]) -> list[Format]:
    """:func:`detect_format` of every value, the same answers for a batch at once.

    JSON bodies that start with ``{`` under a JSON content type (or none), the common case,
    take the shortest way: each vendor's keys in turn, the first vendor holding one asked to
    ``detect`` (a key is usually found within the first bytes, where a vendor starts its
    payloads); XML bodies that start with ``<`` go straight to the XML vendors' ``detect``.
    The rest are asked one by one.
    """
    formats: list[Format] = []
    append = formats.append
    for value, content_type in zip(values, content_types, strict=True):
        first = value[:1]
        if first == b"{" and (content_type is None or _media_type(content_type) in _JSON_TYPES):
            append(_json_format(value))
        elif first == b"<" and (content_type is None or _media_type(content_type) in _XML_TYPES):
            append(_xml_format(value))
        else:
            append(detect_format(value, content_type))
    return formats


def _xml_format(value: bytes) -> Format:
    """The tail of :func:`detect_format` for an XML body under an XML content type (or none)."""
    for detect in _XML_DETECTS:
        fmt = detect(value)
        if fmt is not None:
            return fmt
    return "unknown"


def _json_format(value: bytes) -> Format:
    """The tail of :func:`detect_format` for a JSON body under a JSON content type (or none)."""
    if value.startswith(CANONICAL_PREFIX):
        return "canonical"
    # A vendor's detect needs one of its keys: substring tests (memchr-fast) before regexes.
    for keys, detect in _JSON_DETECTS:
        for key in keys:
            if key in value:
                fmt = detect(value)
                if fmt is not None:
                    return fmt
                break
    return "canonical"


@functools.lru_cache(maxsize=64)  # a handful of distinct headers; asked once per message
def _media_type(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    return media or None


# -- parsing and dispatch ----------------------------------------------------------------------


def batch_mapper(fmt: str) -> BatchMapper | None:
    """The columnar mapper of a vendor format, if its vendor has one (see ``_columnar``)."""
    codec = _BY_FORMAT.get(fmt)
    return None if codec is None else codec.map_batch


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
    strict (UTF-8, one object, no NaN/Infinity, no repeated keys: in an OpenALPR group, of the
    fields read; see :mod:`pipeline.codec`); XML is parsed by defusedxml
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
            raise Rejection(Reason.UNSUPPORTED_FORMAT, "payload shape not recognised")
        mapped = _BY_FORMAT[fmt].map_payload(value, fmt, registry, genetec_date_order)
    except Rejection as failure:
        mapped = [failure]
    reads = [m for m in mapped if not isinstance(m, Rejection)]
    rejects = [(m.reason, m.detail) for m in mapped if isinstance(m, Rejection)]
    return reads, rejects
