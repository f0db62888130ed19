"""Baseline (b): the hot path as most people would first write it, one message at a time.

``Consumer.poll()`` per message, ``json.loads`` per message, the rules of ``plate_read/1`` in
plain Python (:class:`PlainValidator`), ``pyarrow.Table.from_pylist`` per batch, and the same
lake write (rows and offsets in one transaction) and DLQ records as ``anpr ingest plates``.
:class:`PlainValidator`, :class:`PlainBatch` and :class:`PlainLakeWriter` are shared with the
faust baseline (:mod:`benchmarks.faust_baseline`).

Plate normalisation is re-implemented here with ``unicodedata``, ``str.translate`` and
``re``: the pipeline's scalar ``normalise_plate``/``is_valid_plate`` build pyarrow arrays per
call (~300 µs per message), which would make this baseline a strawman. The hot-path benchmark
checks this validator against ``decode_plate_reads`` on the whole pool before it runs.

Run by :mod:`benchmarks.hot_path`; by hand::

    .venv/bin/python -m benchmarks.naive --bootstrap 127.0.0.1:9092 --topic bench.reads \\
        --dlq bench.dlq --lake /tmp/naive-lake --progress /tmp/naive.jsonl --max-messages 200000
"""

from __future__ import annotations

import argparse
import json
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
from confluent_kafka import Consumer

from benchmarks.common import ProgressFile
from pipeline.codec.plate_reads import SOURCE_FORMAT
from pipeline.codec.reasons import Reason
from pipeline.codec.vendors import VENDOR_RULES
from pipeline.config import IngestSettings, KafkaSettings, RetentionSettings, Settings
from pipeline.ingest.dlq import DeadLetters
from pipeline.ingest.plates import TABLE
from pipeline.kafka.clients import make_producer
from pipeline.lake.catalog import Lake
from pipeline.reference.plates import _FOLDS, GENERIC_FORMAT, PLATE_FORMATS
from pipeline.reference.sites import DEFAULT_REGISTRY, SiteRegistry, load_registry
from pipeline.retention import expired_on_arrival
from pipeline.schemas import (
    COUNTRY_PATTERN,
    DIRECTIONS,
    EVENT_ID_PATTERN,
    LANE_MAX,
    LANE_MIN,
    PLATE_READ_INPUT,
    PLATE_READ_SCHEMA_ID,
    PLATE_READS,
    RFC3339_LONG_FRACTION_PATTERN,
    RFC3339_PATTERN,
    VEHICLE_CLASS_PATTERN,
)

# --- plate normalisation, plain Python ---------------------------------------------------------

_FOLD_TABLE: Final = str.maketrans(dict(_FOLDS))
# The ASCII members of the pipeline's separator class [\s\v\p{Z}\p{Pd}\p{Cf}._\x{00B7}].
_ASCII_SEPARATORS: Final = str.maketrans("", "", " \t\n\v\f\r-._")
_SEPARATOR_CATEGORIES: Final = frozenset({"Zs", "Zl", "Zp", "Pd", "Cf"})
_SEPARATOR_CHARS: Final = frozenset(" \t\n\v\f\r._\u00b7")
_COUNTRY_RULES: Final = {c: re.compile(p).fullmatch for c, p in PLATE_FORMATS.items()}
_GENERIC_RULE: Final = re.compile(GENERIC_FORMAT).fullmatch
_HAS_LETTER: Final = re.compile("[A-Z]").search
_HAS_DIGIT: Final = re.compile("[0-9]").search
_MAX_ROUNDS: Final = 8


def _simple_upper(text: str) -> str:
    # Arrow's utf8_upper maps one code point to one (ß stays ß); str.upper may expand.
    return "".join(u if len(u := c.upper()) == 1 else c for c in text)


def _strip_unicode(text: str) -> str:
    return "".join(
        c
        for c in text
        if c not in _SEPARATOR_CHARS and unicodedata.category(c) not in _SEPARATOR_CATEGORIES
    )


def plain_normalise(raw: str) -> str:
    """Same result as :func:`pipeline.reference.plates.normalise_plate`, without pyarrow."""
    if raw.isascii():
        return raw.upper().translate(_ASCII_SEPARATORS)
    text = raw
    for _ in range(_MAX_ROUNDS):
        step = _strip_unicode(
            _simple_upper(unicodedata.normalize("NFKC", text)).translate(_FOLD_TABLE)
        )
        if step == text:
            break
        text = step
    return text


def plain_plate_fits(normalised: str, country: str) -> bool:
    """Same answer as :func:`pipeline.reference.plates.is_valid_plate` on a normalised plate."""
    rule = _COUNTRY_RULES.get(country)
    if rule is not None:
        return rule(normalised) is not None
    return bool(_GENERIC_RULE(normalised) and _HAS_LETTER(normalised) and _HAS_DIGIT(normalised))


# --- validation ---------------------------------------------------------------------------------


class Refused(Exception):
    """The message goes to the DLQ with this reason."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _not_finite(name: str) -> float:
    raise Refused(Reason.MALFORMED_JSON, "NaN and Infinity are not JSON numbers")


_JSON_TYPES: Final[dict[str, Callable[[object], bool]]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) is float or type(v) is int,
}
_RULES: Final[dict[str, Callable[[Any], bool]]] = {
    "event_id": re.compile(EVENT_ID_PATTERN).fullmatch,
    "lane": lambda v: LANE_MIN <= v <= LANE_MAX,
    "direction": lambda v: v in DIRECTIONS,
    "plate_country": re.compile(COUNTRY_PATTERN).fullmatch,
    "confidence": lambda v: 0 <= v <= 1,
    "vehicle_class": re.compile(VEHICLE_CLASS_PATTERN).fullmatch,
}
_RFC3339: Final = re.compile(RFC3339_PATTERN).fullmatch
_RFC3339_LONG: Final = re.compile(RFC3339_LONG_FRACTION_PATTERN).fullmatch
_LONG_FRACTION: Final = re.compile(r"(\.[0-9]{6})[0-9]+")


def _json_type(spec_type: pa.DataType) -> str:
    if pa.types.is_integer(spec_type):
        return "integer"
    return "number" if pa.types.is_floating(spec_type) else "string"


_FIELDS: Final = tuple(
    (f.name, f.required, f.max_length, _JSON_TYPES[_json_type(f.arrow_type)], _RULES.get(f.name))
    for f in PLATE_READ_INPUT
)


def _parse_time(text: str) -> datetime | None:
    if not _RFC3339(text):
        if not _RFC3339_LONG(text):
            return None
        text = _LONG_FRACTION.sub(r"\1", text)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


class PlainValidator:
    """The ``plate_read/1`` rules, one message at a time, reasons in the decoder's order."""

    def __init__(
        self, registry: SiteRegistry, *, max_message_bytes: int, future_tolerance: timedelta
    ) -> None:
        self._registry = registry
        self._max_bytes = max_message_bytes
        self._tolerance = future_tolerance

    def check(self, value: bytes | None, now: datetime, cutoff: datetime) -> dict[str, Any] | None:
        """The decoded row, or None if it expired on arrival; raises :class:`Refused`."""
        if not value:
            raise Refused(Reason.EMPTY_VALUE, "empty value or tombstone")
        if len(value) > self._max_bytes:
            raise Refused(Reason.OVERSIZED, f"longer than {self._max_bytes} bytes")
        try:
            doc = json.loads(value.decode("utf-8"), parse_constant=_not_finite)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise Refused(Reason.MALFORMED_JSON, f"not valid JSON: {type(exc).__name__}") from exc
        if not isinstance(doc, dict):
            raise Refused(Reason.MALFORMED_JSON, "the message is not a JSON object")
        schema = doc.get("schema")
        if isinstance(schema, str) and schema != PLATE_READ_SCHEMA_ID:
            raise Refused(Reason.UNSUPPORTED_FORMAT, f"schema is not {PLATE_READ_SCHEMA_ID}")
        for name, _, _, type_ok, _ in _FIELDS:
            found = doc.get(name)
            if found is not None and not type_ok(found):
                raise Refused(Reason.SCHEMA_VIOLATION, f"field '{name}' has the wrong type")
        captured: datetime | None = None
        for name, required, max_length, _, rule in _FIELDS:
            found = doc.get(name)
            if found is None:
                if required:
                    raise Refused(Reason.SCHEMA_VIOLATION, f"field '{name}' is missing or null")
                continue
            if max_length is not None and name != "schema" and len(found) > max_length:
                raise Refused(Reason.SCHEMA_VIOLATION, f"field '{name}' is too long")
            if name == "captured_at":
                captured = _parse_time(found)
                ok = captured is not None
            else:
                ok = rule is None or bool(rule(found))
            if not ok:
                raise Refused(Reason.SCHEMA_VIOLATION, f"field '{name}' breaks its rule")
        assert captured is not None
        if captured < cutoff:
            return None
        if not self._registry.is_known(doc["site_id"], doc["camera_id"]):
            raise Refused(Reason.UNKNOWN_SITE, "site_id/camera_id pair is not in the registry")
        plate = plain_normalise(doc["plate"])
        if not plain_plate_fits(plate, doc["plate_country"]):
            raise Refused(Reason.INVALID_PLATE, "plate does not fit its country's format")
        if captured > now + self._tolerance:
            raise Refused(Reason.FUTURE_TIMESTAMP, "captured_at is in the future")
        return {
            "event_id": doc["event_id"],
            "site_id": doc["site_id"],
            "camera_id": doc["camera_id"],
            "lane": doc["lane"],
            "direction": doc["direction"],
            "captured_at": captured,
            "plate": plate,
            "plate_raw": doc["plate"],
            "plate_country": doc["plate_country"],
            "confidence": doc["confidence"],
            "vehicle_class": doc.get("vehicle_class"),
            "source_format": SOURCE_FORMAT,
        }


def default_validator(registry: SiteRegistry | None = None) -> PlainValidator:
    """A validator with the ingest worker's default limits."""
    ingest = IngestSettings()
    return PlainValidator(
        registry or load_registry(DEFAULT_REGISTRY, VENDOR_RULES),
        max_message_bytes=ingest.max_message_bytes,
        future_tolerance=timedelta(seconds=ingest.future_tolerance_s),
    )


# --- batches and the lake -----------------------------------------------------------------------


@dataclass(frozen=True)
class Reject:
    value: bytes | None
    key: bytes | None
    partition: int
    offset: int
    reason: Reason
    detail: str


@dataclass
class Totals:
    consumed: int = 0
    stored: int = 0
    rejected: int = 0
    expired: int = 0
    duplicates: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class PlainBatch:
    """One batch, validated message by message as it is added."""

    validator: PlainValidator
    seen: set[str]  # event ids already stored
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    next_offsets: dict[int, int] = field(default_factory=dict)
    new_ids: set[str] = field(default_factory=set)
    consumed: int = 0
    expired: int = 0
    duplicates: int = 0

    def __post_init__(self) -> None:
        self._cutoff = expired_on_arrival(self.now, RetentionSettings().months)

    def add(self, value: bytes | None, key: bytes | None, partition: int, offset: int) -> None:
        self.consumed += 1
        self.next_offsets[partition] = offset + 1
        try:
            row = self.validator.check(value, self.now, self._cutoff)
        except Refused as refused:
            self.rejects.append(
                Reject(value, key, partition, offset, refused.reason, refused.detail)
            )
            return
        if row is None:
            self.expired += 1
            return
        event_id = row["event_id"]
        if event_id in self.seen or event_id in self.new_ids:
            self.duplicates += 1
            return
        self.new_ids.add(event_id)
        row["ingested_at"] = self.now
        row["source_partition"] = partition
        row["source_offset"] = offset
        self.rows.append(row)


class PlainLakeWriter:
    """``from_pylist`` and the same ``Lake.write_batch`` (rows + offsets) as the worker."""

    def __init__(self, lake: Lake, *, group: str, topic: str) -> None:
        self._lake = lake
        self._group = group
        self._topic = topic
        self._positions: dict[int, int | None] = dict(lake.stored_offsets(group, topic))
        self.seen: set[str] = set()
        self.totals = Totals()

    def batch(self, validator: PlainValidator) -> PlainBatch:
        return PlainBatch(validator, self.seen)

    def commit(self, batch: PlainBatch) -> None:
        table = pa.Table.from_pylist(batch.rows, schema=PLATE_READS)
        self._lake.write_batch(
            TABLE,
            table,
            consumer_group=self._group,
            topic=self._topic,
            next_offsets=batch.next_offsets,
            expected={p: self._positions.get(p) for p in batch.next_offsets},
        )
        self._positions.update(batch.next_offsets)
        self.seen |= batch.new_ids
        t = self.totals
        t.consumed += batch.consumed
        t.stored += len(batch.rows)
        t.rejected += len(batch.rejects)
        t.expired += batch.expired
        t.duplicates += batch.duplicates


def dlq_headers(reject: Reject, topic: str) -> list[tuple[str, bytes]]:
    """The worker's DLQ headers (pipeline.ingest.dlq), for baselines that produce their own."""
    return [
        ("anpr-reason", reject.reason.value.encode()),
        ("anpr-error", reject.detail.encode()),
        ("anpr-source-topic", topic.encode()),
        ("anpr-source-partition", str(reject.partition).encode()),
        ("anpr-source-offset", str(reject.offset).encode()),
    ]


# --- baseline (b) -------------------------------------------------------------------------------


def drain(args: argparse.Namespace) -> Totals:
    """Poll one message at a time until ``max_messages`` are committed (or idle)."""
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=args.bootstrap))
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    dead_letters = DeadLetters(make_producer(settings), args.dlq)
    progress = ProgressFile(args.progress)
    validator = default_validator()
    with Lake.open(args.lake) as lake:
        writer = PlainLakeWriter(lake, group=args.group, topic=args.topic)
        consumer.subscribe([args.topic])
        batch, batch_started, last_message = writer.batch(validator), 0.0, time.monotonic()
        while writer.totals.consumed + batch.consumed < args.max_messages:
            message = consumer.poll(0.1)
            now = time.monotonic()
            if message is not None and not message.error():
                if not batch.consumed:
                    batch_started = now
                batch.add(message.value(), message.key(), message.partition(), message.offset())
                last_message = now
            elif now - last_message > args.idle_s:
                break
            if batch.consumed and (
                batch.consumed >= args.batch_size or now - batch_started >= args.batch_timeout_s
            ):
                _commit(batch, writer, dead_letters, args.topic, progress)
                batch = writer.batch(validator)
        if batch.consumed:
            _commit(batch, writer, dead_letters, args.topic, progress)
    consumer.close()
    return writer.totals


def _commit(
    batch: PlainBatch,
    writer: PlainLakeWriter,
    dead_letters: DeadLetters,
    topic: str,
    progress: ProgressFile,
) -> None:
    for reject in batch.rejects:
        dead_letters.send(
            value=reject.value,
            key=reject.key,
            reason=reject.reason.value,
            detail=reject.detail,
            source_topic=topic,
            source_partition=reject.partition,
            source_offset=reject.offset,
        )
    dead_letters.flush()
    writer.commit(batch)
    progress.write(**writer.totals.as_dict())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--dlq", required=True)
    parser.add_argument("--group", default="anpr-bench-naive")
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--progress", type=Path, required=True, help="JSON lines, one per commit")
    parser.add_argument("--max-messages", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=IngestSettings().batch_size)
    parser.add_argument("--batch-timeout-s", type=float, default=IngestSettings().batch_timeout_s)
    parser.add_argument("--idle-s", type=float, default=10.0, help="give up after this idle")
    return parser.parse_args(argv)


def main() -> None:
    totals = drain(parse_args())
    print(json.dumps(totals.as_dict()))


if __name__ == "__main__":
    main()
