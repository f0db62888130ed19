"""``anpr ingest passengers``: passenger and crew lists from Kafka into the ``passengers`` table.

The same machinery as plate reads (:class:`pipeline.ingest.worker.LakeIngestor`: one lake
transaction for rows and offsets, DLQ with reasons, fencing, ``--until-idle``); decoding is
:mod:`pipeline.codec.passenger_lists`. Collection time is the Kafka message timestamp: when the
list reached Kafka. A list sent again (an amended manifest) repeats its people: each
``person_id`` is stored once within ``passengers.dedup_window_h``, also across restarts.
"""

from __future__ import annotations

import collections
import functools
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE

from pipeline.codec.passenger_lists import PassengerBatch, PassengerLimits, decode_passenger_lists
from pipeline.config import Settings
from pipeline.ingest.dedup import DedupWindow
from pipeline.ingest.dlq import DeadLetters
from pipeline.ingest.worker import (
    Clock,
    LakeIngestor,
    Prepared,
    lake_rows,
    utc_now,
)
from pipeline.kafka.clients import make_consumer
from pipeline.lake.catalog import Lake
from pipeline.metrics import IngestMetrics
from pipeline.retention import expired_on_arrival
from pipeline.schemas import PASSENGERS


class PassengerIngestor(LakeIngestor[DedupWindow]):
    """Drain ``anpr.passengers`` into ``passengers``; see :meth:`LakeIngestor.commit_batch`.

    Totals: a message is one list; ``extra_reads`` counts the people beyond the first of each
    accepted list, so consumed + extra_reads = written + rejected + expired + duplicates.
    """

    TABLE = "passengers"

    def __init__(
        self,
        settings: Settings,
        *,
        consumer: Any,
        dead_letters: DeadLetters,
        lake: Lake,
        metrics: IngestMetrics,
        clock: Clock = utc_now,
    ) -> None:
        p = settings.passengers
        super().__init__(
            consumer=consumer,
            dead_letters=dead_letters,
            lake=lake,
            metrics=metrics,
            topic=settings.topics.passengers,
            group=p.consumer_group,
            batch_size=p.batch_size,
            batch_timeout_s=p.batch_timeout_s,
            clock=clock,
        )
        self._months = settings.retention.months_for(self.TABLE)
        self._limits = PassengerLimits(p.max_message_bytes, p.kept_fields)
        self._window = timedelta(hours=p.dedup_window_h)

    @classmethod
    def connect(
        cls, settings: Settings, *, lake: Lake, metrics: IngestMetrics, clock: Clock = utc_now
    ) -> PassengerIngestor:
        """A worker on the configured cluster: its consumer group and dead-letter producer."""
        return cls(
            settings,
            consumer=make_consumer(settings, settings.passengers.consumer_group),
            dead_letters=DeadLetters.create(settings),
            lake=lake,
            metrics=metrics,
            clock=clock,
        )

    def _recall(self, partition: int) -> DedupWindow:
        recent = self._lake.recent_rows(
            self.TABLE, ["person_id", "collected_at"], self._window, source_partition=partition
        )
        window = DedupWindow(self._window)
        # Keyed on when each list reached Kafka (the clock the lake recalls by): a departure
        # time, sent by the operator, could be far off and evict every key at once.
        window.remember(recent["person_id"], recent["collected_at"])
        return window

    def _prepare(
        self,
        messages: Sequence[Any],
        partitions: np.ndarray[Any, np.dtype[np.int32]],
        offsets: np.ndarray[Any, np.dtype[np.int64]],
        now: datetime,
    ) -> Prepared:
        now_ms = int(now.timestamp() * 1000)
        stamps = [_timestamp_ms(m, now_ms) for m in messages]
        batch = decode_passenger_lists(
            [m.value() for m in messages],
            stamps,
            retention_cutoff=expired_on_arrival(now, self._months),
            limits=self._limits,
        )
        decoded = batch.table
        row_partitions = partitions[decoded["msg_index"].to_numpy()]
        pieces: list[pa.Table] = []
        remember: list[Callable[[], None]] = []
        for partition in np.unique(row_partitions):
            window = self._partition_memory(int(partition))
            rows = decoded.take(np.flatnonzero(row_partitions == partition))
            kept = rows.filter(window.filter_new(rows["person_id"], rows["collected_at"]))
            pieces.append(kept)
            remember.append(
                functools.partial(window.remember, kept["person_id"], kept["collected_at"])
            )
        kept_rows = pa.concat_tables(pieces) if pieces else decoded
        rows = lake_rows(kept_rows, PASSENGERS, {}, partitions, offsets, now)
        duplicates = len(decoded) - len(kept_rows)
        return Prepared(
            rows, batch.rejected, remember, functools.partial(self._count, batch, rows, duplicates)
        )

    def _count(
        self,
        batch: PassengerBatch,
        rows: pa.Table,
        duplicates: int,
        started: float,
        committed: float,
    ) -> None:
        m, t = self._metrics, self.totals
        for fmt, n in collections.Counter(batch.formats).items():
            m.consumed.labels(topic=self._topic, format=fmt).inc(n)
        m.rows_written.labels(table=self.TABLE).inc(len(rows))
        if len(rows):
            pairs = zip(rows["source_format"].to_pylist(), rows["role"].to_pylist(), strict=True)
            for (fmt, role), n in collections.Counter(pairs).items():
                m.people_written.labels(format=fmt, role=role).inc(n)
            collected_s = pc.cast(rows["collected_at"], pa.int64()).to_numpy() / 1e6
            m.freshness.observe_many(committed - collected_s)
        for reject in batch.rejected:
            reason = reject.reason.value
            m.rejected.labels(reason=reason, format=batch.formats[reject.index]).inc()
            t.rejected_by_reason[reason] = t.rejected_by_reason.get(reason, 0) + 1
        m.expired.labels(topic=self._topic).inc(len(batch.expired))
        m.duplicates.inc(duplicates)
        m.batch_duration.observe(time.monotonic() - started)
        m.last_commit.set(committed)
        accepted = len(set(batch.table["msg_index"].to_pylist()))
        t.consumed += len(batch.formats)
        t.extra_reads += len(batch.table) - accepted
        t.written += len(rows)
        t.rejected += len(batch.rejected)
        t.expired += len(batch.expired)
        t.duplicates += duplicates
        t.batches += 1


def _timestamp_ms(message: Any, now_ms: int) -> int:
    kind, stamp = message.timestamp()
    # Every broker since 0.10 stamps messages; "not available" only from very old producers.
    # A producer's clock may run ahead: a list cannot have reached Kafka after we read it, and a
    # collection time in the future would put its rows in a day retention reaches too late.
    return min(int(stamp), now_ms) if kind != TIMESTAMP_NOT_AVAILABLE else now_ms
