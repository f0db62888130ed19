"""Decode passenger and crew lists (``passenger_list/1`` JSON or PAXLST) into ``passengers`` rows.

Pure, like :mod:`pipeline.codec.plate_reads`: bytes and Kafka timestamps in, an Arrow table plus
rejections out. A list is a few kilobytes to a few megabytes and holds many people, so the work
is per message in Python (:func:`~pipeline.codec.reasons.strict_json` or
:mod:`pipeline.codec.paxlst`), then per person.

Per message, first match wins:

1. ``empty_value`` (no bytes); ``oversized`` (over ``max_message_bytes``);
2. *expired*: collected (Kafka timestamp) at or before the retention cutoff: counted, dropped,
   never parsed or written anywhere;
3. the format is recognised by its first bytes (``UNA``/``UNB``: PAXLST, else JSON) and parsed:
   ``malformed_edifact`` / ``control_total_mismatch`` / ``malformed_json`` /
   ``unsupported_format`` (another ``schema``) / ``schema_violation`` (wrong JSON types);
4. every manifest (a PAXLST interchange may carry several) is checked against the rules of
   ``passenger_list/1`` in :mod:`pipeline.schemas` (``schema_violation``). A message is all or
   nothing: one bad manifest or person rejects the whole message, once, to the DLQ.

Then each person becomes a row: names upper case with whitespace collapsed (Unicode letters such
as ÆØÅ kept as they are), the vehicle plate normalised exactly like ANPR plates
(:func:`pipeline.reference.plates.normalise_plates`) beside its raw text, and the fields not in
``kept_fields`` set to null (data minimisation). Fields without a column (contact details,
addresses, seat, baggage, booking references) are never read into a row at all.

``person_id`` is a digest of the departure (carrier, voyage, departure time) and the person
(role, names, date of birth, document), taken before minimisation so that two people stay apart
even when their documents are not kept: a list sent again gives the same ids, which the ingest
loop drops as repeats.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import pyarrow as pa

from pipeline.codec.paxlst import Manifest, Person, looks_like_edifact
from pipeline.codec.paxlst import parse_interchange as parse_paxlst
from pipeline.codec.plate_reads import Rejected
from pipeline.codec.reasons import Reason, Rejection, strict_json
from pipeline.reference.plates import normalise_plates
from pipeline.schemas import (
    CARRIER_PATTERN,
    DATE_PATTERN,
    DECODED_PASSENGERS,
    DIRECTIONS,
    DOCUMENT_TYPE_PATTERN,
    MAX_PEOPLE,
    MINIMISABLE_FIELDS,
    NATION_PATTERN,
    PASSENGER_LIST_INPUT,
    PASSENGER_LIST_SCHEMA_ID,
    PERSON_INPUT,
    PORT_PATTERN,
    RFC3339_PATTERN,
    ROLES,
    SEXES,
    VOYAGE_ID_PATTERN,
)

logger = logging.getLogger(__name__)

JSON: Final = "json"
PAXLST: Final = "paxlst"
OUTPUT_SCHEMA: Final = DECODED_PASSENGERS.append(pa.field("msg_index", pa.int32(), nullable=False))
_NAME_FIELDS: Final = ("surname", "given_names")
# How far a departure or arrival may lie from when its list reached Kafka.
MAX_TIME_FROM_COLLECTION: Final = timedelta(days=366)

_RULES: Final[dict[str, re.Pattern[str]]] = {
    "carrier": re.compile(CARRIER_PATTERN),
    "voyage_id": re.compile(VOYAGE_ID_PATTERN),
    "departure_port": re.compile(PORT_PATTERN),
    "arrival_port": re.compile(PORT_PATTERN),
    "nationality": re.compile(NATION_PATTERN),
    "document_issuing_country": re.compile(NATION_PATTERN),
    "document_type": re.compile(DOCUMENT_TYPE_PATTERN),
}
_RFC3339: Final = re.compile(RFC3339_PATTERN)
_DATE: Final = re.compile(DATE_PATTERN)
_MAX_LENGTH: Final = {f.name: f.max_length for f in (*PASSENGER_LIST_INPUT, *PERSON_INPUT)}
_REQUIRED_MANIFEST: Final = tuple(f.name for f in PASSENGER_LIST_INPUT if f.required)
_REQUIRED_PERSON: Final = tuple(f.name for f in PERSON_INPUT if f.required)


@dataclass(frozen=True)
class PassengerLimits:
    max_message_bytes: int = 2 * 1024 * 1024
    kept_fields: tuple[str, ...] = MINIMISABLE_FIELDS


@dataclass(frozen=True)
class PassengerBatch:
    """What one batch became.

    ``len(set(table["msg_index"])) + len(rejected) + len(expired)`` equals the number of
    messages; ``people`` counts rows per accepted message.
    """

    table: pa.Table  # OUTPUT_SCHEMA
    rejected: list[Rejected]
    expired: list[int]
    formats: list[str]  # json | paxlst for every message


def detect_format(value: bytes | None) -> str:
    return PAXLST if value and looks_like_edifact(value[:64]) else JSON


def decode_passenger_lists(
    values: Sequence[bytes | None],
    collected_at_ms: Sequence[int],
    *,
    retention_cutoff: datetime,
    limits: PassengerLimits = PassengerLimits(),
) -> PassengerBatch:
    """Decode a batch of passenger-list messages; never raises on message content."""
    if len(values) != len(collected_at_ms):
        raise ValueError("one Kafka timestamp per value")
    cutoff_ms = int(retention_cutoff.timestamp() * 1000)
    columns: dict[str, list[Any]] = {name: [] for name in OUTPUT_SCHEMA.names}
    rejected: list[Rejected] = []
    expired: list[int] = []
    formats = [detect_format(v) for v in values]
    for index, value in enumerate(values):
        if not value:
            rejected.append(Rejected(index, Reason.EMPTY_VALUE, "no bytes"))
            continue
        if len(value) > limits.max_message_bytes:
            rejected.append(
                Rejected(index, Reason.OVERSIZED, f"longer than {limits.max_message_bytes} bytes")
            )
            continue
        if collected_at_ms[index] <= cutoff_ms:
            expired.append(index)
            continue
        rows: dict[str, list[Any]] = {name: [] for name in columns}
        try:
            collected = datetime.fromtimestamp(collected_at_ms[index] / 1000, UTC)
            manifests = _parse(value, formats[index])
            for manifest in manifests:
                _validate(manifest)
                _check_times(manifest, collected)
                _append_rows(rows, manifest, index, collected, formats[index], limits.kept_fields)
        except Rejection as exc:
            rejected.append(Rejected(index, exc.reason, exc.detail))
            continue
        except Exception as exc:
            # The type only: the text of an exception may quote the list's content.
            logger.error("passenger list %d unreadable: %s", index, type(exc).__name__)
            detail = f"unreadable ({type(exc).__name__})"
            rejected.append(Rejected(index, Reason.SCHEMA_VIOLATION, detail))
            continue
        for name, values_ in rows.items():  # all of a message's rows, or none of them
            columns[name].extend(values_)
    raw_plates = pa.array(columns["vehicle_plate_raw"], pa.string())
    normalised, _ = normalise_plates(raw_plates, pa.array(["NO"] * len(raw_plates), pa.string()))
    columns["vehicle_plate"] = [plate or None for plate in normalised.to_pylist()]
    table = pa.Table.from_pydict(columns, schema=OUTPUT_SCHEMA)
    return PassengerBatch(table, rejected, expired, formats)


# -- parsing ------------------------------------------------------------------------------------


def _parse(value: bytes, fmt: str) -> list[Manifest]:
    if fmt == PAXLST:
        return parse_paxlst(value)
    return [_parse_json(value)]


def manifest_document(m: Manifest, person_extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``passenger_list/1`` document of a manifest: the writer beside ``_parse_json``, for
    the simulator and tests. ``person_extra`` adds fields to every person (ones the pipeline
    must drop, such as a seat or a phone number)."""

    def iso(t: datetime | None) -> str | None:
        return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if t else None

    people = []
    for p in m.people:
        person: dict[str, Any] = {k: v for k, v in p.__dict__.items() if v is not None}
        if p.date_of_birth is not None:
            person["date_of_birth"] = p.date_of_birth.isoformat()
        person.update(person_extra or {})
        people.append(person)
    return {
        "schema": "passenger_list/1",
        "carrier": m.carrier,
        "vessel": m.vessel,
        "voyage_id": m.voyage_id,
        "departure_port": m.departure_port,
        "departure_at": iso(m.departure_at),
        "arrival_port": m.arrival_port,
        "arrival_at": iso(m.arrival_at),
        "direction": m.direction,
        "people": people,
    }


def _parse_json(value: bytes) -> Manifest:
    doc = strict_json(value)
    if not isinstance(doc, dict):
        raise Rejection(Reason.MALFORMED_JSON, "not a JSON object")
    schema = doc.get("schema")
    if isinstance(schema, str) and schema != PASSENGER_LIST_SCHEMA_ID:
        raise Rejection(Reason.UNSUPPORTED_FORMAT, f"schema is not {PASSENGER_LIST_SCHEMA_ID}")
    if schema is None:
        raise Rejection(Reason.SCHEMA_VIOLATION, "schema: missing")
    for f in PASSENGER_LIST_INPUT:
        _string_or_null(doc, f.name, "")
    people = doc.get("people")
    if not isinstance(people, list) or not people:
        raise Rejection(Reason.SCHEMA_VIOLATION, "people: not a non-empty array")
    if len(people) > MAX_PEOPLE:
        raise Rejection(Reason.SCHEMA_VIOLATION, f"people: more than {MAX_PEOPLE}")
    persons = []
    for n, item in enumerate(people):
        if not isinstance(item, dict):
            raise Rejection(Reason.SCHEMA_VIOLATION, f"people[{n}]: not an object")
        for f in PERSON_INPUT:
            _string_or_null(item, f.name, f"people[{n}].")
        persons.append(
            Person(
                role=item.get("role") or "",
                surname=item.get("surname"),
                given_names=item.get("given_names"),
                date_of_birth=_json_date(item.get("date_of_birth"), n),
                sex=item.get("sex"),
                nationality=item.get("nationality"),
                document_type=item.get("document_type"),
                document_number=item.get("document_number"),
                document_issuing_country=item.get("document_issuing_country"),
                vehicle_plate=item.get("vehicle_plate"),
            )
        )
    return Manifest(
        carrier=doc.get("carrier"),
        vessel=doc.get("vessel"),
        voyage_id=doc.get("voyage_id"),
        departure_port=doc.get("departure_port"),
        departure_at=_json_time(doc.get("departure_at"), "departure_at"),
        arrival_port=doc.get("arrival_port"),
        arrival_at=_json_time(doc.get("arrival_at"), "arrival_at"),
        direction=doc.get("direction"),
        people=tuple(persons),
    )


def _string_or_null(doc: dict[str, Any], name: str, where: str) -> None:
    value = doc.get(name)
    if value is not None and not isinstance(value, str):
        raise Rejection(Reason.SCHEMA_VIOLATION, f"{where}{name}: not a string")


def _json_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    if len(value) > 40 or not _RFC3339.match(value):
        raise Rejection(Reason.SCHEMA_VIOLATION, f"{name}: not an RFC 3339 time with offset")
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError):  # 0001-01-01T00:00+01:00 has no UTC time
        raise Rejection(Reason.SCHEMA_VIOLATION, f"{name}: not a calendar time") from None


def _json_date(value: str | None, n: int) -> date | None:
    if value is None:
        return None
    if not _DATE.match(value):
        raise Rejection(Reason.SCHEMA_VIOLATION, f"people[{n}].date_of_birth: not YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Rejection(
            Reason.SCHEMA_VIOLATION, f"people[{n}].date_of_birth: not a calendar date"
        ) from None


# -- the rules (both formats) -------------------------------------------------------------------


def _validate(m: Manifest) -> None:
    """The rules of ``passenger_list/1``, on a manifest from either format."""
    for name in _REQUIRED_MANIFEST:
        if name != "schema" and getattr(m, name) is None:
            raise Rejection(Reason.SCHEMA_VIOLATION, f"{name}: missing")
    _check_fields(m, ("carrier", "vessel", "voyage_id", "departure_port", "arrival_port"), "")
    if m.direction not in DIRECTIONS:
        raise Rejection(Reason.SCHEMA_VIOLATION, "direction: not entry or exit")
    if not m.people:
        raise Rejection(Reason.SCHEMA_VIOLATION, "people: none listed")
    for n, p in enumerate(m.people):
        where = f"people[{n}]."
        for name in _REQUIRED_PERSON:
            if not getattr(p, name):
                raise Rejection(Reason.SCHEMA_VIOLATION, f"{where}{name}: missing")
        if p.role not in ROLES:
            raise Rejection(Reason.SCHEMA_VIOLATION, f"{where}role: not one of {ROLES}")
        if p.sex is not None and p.sex not in SEXES:
            raise Rejection(Reason.SCHEMA_VIOLATION, f"{where}sex: not one of {SEXES}")
        _check_fields(
            p,
            (
                "surname",
                "given_names",
                "nationality",
                "document_type",
                "document_number",
                "document_issuing_country",
                "vehicle_plate",
            ),
            where,
        )


def _check_times(m: Manifest, collected: datetime) -> None:
    """Departure and arrival within a year of when the list reached us: a list for the year
    9999 is a broken clock, and a far-off time would mislead every later time-based rule."""
    for name in ("departure_at", "arrival_at"):
        value: datetime | None = getattr(m, name)
        if value is not None and abs(value - collected) > MAX_TIME_FROM_COLLECTION:
            raise Rejection(Reason.SCHEMA_VIOLATION, f"{name}: more than a year from when sent")


def _check_fields(obj: Manifest | Person, names: tuple[str, ...], where: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is None:
            continue
        limit = _MAX_LENGTH[name]
        if limit is not None and len(value) > limit:
            raise Rejection(Reason.SCHEMA_VIOLATION, f"{where}{name}: longer than {limit}")
        rule = _RULES.get(name)
        if rule is not None and not rule.match(value):
            raise Rejection(Reason.SCHEMA_VIOLATION, f"{where}{name}: breaks {rule.pattern}")
        if name in _NAME_FIELDS and not any(c.isalpha() for c in value):
            raise Rejection(Reason.SCHEMA_VIOLATION, f"{where}{name}: holds no letter")


# -- rows ---------------------------------------------------------------------------------------


def normalise_name(text: str | None) -> str | None:
    """Upper case, runs of whitespace as one space; letters such as ÆØÅ are kept as they are.

    >>> normalise_name("  øStby \\t  åse ")
    'ØSTBY ÅSE'
    """
    if text is None:
        return None
    joined = " ".join(text.split()).upper()
    return joined or None


def person_id(m: Manifest, p: Person) -> str:
    """A digest of the departure and the person (taken before minimisation)."""
    parts = (
        m.carrier,
        m.voyage_id,
        m.departure_at.isoformat() if m.departure_at else "",
        p.role,
        normalise_name(p.surname),
        normalise_name(p.given_names),
        p.date_of_birth.isoformat() if p.date_of_birth else "",
        p.document_type,
        p.document_number,
    )
    text = "\x1f".join(part or "" for part in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _append_rows(
    columns: dict[str, list[Any]],
    m: Manifest,
    index: int,
    collected: datetime,
    fmt: str,
    kept: tuple[str, ...],
) -> None:
    for p in m.people:
        person = {
            "surname": normalise_name(p.surname),
            "given_names": normalise_name(p.given_names),
            "date_of_birth": p.date_of_birth,
            "sex": p.sex,
            "nationality": p.nationality,
            "document_type": p.document_type,
            "document_number": p.document_number,
            "document_issuing_country": p.document_issuing_country,
            "vehicle_plate": p.vehicle_plate,
        }
        row: dict[str, Any] = {
            "person_id": person_id(m, p),
            "collected_at": collected,
            "carrier": m.carrier,
            "vessel": m.vessel,
            "voyage_id": m.voyage_id,
            "departure_port": m.departure_port,
            "departure_at": m.departure_at,
            "arrival_port": m.arrival_port,
            "arrival_at": m.arrival_at,
            "direction": m.direction,
            "role": p.role,
            "source_format": fmt,
            "msg_index": index,
        }
        for name, value in person.items():
            row[name] = value if name in kept else None
        # The raw plate is the same personal datum as the normalised one: kept with it or not
        # at all. It is normalised for the whole batch at once (vectorised) afterwards.
        row["vehicle_plate_raw"] = row.pop("vehicle_plate")
        row["vehicle_plate"] = None
        for name, value in row.items():
            columns[name].append(value)
