"""The one source of truth for record shapes: Arrow schemas for the lake tables.

The JSON Schema for producers (``pipeline/data/schemas/plate_read-1.schema.json``) is generated from
:data:`PLATE_READ_INPUT` by ``anpr schemas write`` and a test checks the committed file agrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import pyarrow as pa

UTC_TS = pa.timestamp("us", tz="UTC")

# Field rules shared by the decoder (which enforces them) and the JSON Schema (which tells
# producers about them).
EVENT_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
VEHICLE_CLASS_PATTERN: Final = r"^[a-z][a-z0-9_-]{0,15}$"
COUNTRY_PATTERN: Final = r"^[A-Z]{2}$"
# plate_country of a read whose country is unknown (the camera recognised none, or sent a code
# that names no country). ISO 3166-1 leaves ZZ to users; CLDR uses it for "unknown region".
UNKNOWN_COUNTRY: Final = "ZZ"
SITE_ID_PATTERN: Final = r"^NO-[A-Z0-9]{2,20}$"
CAMERA_ID_PATTERN: Final = r"^[A-Z0-9][A-Z0-9-]{1,31}$"
DIRECTIONS: Final = ("entry", "exit")
LANE_MIN, LANE_MAX = 1, 99
# RFC 3339 date-time with a mandatory offset; upper-case T and Z only. The calendar (Feb 30,
# second 60) is checked by Arrow's cast. Fractions beyond microseconds are truncated.
_RFC3339_DATE_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
_RFC3339_OFFSET = r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
RFC3339_PATTERN: Final = _RFC3339_DATE_TIME + r"(?:\.[0-9]{1,6})?" + _RFC3339_OFFSET
RFC3339_LONG_FRACTION_PATTERN: Final = _RFC3339_DATE_TIME + r"\.[0-9]{7,}" + _RFC3339_OFFSET


@dataclass(frozen=True)
class InputField:
    """One field of the canonical ``plate_read/1`` JSON message."""

    name: str
    arrow_type: pa.DataType
    required: bool
    max_length: int | None = None  # strings only: every string field is bounded
    description: str = ""


# Canonical plate read as producers send it (DESIGN.md, "Canonical plate read").
PLATE_READ_INPUT: tuple[InputField, ...] = (
    InputField("schema", pa.string(), True, 32, 'Always "plate_read/1".'),
    InputField("event_id", pa.string(), True, 64, "Unique per read; retransmissions repeat it."),
    InputField("site_id", pa.string(), True, 32, "A site id from the site registry."),
    InputField("camera_id", pa.string(), True, 32, "A camera id registered at that site."),
    InputField("lane", pa.int16(), True, None, "Lane number at the site, 1-based."),
    InputField("direction", pa.string(), True, 8, "Relative to Norway: entry or exit."),
    InputField("captured_at", pa.string(), True, 40, "RFC 3339 time with explicit offset."),
    InputField("plate", pa.string(), True, 24, "Plate text as the camera read it."),
    InputField(
        "plate_country",
        pa.string(),
        True,
        2,
        "ISO 3166-1 alpha-2, as the camera says; ZZ (or any unassigned code): unknown.",
    ),
    InputField("confidence", pa.float64(), True, None, "OCR confidence, 0 to 1."),
    InputField("vehicle_class", pa.string(), False, 16, "car, van, truck, bus, motorcycle, ..."),
)

PLATE_READ_SCHEMA_ID = "plate_read/1"

CANDIDATES = pa.list_(
    pa.struct([pa.field("plate", pa.string()), pa.field("confidence", pa.float32())])
)

# Columns of the lake table ``plate_reads``, in order.
PLATE_READS = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("site_id", pa.string(), nullable=False),
        pa.field("camera_id", pa.string(), nullable=False),
        pa.field("lane", pa.int16(), nullable=False),
        pa.field("direction", pa.string(), nullable=False),
        pa.field("captured_at", UTC_TS, nullable=False),
        pa.field("plate", pa.string(), nullable=False),  # normalised: A-Z0-9 only
        pa.field("plate_raw", pa.string(), nullable=False),  # as the camera sent it
        pa.field("plate_country", pa.string(), nullable=False),
        pa.field("confidence", pa.float32(), nullable=False),
        pa.field("vehicle_class", pa.string(), nullable=True),
        pa.field("source_format", pa.string(), nullable=False),  # canonical, openalpr, ...
        # Reads of one vehicle passing one site (pipeline/reference/passages.py); null only for
        # rows stored before passages existed.
        pa.field("passage_id", pa.int64(), nullable=True),
        # The camera's other readings (best first, at most 5), kept for rectification.
        pa.field("candidates", CANDIDATES, nullable=True),
        pa.field("ingested_at", UTC_TS, nullable=False),
        pa.field("source_partition", pa.int32(), nullable=False),
        pa.field("source_offset", pa.int64(), nullable=False),
    ]
)

# Data-subject rights (pipeline/access/subjects.py). Both hold plates: personal data, kept no
# longer than the reads they are about.
# One row per rectified read: the original value, who changed it, when and why. Partitioned by
# the original read's captured_at, so it ages out with the read.
PLATE_READ_VERSIONS = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("captured_at", UTC_TS, nullable=False),  # the original collection time
        pa.field("old_plate", pa.string(), nullable=False),
        pa.field("old_plate_raw", pa.string(), nullable=False),
        pa.field("new_plate", pa.string(), nullable=False),
        pa.field("changed_at", UTC_TS, nullable=False),
        pa.field("changed_by", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
    ]
)
# Plates whose rows no role but the dpo may see until restricted_until (never past the expiry
# of the newest row it covers, collected_at).
SUBJECT_RESTRICTIONS = pa.schema(
    [
        pa.field("plate", pa.string(), nullable=False),
        pa.field("restricted_at", UTC_TS, nullable=False),
        pa.field("restricted_until", UTC_TS, nullable=False),
        pa.field("restricted_by", pa.string(), nullable=False),
        pa.field("collected_at", UTC_TS, nullable=False),  # newest row covered: the legal clock
        pa.field("reason", pa.string(), nullable=True),
    ]
)

# What the pure decoder produces; the ingest loop adds passages and the ingest metadata.
LOOP_COLUMNS = frozenset(
    {"passage_id", "candidates", "ingested_at", "source_partition", "source_offset"}
)
DECODED_PLATE_READS = pa.schema([f for f in PLATE_READS if f.name not in LOOP_COLUMNS])


# The JSON Schema for producers: what each field means and the rules the decoder enforces.
_JSON_RULES: dict[str, dict[str, Any]] = {
    "schema": {"const": PLATE_READ_SCHEMA_ID},
    "event_id": {"pattern": EVENT_ID_PATTERN},
    "site_id": {"pattern": SITE_ID_PATTERN},
    "camera_id": {"pattern": CAMERA_ID_PATTERN},
    "lane": {"minimum": LANE_MIN, "maximum": LANE_MAX},
    "direction": {"enum": list(DIRECTIONS)},
    "captured_at": {"format": "date-time", "pattern": RFC3339_PATTERN},
    "plate_country": {"pattern": COUNTRY_PATTERN},
    "confidence": {"minimum": 0, "maximum": 1},
    "vehicle_class": {"pattern": VEHICLE_CLASS_PATTERN},
}


def _json_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type):
        return "number"
    return "string"


def plate_read_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``plate_read/1`` (committed under pipeline/data/schemas/)."""
    properties = _json_properties(PLATE_READ_INPUT, _JSON_RULES)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:anpr:schema:plate_read:1",
        "title": "plate_read/1: one camera read of one plate",
        "description": (
            "One Kafka message on anpr.plate-reads is exactly one JSON object of this shape "
            "(UTF-8, no BOM, at most 64 KiB). Key: the site id. Unknown extra fields are "
            "ignored. Generated from pipeline/schemas.py by `anpr schemas write`."
        ),
        "type": "object",
        "required": [f.name for f in PLATE_READ_INPUT if f.required],
        "properties": properties,
    }


# --- passenger lists (issue 5) --------------------------------------------------------------

PASSENGER_LIST_SCHEMA_ID = "passenger_list/1"
# UN/LOCODE: country (alpha-2) and a 3-character place code.
PORT_PATTERN: Final = r"^[A-Z]{2}[A-Z2-9]{3}$"
CARRIER_PATTERN: Final = r"^[A-Z0-9]{2,17}$"
VOYAGE_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,34}$"
NATION_PATTERN: Final = r"^[A-Z]{3}$"  # ISO 3166-1 alpha-3 (and ICAO codes such as D, UNK)
DOCUMENT_TYPE_PATTERN: Final = r"^[A-Z0-9]{1,3}$"
DATE_PATTERN: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
ROLES: Final = ("passenger", "crew", "driver")
SEXES: Final = ("M", "F", "U", "X")
MAX_PEOPLE: Final = 10_000  # a large ferry carries about 3,000

# One departure, as transport companies send it (JSON; PAXLST is mapped to the same fields).
PASSENGER_LIST_INPUT: tuple[InputField, ...] = (
    InputField("schema", pa.string(), True, 32, 'Always "passenger_list/1".'),
    InputField("carrier", pa.string(), True, 17, "Carrier code (operator), upper case."),
    InputField("vessel", pa.string(), False, 35, "Vessel name or IMO number."),
    InputField("voyage_id", pa.string(), True, 35, "The carrier's voyage (sailing) id."),
    InputField("departure_port", pa.string(), True, 5, "UN/LOCODE of the departure port."),
    InputField("departure_at", pa.string(), True, 40, "Scheduled departure, RFC 3339."),
    InputField("arrival_port", pa.string(), True, 5, "UN/LOCODE of the arrival port."),
    InputField("arrival_at", pa.string(), False, 40, "Scheduled arrival, RFC 3339."),
    InputField("direction", pa.string(), True, 8, "Relative to Norway: entry or exit."),
)
# One person in ``people`` (at least one, at most MAX_PEOPLE).
PERSON_INPUT: tuple[InputField, ...] = (
    InputField("role", pa.string(), True, 16, "passenger, crew or driver (of a vehicle)."),
    InputField("surname", pa.string(), True, 70, "Family name as in the travel document."),
    InputField("given_names", pa.string(), False, 70, "Given names, space separated."),
    InputField("date_of_birth", pa.string(), False, 10, "YYYY-MM-DD."),
    InputField("sex", pa.string(), False, 1, "M, F, U (unknown) or X."),
    InputField("nationality", pa.string(), False, 3, "ISO 3166-1 alpha-3."),
    InputField("document_type", pa.string(), False, 3, "Travel document type (P passport, I id)."),
    InputField("document_number", pa.string(), False, 35, "Travel document number."),
    InputField("document_issuing_country", pa.string(), False, 3, "ISO 3166-1 alpha-3."),
    InputField(
        "vehicle_plate", pa.string(), False, 24, "Registration plate of the vehicle travelled in."
    ),
)
# Person fields an operator may drop by configuration (passengers.kept_fields); role is always
# kept. Contact details, addresses, seat, baggage and reservation references have no column at
# all: they are dropped at ingest whatever the configuration says.
MINIMISABLE_FIELDS: Final = tuple(f.name for f in PERSON_INPUT if f.name != "role")

_PASSENGER_JSON_RULES: dict[str, dict[str, Any]] = {
    "schema": {"const": PASSENGER_LIST_SCHEMA_ID},
    "carrier": {"pattern": CARRIER_PATTERN},
    "voyage_id": {"pattern": VOYAGE_ID_PATTERN},
    "departure_port": {"pattern": PORT_PATTERN},
    "arrival_port": {"pattern": PORT_PATTERN},
    "departure_at": {"format": "date-time", "pattern": RFC3339_PATTERN},
    "arrival_at": {"format": "date-time", "pattern": RFC3339_PATTERN},
    "direction": {"enum": list(DIRECTIONS)},
    "role": {"enum": list(ROLES)},
    "date_of_birth": {"format": "date", "pattern": DATE_PATTERN},
    "sex": {"enum": list(SEXES)},
    "nationality": {"pattern": NATION_PATTERN},
    "document_type": {"pattern": DOCUMENT_TYPE_PATTERN},
    "document_issuing_country": {"pattern": NATION_PATTERN},
}

# Lake table ``passengers``: one row per person per departure. Personal columns are nullable:
# a field dropped by passengers.kept_fields is stored as null.
PASSENGERS = pa.schema(
    [
        pa.field("person_id", pa.string(), nullable=False),  # digest: departure + person
        pa.field("collected_at", UTC_TS, nullable=False),  # Kafka timestamp: the legal clock
        pa.field("carrier", pa.string(), nullable=False),
        pa.field("vessel", pa.string(), nullable=True),
        pa.field("voyage_id", pa.string(), nullable=False),
        pa.field("departure_port", pa.string(), nullable=False),
        pa.field("departure_at", UTC_TS, nullable=False),
        pa.field("arrival_port", pa.string(), nullable=False),
        pa.field("arrival_at", UTC_TS, nullable=True),
        pa.field("direction", pa.string(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("surname", pa.string(), nullable=True),  # upper case, spaces collapsed
        pa.field("given_names", pa.string(), nullable=True),
        pa.field("date_of_birth", pa.date32(), nullable=True),
        pa.field("sex", pa.string(), nullable=True),
        pa.field("nationality", pa.string(), nullable=True),
        pa.field("document_type", pa.string(), nullable=True),
        pa.field("document_number", pa.string(), nullable=True),
        pa.field("document_issuing_country", pa.string(), nullable=True),
        pa.field("vehicle_plate", pa.string(), nullable=True),  # normalised like plate_reads
        pa.field("vehicle_plate_raw", pa.string(), nullable=True),
        pa.field("source_format", pa.string(), nullable=False),  # json | paxlst
        pa.field("ingested_at", UTC_TS, nullable=False),
        pa.field("source_partition", pa.int32(), nullable=False),
        pa.field("source_offset", pa.int64(), nullable=False),
    ]
)
PASSENGER_LOOP_COLUMNS = frozenset({"ingested_at", "source_partition", "source_offset"})
DECODED_PASSENGERS = pa.schema([f for f in PASSENGERS if f.name not in PASSENGER_LOOP_COLUMNS])


def _json_properties(
    fields: tuple[InputField, ...], rules: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for f in fields:
        prop: dict[str, Any] = {"type": _json_type(f.arrow_type), "description": f.description}
        if f.max_length is not None:
            prop["maxLength"] = f.max_length
        prop.update(rules.get(f.name, {}))
        if not f.required:
            prop["type"] = [prop["type"], "null"]
        properties[f.name] = prop
    return properties


def passenger_list_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``passenger_list/1`` (committed under pipeline/data/schemas/)."""
    properties = _json_properties(PASSENGER_LIST_INPUT, _PASSENGER_JSON_RULES)
    properties["people"] = {
        "type": "array",
        "description": "Everyone on board this departure that the list covers.",
        "minItems": 1,
        "maxItems": MAX_PEOPLE,
        "items": {
            "type": "object",
            "required": [f.name for f in PERSON_INPUT if f.required],
            "properties": _json_properties(PERSON_INPUT, _PASSENGER_JSON_RULES),
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:anpr:schema:passenger_list:1",
        "title": "passenger_list/1: the people on one ferry departure",
        "description": (
            "One Kafka message on anpr.passengers is one JSON object of this shape (UTF-8, at "
            "most passengers.max_message_bytes, default 2 MiB), or a UN/EDIFACT PAXLST "
            "interchange. Key: carrier and voyage id. Unknown extra fields (contact details, "
            "addresses, seat, baggage, booking references) are accepted and dropped at ingest. "
            "Generated from pipeline/schemas.py by `anpr schemas write`."
        ),
        "type": "object",
        "required": [*(f.name for f in PASSENGER_LIST_INPUT if f.required), "people"],
        "properties": properties,
    }


def lake_table_description(schema: pa.Schema) -> list[dict[str, Any]]:
    """A lake table's columns as committed under pipeline/data/schemas/ (name, type, nullable)."""
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]
