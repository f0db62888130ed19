"""The ingest loop: poll a batch → decode → drop repeats → DLQ → one lake commit → tell Kafka.

One worker owns some partitions of ``anpr.plate-reads`` (consumer group ``anpr-ingest``).
Kafka's own committed offsets are informative only: on every assignment the worker seeks to
the offsets stored *in the lake*, so the lake alone decides what has been ingested. A new lake
therefore replays the topic from the beginning, which is also how a lake is rebuilt.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from pipeline.codec.batch import BatchDecoded, decode_batch
from pipeline.codec.plate_reads import DecodeLimits, Rejected
from pipeline.config import Settings, months_before
from pipeline.ingest.dedup import DedupWindow
from pipeline.ingest.dlq import DeadLetters
from pipeline.kafka.clients import make_consumer
from pipeline.lake.catalog import Lake, OffsetFenced
from pipeline.metrics import IngestMetrics
from pipeline.reference.countries import COUNTRY_UNKNOWN
from pipeline.reference.passages import Assigned, PassageGrouper
from pipeline.reference.sites import SiteRegistry
from pipeline.schemas import PLATE_READS, UNKNOWN_COUNTRY

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
TABLE = "plate_reads"  # the plate reads' lake table (PlateIngestor.TABLE)
# How long --until-idle waits for a first assignment: a crashed member's session (10 s, see
# pipeline.kafka.clients) must expire and the group rebalance first.
JOIN_GRACE_S = 60.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def retention_cutoff(now: datetime, months: int) -> datetime:
    """Events collected at or before this instant are expired on arrival: the end of the UTC
    day of the latest collection time whose limit has passed. Retention deletes whole days, so
    the nightly run has already deleted that day; a row written into it would stay until the
    next run, past its limit (up to one day early, like retention, never late)."""
    day_after = months_before(now, months).date() + timedelta(days=1)
    return datetime.combine(day_after, datetime.min.time(), UTC) - timedelta(microseconds=1)


@dataclass(frozen=True)
class PartitionMemory:
    """What a worker remembers of one partition between batches."""

    repeats: DedupWindow
    passages: PassageGrouper

    def remember(self, rows: pa.Table, assigned: Assigned) -> None:
        self.repeats.remember(rows["event_id"], rows["captured_at"])
        self.passages.remember(assigned)


@dataclass(frozen=True)
class RunLimits:
    """When a run ends by itself (both None: run until SIGTERM/SIGINT)."""

    until_idle_s: float | None = None
    max_messages: int | None = None


@dataclass
class IngestTotals:
    """What one run did, in messages and reads.

    A vendor payload may carry several reads; the ones beyond the first are ``extra_reads``, so
    consumed + extra_reads = written + rejected + expired + duplicates.
    """

    consumed: int = 0
    extra_reads: int = 0
    written: int = 0
    rejected: int = 0
    expired: int = 0
    duplicates: int = 0
    batches: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    def reconciles(self) -> bool:
        reads = self.consumed + self.extra_reads
        return reads == self.written + self.rejected + self.expired + self.duplicates


Memory = TypeVar("Memory")


@dataclass(frozen=True)
class Prepared:
    """One batch decoded and ready to commit (step 1 of :meth:`LakeIngestor.commit_batch`)."""

    rows: pa.Table
    rejected: Sequence[Rejected]  # by index into the batch
    remember: list[Callable[[], None]]  # to run once the rows are committed
    count: Callable[[float, float], None]  # metrics and totals: (started, committed)


class LakeIngestor(Generic[Memory]):
    """Drain one topic into one lake table exactly once; see :meth:`commit_batch` for the order.

    The machinery every ingest worker shares: subscribe, seek to the lake's offsets on
    assignment, poll batches, dead letters, one lake transaction for rows and offsets, fencing
    after a rebalance, the informative Kafka commit, ``--until-idle`` and a signal-safe stop.
    Subclasses decode (:meth:`_prepare`) and warm their per-partition memory (:meth:`_recall`).
    """

    TABLE: ClassVar[str]

    def __init__(
        self,
        *,
        consumer: Any,
        dead_letters: DeadLetters,
        lake: Lake,
        metrics: IngestMetrics,
        topic: str,
        group: str,
        batch_size: int,
        batch_timeout_s: float,
        clock: Clock = utc_now,
    ) -> None:
        self._consumer = consumer
        self._dlq = dead_letters
        self._lake = lake
        self._metrics = metrics
        self._clock = clock
        self._topic = topic
        self._group = group
        self._batch_size = batch_size
        self._batch_timeout_s = batch_timeout_s
        # Per partition: a key's messages all arrive in one partition, in order, while
        # partitions drain at different speeds; windows keyed on "the newest time seen" are
        # only right within one partition.
        self._memory: dict[int, Memory] = {}
        self._positions: dict[int, int | None] = {}  # partition → next offset the lake holds
        self._stop = threading.Event()
        self._assigned_at: float | None = None
        self.totals = IngestTotals()

    def _recall(self, partition: int) -> Memory:
        """What the lake stored recently from ``partition`` (after a restart or assignment)."""
        raise NotImplementedError

    def _prepare(
        self,
        messages: Sequence[Any],
        partitions: np.ndarray[Any, np.dtype[np.int32]],
        offsets: np.ndarray[Any, np.dtype[np.int64]],
        now: datetime,
    ) -> Prepared:
        """Decode, validate and deduplicate one batch (pure apart from the memory it reads)."""
        raise NotImplementedError

    def _partition_memory(self, partition: int) -> Memory:
        memory = self._memory.get(partition)
        if memory is None:  # not assigned any more (revoked mid-batch): recall it
            memory = self._memory[partition] = self._recall(partition)
        return memory

    # --- control ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the current batch, commit it, and return from :meth:`run` (signal-safe)."""
        self._stop.set()

    def run(
        self,
        limits: RunLimits = RunLimits(),
        *,
        on_batch: Callable[[IngestTotals], None] | None = None,
    ) -> IngestTotals:
        """Consume until stopped, idle for ``until_idle_s``, or ``max_messages`` consumed.

        ``on_batch`` is called with the running totals after every committed batch (progress).
        """
        self._consumer.subscribe(
            [self._topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        batch_size = self._batch_size
        timeout = self._batch_timeout_s
        last_message = started = time.monotonic()
        try:
            while not self._stop.is_set():
                want = batch_size
                if limits.max_messages is not None:
                    want = min(want, limits.max_messages - self.totals.consumed)
                    if want <= 0:
                        break
                messages = self._consumer.consume(num_messages=want, timeout=timeout)
                batch = [m for m in messages if not _is_error(m)]
                if batch:
                    self.commit_batch(batch)
                    if on_batch is not None:
                        on_batch(self.totals)
                    last_message = time.monotonic()
                elif limits.until_idle_s is not None and self._idle_for(
                    last_message, started, limits.until_idle_s
                ):
                    break
        finally:
            self._consumer.close()  # leaves the group; nothing is pending at this point
        return self.totals

    def _idle_for(self, last_message: float, started: float, until_idle_s: float) -> bool:
        """True once nothing has arrived for ``until_idle_s`` while holding partitions.

        Waiting to join the group is not idleness: after a crash, the dead member holds its
        partitions until its session times out, and leaving then would skip the backlog.
        A worker that gets no partitions at all (more workers than partitions) gives up after
        the join grace period.
        """
        now = time.monotonic()
        if self._assigned_at is None:
            if now - started >= until_idle_s + JOIN_GRACE_S:
                logger.warning("no partitions assigned within %.0f s: nothing to do", now - started)
                return True
            return False
        return now - max(last_message, self._assigned_at) >= until_idle_s

    # --- Kafka callbacks -------------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        stored = self._lake.stored_offsets(self._group, self._topic)
        for tp in partitions:
            position = stored.get(tp.partition)
            self._positions[tp.partition] = position
            tp.offset = position if position is not None else OFFSET_BEGINNING
        consumer.assign(partitions)
        for tp in partitions:
            self._memory[tp.partition] = self._recall(tp.partition)
        self._assigned_at = time.monotonic()
        logger.info(
            "assigned %s: resuming at %s (from the lake)",
            self._topic,
            {tp.partition: self._positions[tp.partition] for tp in partitions},
        )

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        # Every consumed batch is committed before the next consume(), so nothing is pending.
        for tp in partitions:
            self._positions.pop(tp.partition, None)
            self._memory.pop(tp.partition, None)
        logger.info("revoked %s partitions %s", self._topic, [tp.partition for tp in partitions])

    # --- one batch -------------------------------------------------------------------------

    def commit_batch(self, messages: Sequence[Any]) -> None:
        """Store one polled batch exactly once.

        Commit order (why this is exactly-once):

        1. Decode and validate the whole batch; drop events already in the dedup window
           (plate reads are also grouped into passages) (:meth:`_prepare`).
        2. Produce every rejected message to the DLQ and wait for the broker's acks. A crash
           after this step replays the batch: DLQ records may repeat (at least once), rows not.
        3. In ONE lake transaction, insert the rows and set each partition's stored offset to
           one past the batch's last offset, on condition that the stored offset is still the
           one this worker started from (compare-and-set). Either both land or neither does.
           If another worker moved it (a rebalance fenced us out), nothing is written: the
           batch is dropped, and the new owner replays it from the lake's offsets.
        4. Only now remember the stored rows (dedup windows, passages), and update metrics.
        5. Tell Kafka the same offsets, asynchronously, for lag monitoring only. Losing this
           commit is harmless: on assignment, workers seek to the lake's offsets (step 3).
        """
        started = time.monotonic()
        now = self._clock()
        partitions = np.fromiter((m.partition() for m in messages), np.int32, len(messages))
        offsets = np.fromiter((m.offset() for m in messages), np.int64, len(messages))

        # 1. decode, validate, deduplicate
        prepared = self._prepare(messages, partitions, offsets, now)

        # 2. dead letters, acknowledged before the offsets move past them
        self._send_dead_letters(prepared.rejected, messages, partitions, offsets)

        # 3. rows and offsets in one lake transaction
        next_offsets = _next_offsets(partitions, offsets)
        expected = {p: self._positions.get(p) for p in next_offsets}
        try:
            retries = self._lake.write_batch(
                self.TABLE,
                prepared.rows,
                consumer_group=self._group,
                topic=self._topic,
                next_offsets=next_offsets,
                expected=expected,
            )
        except OffsetFenced:
            logger.warning(
                "lake offsets for %s moved under us (rebalance): batch of %d dropped, "
                "the partition's new owner replays it",
                self._topic,
                len(messages),
            )
            self._metrics.fenced_batches.inc()
            self._seek_to_lake(next_offsets)
            return
        self._positions.update(next_offsets)
        self._metrics.commit_retries.inc(retries)
        committed = time.time()

        # 4. remember and count
        for step in prepared.remember:
            step()
        prepared.count(started, committed)

        # 5. informative Kafka commit (lag monitoring)
        self._commit_to_kafka(next_offsets)

    def _send_dead_letters(
        self,
        rejected: Sequence[Rejected],
        messages: Sequence[Any],
        partitions: np.ndarray[Any, np.dtype[np.int32]],
        offsets: np.ndarray[Any, np.dtype[np.int64]],
    ) -> None:
        if not rejected:
            return
        for reject in rejected:
            message = messages[reject.index]
            self._dlq.send(
                value=message.value(),
                key=message.key(),
                reason=reject.reason.value,
                detail=reject.detail,
                source_topic=self._topic,
                source_partition=int(partitions[reject.index]),
                source_offset=int(offsets[reject.index]),
            )
        self._dlq.flush()

    def _commit_to_kafka(self, next_offsets: dict[int, int]) -> None:
        tps = [TopicPartition(self._topic, p, o) for p, o in next_offsets.items()]
        try:
            self._consumer.commit(offsets=tps, asynchronous=True)
        except KafkaException as exc:  # informative only: the lake holds the truth
            logger.debug("kafka offset commit skipped: %s", exc)
        for tp in tps:
            try:
                _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high >= 0:
                self._metrics.lag.labels(topic=self._topic, partition=str(tp.partition)).set(
                    max(0, high - tp.offset)
                )

    def _seek_to_lake(self, partitions: dict[int, int]) -> None:
        """After being fenced, re-read the lake's offsets and continue from there (if owned)."""
        stored = self._lake.stored_offsets(self._group, self._topic)
        for partition in partitions:
            position = stored.get(partition)
            self._positions[partition] = position
            offset = position if position is not None else OFFSET_BEGINNING
            try:
                self._consumer.seek(TopicPartition(self._topic, partition, offset))
            except KafkaException:
                # Not ours any more: the revoke callback will forget it.
                self._positions.pop(partition, None)


class PlateIngestor(LakeIngestor[PartitionMemory]):
    """Drain plate reads from Kafka into ``plate_reads``; see :meth:`commit_batch`."""

    TABLE = TABLE

    def __init__(
        self,
        settings: Settings,
        *,
        consumer: Any,
        dead_letters: DeadLetters,
        lake: Lake,
        registry: SiteRegistry,
        metrics: IngestMetrics,
        clock: Clock = utc_now,
    ) -> None:
        super().__init__(
            consumer=consumer,
            dead_letters=dead_letters,
            lake=lake,
            metrics=metrics,
            topic=settings.topics.plate_reads,
            group=settings.ingest.consumer_group,
            batch_size=settings.ingest.batch_size,
            batch_timeout_s=settings.ingest.batch_timeout_s,
            clock=clock,
        )
        self._settings = settings
        self._registry = registry
        self._limits = DecodeLimits(
            max_message_bytes=settings.ingest.max_message_bytes,
            future_tolerance=timedelta(seconds=settings.ingest.future_tolerance_s),
        )
        self._dedup_window = timedelta(hours=settings.ingest.dedup_window_h)
        self._passage_window = timedelta(seconds=settings.ingest.passage_window_s)

    @classmethod
    def connect(
        cls,
        settings: Settings,
        *,
        lake: Lake,
        registry: SiteRegistry,
        metrics: IngestMetrics,
        clock: Clock = utc_now,
    ) -> PlateIngestor:
        """A worker on the configured cluster: its consumer group and dead-letter producer."""
        return cls(
            settings,
            consumer=make_consumer(settings, settings.ingest.consumer_group),
            dead_letters=DeadLetters.create(settings),
            lake=lake,
            registry=registry,
            metrics=metrics,
            clock=clock,
        )

    def _recall(self, partition: int) -> PartitionMemory:
        """What the lake stored recently from ``partition``, so repeats after a restart still
        drop and passages continue with the same ids as before it."""
        recent = self._lake.recent_rows(
            self.TABLE,
            ["event_id", "captured_at", "site_id", "direction", "plate", "passage_id"],
            self._dedup_window,
            source_partition=partition,
        )
        memory = PartitionMemory(
            DedupWindow(self._dedup_window), PassageGrouper(self._passage_window)
        )
        memory.repeats.remember(recent["event_id"], recent["captured_at"])
        with_passage = recent.filter(pc.is_valid(recent["passage_id"]))
        memory.passages.remember(Assigned.from_rows(with_passage))
        return memory

    def _prepare(
        self,
        messages: Sequence[Any],
        partitions: np.ndarray[Any, np.dtype[np.int32]],
        offsets: np.ndarray[Any, np.dtype[np.int64]],
        now: datetime,
    ) -> Prepared:
        values = [m.value() for m in messages]
        content_types = [_content_type(m.headers()) for m in messages]
        batch = decode_batch(
            values,
            content_types,
            registry=self._registry,
            now=now,
            retention_cutoff=retention_cutoff(now, self._settings.retention.months),
            limits=self._limits,
            vendor_max_bytes=self._settings.ingest.vendor_max_message_bytes,
        )
        result = batch.result
        kept, passage_ids, remember = self._repeats_and_passages(result.table, partitions)
        rows = self._lake_rows(kept, passage_ids, partitions, offsets, now)
        duplicates = len(result.table) - len(kept)
        return Prepared(
            rows,
            result.rejected,
            remember,
            functools.partial(self._count, batch, rows, duplicates),
        )

    def _repeats_and_passages(
        self, decoded: pa.Table, partitions: np.ndarray[Any, np.dtype[np.int32]]
    ) -> tuple[pa.Table, pa.Array, list[Callable[[], None]]]:
        """Drop repeats and assign passages, partition by partition.

        Returns the kept rows, their passage ids, and the steps that remember them: to run only
        once the rows are committed, so a failed commit leaves the memory as it was.
        """
        row_partitions = partitions[decoded["msg_index"].to_numpy()]
        pieces: list[pa.Table] = []
        ids: list[pa.Array] = []
        remember: list[Callable[[], None]] = []
        for partition in np.unique(row_partitions):
            memory = self._partition_memory(int(partition))
            rows = decoded.take(np.flatnonzero(row_partitions == partition))
            kept = rows.filter(memory.repeats.filter_new(rows["event_id"], rows["captured_at"]))
            assigned = memory.passages.assign(kept)
            pieces.append(kept)
            ids.append(assigned.ids)
            remember.append(functools.partial(memory.remember, kept, assigned))
        if not pieces:
            return decoded, pa.array([], pa.int64()), remember
        return pa.concat_tables(pieces), pa.concat_arrays(ids), remember

    def _lake_rows(
        self,
        decoded: pa.Table,
        passage_ids: pa.Array,
        partitions: np.ndarray[Any, np.dtype[np.int32]],
        offsets: np.ndarray[Any, np.dtype[np.int64]],
        now: datetime,
    ) -> pa.Table:
        extra = {"passage_id": passage_ids}
        if "candidates" not in decoded.column_names:
            extra["candidates"] = pa.nulls(len(decoded), PLATE_READS.field("candidates").type)
        return lake_rows(decoded, PLATE_READS, extra, partitions, offsets, now)

    def _count(
        self,
        batch: BatchDecoded,
        rows: pa.Table,
        duplicates: int,
        started: float,
        committed: float,
    ) -> None:
        m, t, result = self._metrics, self.totals, batch.result
        for fmt, n in collections.Counter(batch.formats).items():
            m.consumed.labels(topic=self._topic, format=fmt).inc(n)
        for fmt, n in batch.extra_by_format.items():
            m.extra_reads.labels(format=fmt).inc(n)
        for (fmt, quirk), n in batch.quirks.items():
            m.vendor_quirks.labels(format=fmt, quirk=quirk).inc(n)
        unknown = rows.filter(pc.equal(rows["plate_country"], UNKNOWN_COUNTRY))
        for fmt, n in collections.Counter(unknown["source_format"].to_pylist()).items():
            m.vendor_quirks.labels(format=fmt, quirk=COUNTRY_UNKNOWN).inc(n)
        m.rows_written.labels(table=self.TABLE).inc(len(rows))
        for reject in result.rejected:
            m.rejected.labels(reason=reject.reason.value, format=batch.formats[reject.index]).inc()
            t.rejected_by_reason[reject.reason.value] = (
                t.rejected_by_reason.get(reject.reason.value, 0) + 1
            )
        m.expired.labels(topic=self._topic).inc(len(result.expired))
        m.duplicates.inc(duplicates)
        m.batch_duration.observe(time.monotonic() - started)
        if len(rows):
            captured_s = pc.cast(rows["captured_at"], pa.int64()).to_numpy() / 1e6
            m.freshness.observe_many(committed - captured_s)
        m.last_commit.set(committed)
        t.consumed += len(batch.formats)
        t.extra_reads += batch.extra_reads
        t.written += len(rows)
        t.rejected += len(result.rejected)
        t.expired += len(result.expired)
        t.duplicates += duplicates
        t.batches += 1


def _content_type(headers: list[tuple[str, bytes | None]] | None) -> str | None:
    for name, value in headers or ():
        if name.lower() == "content-type" and value is not None:
            return value.decode("latin-1")
    return None


def _is_error(message: Any) -> bool:
    error = message.error()
    if error is None:
        return False
    logger.warning("kafka consume error: %s", error)
    return True


def _next_offsets(
    partitions: np.ndarray[Any, np.dtype[np.int32]], offsets: np.ndarray[Any, np.dtype[np.int64]]
) -> dict[int, int]:
    """One past the highest offset consumed per partition."""
    result: dict[int, int] = {}
    for partition in np.unique(partitions):
        result[int(partition)] = int(offsets[partitions == partition].max()) + 1
    return result


def lake_rows(
    decoded: pa.Table,
    schema: pa.Schema,
    extra: Mapping[str, pa.Array],
    partitions: np.ndarray[Any, np.dtype[np.int32]],
    offsets: np.ndarray[Any, np.dtype[np.int64]],
    now: datetime,
) -> pa.Table:
    """A table's rows: decoded columns, ``extra`` ones, and where and when each was taken
    (``ingested_at``, ``source_partition``/``source_offset`` of its message, by ``msg_index``)."""
    index = decoded["msg_index"].to_numpy()
    columns = {name: decoded[name] for name in decoded.column_names if name != "msg_index"}
    columns.update(extra)
    columns["ingested_at"] = pa.array(
        np.full(len(index), int(now.timestamp() * 1_000_000), dtype=np.int64)
    ).cast(schema.field("ingested_at").type)
    columns["source_partition"] = pa.array(partitions[index], pa.int32())
    columns["source_offset"] = pa.array(offsets[index], pa.int64())
    return pa.Table.from_pydict(columns, schema=schema)
