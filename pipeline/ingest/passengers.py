"""``anpr ingest passengers``: passenger and crew lists from Kafka into the ``passengers`` table.

The same machinery as plate reads (:class:`pipeline.ingest.worker.LakeIngestor`: one lake
transaction for rows and offsets, DLQ with reasons, fencing, ``--until-idle``); decoding is
:mod:`pipeline.codec.passenger_lists`. Collection time is the Kafka message timestamp: when the
list reached Kafka. A list sent again (an amended manifest) repeats its people: each
``person_id`` is stored once within ``passengers.dedup_window_h``, also across restarts.

Totals: a message is one list; ``extra_reads`` counts the people beyond the first of each
accepted list, so consumed + extra_reads = written + rejected + expired + duplicates.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import pyarrow as pa
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

from pipeline.codec.passenger_lists import PassengerLimits, decode_passenger_lists
from pipeline.config import Settings
from pipeline.ingest.dedup import DedupWindow
from pipeline.ingest.worker import Decoded, Feed
from pipeline.lake.catalog import Lake
from pipeline.metrics import IngestMetrics
from pipeline.retention import expired_on_arrival
from pipeline.schemas import PASSENGERS


class PassengerDecoder:
    """Passenger lists for :class:`LakeIngestor`: decode, drop people already stored."""

    table = "passengers"
    schema = PASSENGERS
    collected_column = "collected_at"
    unique_column: str | None = None  # repeats are per departure: the partition memory

    def __init__(self, settings: Settings) -> None:
        p = settings.passengers
        self.feed = Feed(settings.topics.passengers, p.consumer_group, p.batch_size,
                         p.batch_timeout_s)  # fmt: skip
        self._months = settings.retention.months_for(self.table)
        self._limits = PassengerLimits(p.max_message_bytes, p.kept_fields)
        self._window = timedelta(hours=p.dedup_window_h)

    def decode(self, messages: Sequence[Message], now: datetime) -> Decoded:
        now_ms = int(now.timestamp() * 1000)
        batch = decode_passenger_lists(
            [m.value() for m in messages],
            [_timestamp_ms(m, now_ms) for m in messages],
            retention_cutoff=expired_on_arrival(now, self._months),
            limits=self._limits,
        )
        accepted = len(set(batch.table["msg_index"].to_pylist()))
        return Decoded(
            batch.table,
            batch.rejected,
            len(batch.expired),
            batch.formats,
            len(batch.table) - accepted,
        )

    def recall(self, lake: Lake, partition: int) -> DedupWindow:
        recent = lake.recent_rows(
            self.table, ["person_id", "collected_at"], self._window, source_partition=partition
        )
        window = DedupWindow(self._window)
        # Keyed on when each list reached Kafka (the clock the lake recalls by): a departure
        # time, sent by the operator, could be far off and evict every key at once.
        window.remember(recent["person_id"], recent["collected_at"])
        return window

    def keep(self, memory: DedupWindow, rows: pa.Table) -> tuple[pa.Table, Callable[[], None]]:
        kept = rows.filter(memory.filter_new(rows["person_id"], rows["collected_at"]))
        return kept, functools.partial(memory.remember, kept["person_id"], kept["collected_at"])

    def complete(self, rows: pa.Table) -> dict[str, pa.Array]:
        return {}

    def count(self, metrics: IngestMetrics, rows: pa.Table) -> None:
        """People written, by list format and role (passenger or crew)."""
        if len(rows):
            pairs = zip(rows["source_format"].to_pylist(), rows["role"].to_pylist(), strict=True)
            for (fmt, role), n in collections.Counter(pairs).items():
                metrics.people_written.labels(format=fmt, role=role).inc(n)


def _timestamp_ms(message: Message, now_ms: int) -> int:
    kind, stamp = message.timestamp()
    # Every broker since 0.10 stamps messages; "not available" only from very old producers.
    # A producer's clock may run ahead: a list cannot have reached Kafka after we read it, and a
    # collection time in the future would put its rows in a day retention reaches too late.
    return min(int(stamp), now_ms) if kind != TIMESTAMP_NOT_AVAILABLE else now_ms
