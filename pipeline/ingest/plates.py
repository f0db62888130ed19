"""``anpr ingest plates``: plate reads from Kafka into the ``plate_reads`` table.

The generic loop is :class:`pipeline.ingest.worker.LakeIngestor`; this module decodes
(:mod:`pipeline.codec.batch`: canonical and vendor payloads), drops repeated event ids and
groups reads into passages, per partition.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Message

from pipeline.codec.batch import decode_batch
from pipeline.codec.plate_reads import DecodeLimits
from pipeline.config import Settings
from pipeline.ingest.worker import Decoded, Feed
from pipeline.lake.catalog import Lake
from pipeline.metrics import IngestMetrics
from pipeline.reference.countries import COUNTRY_UNKNOWN
from pipeline.reference.passages import Assigned, PassageGrouper
from pipeline.reference.sites import SiteRegistry
from pipeline.retention import expired_on_arrival
from pipeline.schemas import PLATE_READS, UNKNOWN_COUNTRY

_Headers = dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None
TABLE = "plate_reads"  # the plate reads' lake table (PlateDecoder.table)


@dataclass(frozen=True)
class PartitionMemory:
    """What a worker remembers of one partition between batches: its open passages.

    Repeats are not remembered here: the worker's own id window (``unique_column``) holds every
    id it stored from any partition, and a second window per partition only doubled the memory.
    """

    passages: PassageGrouper


class PlateDecoder:
    """Plate reads for :class:`LakeIngestor`: decode and assign passages (the worker drops
    repeated event ids, :attr:`unique_column`)."""

    table = TABLE
    schema = PLATE_READS
    collected_column = "captured_at"
    unique_column: str | None = "event_id"

    def __init__(self, settings: Settings, registry: SiteRegistry) -> None:
        i = settings.ingest
        self.feed = Feed(settings.topics.plate_reads, i.consumer_group, i.batch_size,
                         i.batch_timeout_s, i.batch_max_bytes,
                         timedelta(hours=i.dedup_window_h))  # fmt: skip
        self._settings = settings
        self._registry = registry
        self._limits = DecodeLimits(
            max_message_bytes=i.max_message_bytes,
            future_tolerance=timedelta(seconds=i.future_tolerance_s),
        )
        self._dedup_window = timedelta(hours=i.dedup_window_h)
        self._passage_window = timedelta(seconds=i.passage_window_s)

    def decode(self, messages: Sequence[Message], now: datetime) -> Decoded:
        batch = decode_batch(
            [m.value() for m in messages],
            [_content_type(m.headers()) for m in messages],
            registry=self._registry,
            now=now,
            retention_cutoff=expired_on_arrival(now, self._settings.retention.months),
            limits=self._limits,
            vendor_max_bytes=self._settings.ingest.vendor_max_message_bytes,
        )
        result = batch.result
        return Decoded(
            result.table,
            result.rejected,
            len(result.expired),
            batch.formats,
            batch.extra_reads,
            batch.extra_by_format,
            batch.quirks,
        )

    def recall(self, lake: Lake, partition: int) -> PartitionMemory:
        """What the lake stored recently from ``partition``, so passages continue after a
        restart with the same ids as before it."""
        recent = lake.recent_rows(
            self.table,
            ["captured_at", "site_id", "direction", "plate", "passage_id"],
            self._dedup_window,
            source_partition=partition,
        )
        memory = PartitionMemory(PassageGrouper(self._passage_window))
        with_passage = recent.filter(pc.is_valid(recent["passage_id"]))
        memory.passages.remember(Assigned.from_rows(with_passage))
        return memory

    def keep(self, memory: PartitionMemory, rows: pa.Table) -> tuple[pa.Table, Callable[[], None]]:
        """The reads, each with its ``passage_id`` (repeats are already dropped)."""
        assigned = memory.passages.assign(rows)
        step = functools.partial(memory.passages.remember, assigned)
        return rows.append_column("passage_id", assigned.ids), step

    def complete(self, rows: pa.Table) -> dict[str, pa.Array]:
        extra: dict[str, pa.Array] = {}
        if "passage_id" not in rows.column_names:  # no rows in the batch
            extra["passage_id"] = pa.array([], pa.int64())
        if "candidates" not in rows.column_names:
            extra["candidates"] = pa.nulls(len(rows), PLATE_READS.field("candidates").type)
        return extra

    def count(self, metrics: IngestMetrics, rows: pa.Table) -> None:
        """Reads stored with an unknown country, as a vendor quirk of their format."""
        unknown = rows.filter(pc.equal(rows["plate_country"], UNKNOWN_COUNTRY))
        for fmt, n in collections.Counter(unknown["source_format"].to_pylist()).items():
            metrics.vendor_quirks.labels(format=fmt, quirk=COUNTRY_UNKNOWN).inc(n)


def _content_type(headers: _Headers) -> str | None:
    # A consumed message's headers are a list of (name, bytes) pairs; the type allows more.
    pairs = headers.items() if isinstance(headers, dict) else headers or ()
    for name, value in pairs:
        if name.lower() == "content-type" and value is not None:
            return value.decode("latin-1") if isinstance(value, bytes) else value
    return None
