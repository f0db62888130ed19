"""The ingest loop: poll a batch → decode → drop repeats → DLQ → one lake commit → tell Kafka.

:class:`LakeIngestor` is the machinery every feed shares; a :class:`Decoder` is what differs
per feed (plate reads: :mod:`pipeline.ingest.plates`, passenger lists:
:mod:`pipeline.ingest.passengers`). One worker owns some partitions of its topic. Kafka's own
committed offsets are informative only: on every assignment the worker seeks to the offsets
stored *in the lake*, so the lake alone decides what has been ingested. A new lake therefore
replays the topic from the beginning, which is also how a lake is rebuilt.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, Protocol, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import OFFSET_BEGINNING, KafkaException, Message, TopicPartition

from pipeline.codec.plate_reads import Rejected
from pipeline.config import Settings
from pipeline.erasure import ErasureLedger
from pipeline.ingest.dedup import DedupWindow, WindowKeys
from pipeline.ingest.dlq import DeadLetters
from pipeline.kafka.clients import make_consumer
from pipeline.lake.catalog import Lake, OffsetFenced, UniqueIds
from pipeline.lake.tables import LAKE_TABLES
from pipeline.metrics import IngestMetrics

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# How long --until-idle waits for a first assignment: a crashed member's session (10 s, see
# pipeline.kafka.clients) must expire and the group rebalance first.
JOIN_GRACE_S = 60.0
# A batch is polled in chunks of this many messages, each waiting at most _FOLLOW_UP_S for
# what the consumer fetches meanwhile (see LakeIngestor._poll).
_CHUNK = 10_000
_FOLLOW_UP_S = 0.05


def utc_now() -> datetime:
    return datetime.now(UTC)


RebalanceCallback = Callable[[Any, list[TopicPartition]], None]


class KafkaConsumer(Protocol):
    """The calls the worker makes on its consumer (``confluent_kafka.Consumer`` has them)."""

    def subscribe(
        self,
        topics: list[str],
        on_assign: RebalanceCallback | None = ...,
        on_revoke: RebalanceCallback | None = ...,
    ) -> None: ...

    def consume(self, num_messages: int = ..., timeout: float = ...) -> list[Message]: ...

    def assign(self, partitions: list[TopicPartition]) -> None: ...

    def seek(self, partition: TopicPartition) -> None: ...

    def commit(self, *, offsets: list[TopicPartition], asynchronous: Literal[True]) -> None: ...

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = ..., cached: bool = ...
    ) -> tuple[int, int]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Feed:
    """Where a worker reads from and how much at a time."""

    topic: str
    group: str
    batch_size: int  # messages per batch, at most
    batch_timeout_s: float  # seconds from a batch's first poll, at most
    batch_max_bytes: int = 32 * 1024 * 1024  # message value bytes per batch, at most
    dedup_window: timedelta = timedelta(hours=24)  # repeats of a stored id are dropped within


@dataclass(frozen=True)
class Decoded:
    """One batch as a :class:`Decoder` decoded it, before repeats are dropped."""

    table: pa.Table  # accepted rows; msg_index is each row's message in the batch
    rejected: Sequence[Rejected]  # by index into the batch
    expired: int  # reads (or people) already past retention: counted, never stored
    formats: Sequence[str]  # the detected format of every message
    extra_reads: int  # rows beyond the first of each accepted message
    extra_by_format: Mapping[str, int] = field(default_factory=dict)  # extra_reads, by format
    # Oddities of the input that were accepted and counted, by (format, quirk).
    quirks: Mapping[tuple[str, str], int] = field(default_factory=dict)


Memory = TypeVar("Memory")


class Decoder(Protocol[Memory]):
    """What one feed adds to :class:`LakeIngestor`: its table, decoding and memory.

    ``Memory`` is what the worker keeps per partition between batches (a dedup window, and
    for plate reads the open passages).
    """

    feed: Feed
    table: str  # the lake table
    schema: pa.Schema  # its rows
    collected_column: str  # a row's collection time (freshness is measured from it)
    # A column no two rows may share within the dedup window, whichever partition they came
    # from (plate reads: event_id); None: repeats are only dropped within a partition.
    unique_column: str | None

    def decode(self, messages: Sequence[Message], now: datetime) -> Decoded:
        """Decode and validate one batch (pure)."""
        ...

    def recall(self, lake: Lake, partition: int) -> Memory:
        """What the lake stored recently from ``partition`` (after a restart or assignment)."""
        ...

    def keep(self, memory: Memory, rows: pa.Table) -> tuple[pa.Table, Callable[[], None]]:
        """The rows of one partition not yet stored, with any columns the feed adds, and the
        step that remembers them (run only once they are committed)."""
        ...

    def complete(self, rows: pa.Table) -> dict[str, pa.Array]:
        """Schema columns that ``rows`` lacks, to add (e.g. nulls for an optional column)."""
        ...

    def count(self, metrics: IngestMetrics, rows: pa.Table) -> None:
        """Feed-specific metrics of the rows just committed."""
        ...


@dataclass(frozen=True)
class RunLimits:
    """When a run ends by itself (both None: run until SIGTERM/SIGINT)."""

    until_idle_s: float | None = None
    max_messages: int | None = None


@dataclass
class IngestTotals:
    """What one run did, in messages and reads.

    A vendor payload may carry several reads, a passenger list several people; the ones beyond
    the first are ``extra_reads``, so consumed + extra_reads = written + rejected + expired +
    duplicates + erased.
    """

    consumed: int = 0
    extra_reads: int = 0
    written: int = 0
    rejected: int = 0
    expired: int = 0
    duplicates: int = 0
    erased: int = 0  # rows of plates in the erasure ledger, dropped
    batches: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    def reconciles(self) -> bool:
        reads = self.consumed + self.extra_reads
        dropped = self.expired + self.duplicates + self.erased
        return reads == self.written + self.rejected + dropped


@dataclass(frozen=True)
class Polled:
    """One batch decoded on the polling thread (step 1 of :meth:`LakeIngestor.commit_batch`).

    Only the rejected messages are kept (for the DLQ): with one batch written while the next
    is decoded, holding whole batches of messages doubled the RSS.
    """

    rejected: list[tuple[Rejected, Message]]
    partitions: np.ndarray[Any, np.dtype[np.int32]]
    offsets: np.ndarray[Any, np.dtype[np.int64]]
    started: float  # monotonic time the batch's processing began
    now: datetime  # the clock the batch was decoded at (its ingested_at)
    decoded: Decoded
    table: pa.Table  # decoded.table without the rows of erased plates
    erased: int  # rows dropped because their plate was erased


@dataclass(frozen=True)
class Prepared:
    """One batch decoded, repeats dropped, ready to commit (step 2 of
    :meth:`LakeIngestor.commit_batch`)."""

    rejected: list[tuple[Rejected, Message]]
    partitions: np.ndarray[Any, np.dtype[np.int32]]
    offsets: np.ndarray[Any, np.dtype[np.int64]]
    started: float  # monotonic time the batch's processing began
    decoded: Decoded  # its table emptied: counts only
    rows: pa.Table  # the lake rows to write
    duplicates: int  # rows dropped as already stored
    remember: list[Callable[[], None]]  # per-partition memory, run once committed
    ids_since: int | None = None  # other workers' inserts up to here are in the id window
    erased: int = 0  # rows dropped because their plate was erased

    @property
    def next_offsets(self) -> dict[int, int]:
        return _next_offsets(self.partitions, self.offsets)


@dataclass
class Written:
    """The outcome of writing one :class:`Prepared` batch (steps 2-4 of commit_batch)."""

    prepared: Prepared
    next_offsets: dict[int, int]
    fenced: bool = False
    retries: int = 0
    committed: float = 0.0  # Unix time of the lake commit
    stored_elsewhere: int = 0  # rows dropped at commit: another worker stored their ids
    others: pa.Table | None = None  # the ids other workers stored since ids_since
    snapshot: int | None = None  # the lake snapshot the commit was based on


class LakeIngestor(Generic[Memory]):
    """Drain one topic into one lake table exactly once; see :meth:`commit_batch` for the order.

    The machinery every ingest worker shares: subscribe, seek to the lake's offsets on
    assignment, poll batches, dead letters, dropping repeats partition by partition, one lake
    transaction for rows and offsets, fencing after a rebalance, counting, the informative
    Kafka commit, ``--until-idle`` and a signal-safe stop. The ``decoder`` decodes, recalls and
    keeps a partition's memory, and names the table.
    """

    def __init__(
        self,
        decoder: Decoder[Memory],
        *,
        consumer: KafkaConsumer,
        dead_letters: DeadLetters,
        lake: Lake,
        metrics: IngestMetrics,
        clock: Clock = utc_now,
        erasures: ErasureLedger | None = None,
    ) -> None:
        self.decoder = decoder
        self._erasures = erasures
        self._consumer = consumer
        self._dlq = dead_letters
        self._lake = lake
        self._metrics = metrics
        self._clock = clock
        self._topic = decoder.feed.topic
        self._group = decoder.feed.group
        # Per partition: a key's messages all arrive in one partition, in order, while
        # partitions drain at different speeds; windows keyed on "the newest time seen" are
        # only right within one partition.
        self._memory: dict[int, Memory] = {}
        self._positions: dict[int, int | None] = {}  # partition → next offset the lake holds
        # Ids stored from every partition (this worker's and, read back at each commit, other
        # workers'): a repeat that arrives on another partition is still a repeat.
        self._ids: DedupWindow | None = None
        self._ids_since: int | None = None  # other workers' inserts after this are not in _ids
        self._writer_tag = uuid.uuid4().hex
        # One batch is written (repeats dropped, DLQ, lake) by the writer thread while the
        # next is polled and decoded here; the lock keeps the lake's connection to one thread
        # at a time. The memories above change on the writer thread only while a batch is
        # being written, and here only after it is settled, so they are never shared.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lake-writer")
        self._writing: Future[Written] | None = None
        self._lake_lock = threading.Lock()
        self._taken = 0  # messages polled, committed or not
        self._stop = threading.Event()
        self._assigned_at: float | None = None
        self._on_batch: Callable[[IngestTotals], None] | None = None
        self.totals = IngestTotals()

    @classmethod
    def connect(
        cls,
        settings: Settings,
        decoder: Decoder[Memory],
        *,
        lake: Lake,
        metrics: IngestMetrics,
        clock: Clock = utc_now,
    ) -> LakeIngestor[Memory]:
        """A worker on the configured cluster: its consumer group and dead-letter producer."""
        return cls(
            decoder,
            consumer=make_consumer(settings, decoder.feed.group),
            dead_letters=DeadLetters.create(settings),
            lake=lake,
            metrics=metrics,
            clock=clock,
            erasures=ErasureLedger.from_settings(settings),
        )

    def _partition_memory(self, partition: int) -> Memory:
        memory = self._memory.get(partition)
        if memory is None:  # not assigned any more (revoked mid-batch): recall it
            with self._lake_lock:
                memory = self.decoder.recall(self._lake, partition)
            self._memory[partition] = memory
        return memory

    def _recall_ids(self) -> None:
        """Warm the worker-wide id window from the lake (all partitions), once."""
        column = self.decoder.unique_column
        if column is None or self._ids is not None:
            return
        with self._lake_lock:
            # Read before the rows: an insert in between is read again at the next commit.
            since = self._lake.current_snapshot()
            recent = self._lake.recent_rows(
                self.decoder.table,
                [column, self.decoder.collected_column],
                self.decoder.feed.dedup_window,
            )
        self._ids = DedupWindow(self.decoder.feed.dedup_window)
        self._ids.remember(recent[column], recent[self.decoder.collected_column])
        self._ids_since = since

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
        Batch N+1 is polled and decoded while batch N is written (:meth:`commit_batch` for the
        order, which stays the same).
        """
        self._on_batch = on_batch
        self._consumer.subscribe(
            [self._topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        last_message = started = time.monotonic()
        try:
            while not self._stop.is_set():
                want = self.decoder.feed.batch_size
                if limits.max_messages is not None:
                    want = min(want, limits.max_messages - self._taken)
                    if want <= 0:
                        break
                batch = self._poll(want)
                if batch:
                    self._taken += len(batch)
                    polled = self._decode(batch)
                    del batch  # only the rejected messages are kept (Polled)
                    if self._settle():  # the batch before it is committed
                        self._writing = self._writer.submit(self._write, polled)
                    last_message = time.monotonic()
                else:
                    self._settle()
                    if limits.until_idle_s is not None and self._idle_for(
                        last_message, started, limits.until_idle_s
                    ):
                        break
            self._settle()
        finally:
            self._writer.shutdown(wait=True)
            self._consumer.close()  # leaves the group; nothing is pending at this point
        return self.totals

    def _poll(self, want: int) -> list[Message]:
        """One batch: small when the worker has caught up with its partitions, large under a
        backlog, within the feed's message, byte and time budgets.

        Each poll takes what the consumer has fetched within _FOLLOW_UP_S. The batch ends at
        the first poll that comes back short (the end of the partitions, for now) once the
        writer is free: while it still writes the batch before, this one could not be handed
        over anyway, so it keeps collecting. Live traffic thus waits about one write, not a
        fixed timeout, and a slow commit makes the next batch larger (fewer commits).
        """
        feed = self.decoder.feed
        deadline = time.monotonic() + feed.batch_timeout_s
        chunk = min(want, _CHUNK)
        batch: list[Message] = []
        size = 0
        wait = min(_FOLLOW_UP_S, feed.batch_timeout_s)
        while len(batch) < want and size < feed.batch_max_bytes:
            asked = min(chunk, want - len(batch))
            got = self._consumer.consume(num_messages=asked, timeout=wait)
            for message in got:
                if not _is_error(message):
                    batch.append(message)
                    size += len(message.value() or b"")
            if time.monotonic() >= deadline:
                break
            if len(got) < asked and not self._writer_busy():
                break
            wait = min(_FOLLOW_UP_S, max(0.0, deadline - time.monotonic()))
        return batch

    def _writer_busy(self) -> bool:
        return self._writing is not None and not self._writing.done()

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

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._settle()
        with self._lake_lock:
            stored = self._lake.stored_offsets(self._group, self._topic)
        for tp in partitions:
            position = stored.get(tp.partition)
            self._positions[tp.partition] = position
            tp.offset = position if position is not None else OFFSET_BEGINNING
        consumer.assign(partitions)
        for tp in partitions:
            with self._lake_lock:
                self._memory[tp.partition] = self.decoder.recall(self._lake, tp.partition)
        self._recall_ids()
        self._assigned_at = time.monotonic()
        logger.info(
            "assigned %s: resuming at %s (from the lake)",
            self._topic,
            {tp.partition: self._positions[tp.partition] for tp in partitions},
        )

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # The batch being written is committed (or fenced) before the partitions go; nothing
        # else is pending: a polled batch is prepared and handed over before the next poll.
        self._settle()
        for tp in partitions:
            self._positions.pop(tp.partition, None)
            self._memory.pop(tp.partition, None)
        logger.info("revoked %s partitions %s", self._topic, [tp.partition for tp in partitions])

    # --- one batch -------------------------------------------------------------------------

    def commit_batch(self, messages: Sequence[Message]) -> None:
        """Store one polled batch exactly once.

        Commit order (why this is exactly-once):

        1. Decode and validate the whole batch and drop the rows of erased plates
           (:meth:`_decode`, pure: the polling thread does it while the batch before is
           written).
        2. Drop events already stored from any partition this worker reads (a worker-wide
           id window) and those already in the partition's memory (plate reads are also
           grouped into passages) (:meth:`_prepare`). The batch before is committed by now.
        3. Produce every rejected message to the DLQ and wait for the broker's acks. A crash
           after this step replays the batch: DLQ records may repeat (at least once), rows not.
        4. In ONE lake transaction, drop the rows whose id another worker stored since this
           one last looked, insert the rest and set each partition's stored offset to one
           past the batch's last offset, on condition that the stored offset is still the one
           this worker started from (compare-and-set). Either both land or neither does.
           If another worker moved it (a rebalance fenced us out), nothing is written: the
           batch, and any batch decoded after it, is dropped, the partitions' memory is
           recalled from the lake, and the new owner replays them from the lake's offsets.
           Once committed, the kept rows are noted in both windows and the memory.
        5. Count, and note the other workers' ids in the worker-wide window.
        6. Tell Kafka the same offsets, asynchronously, for lag monitoring only. Losing this
           commit is harmless: on assignment, workers seek to the lake's offsets (step 4).

        Steps 2-4 run on the writer thread, in batch order; the worker waits for them (and
        does 5-6) before it hands over the next batch, so at most one batch is written at a
        time and one decoded ahead.
        """
        polled = self._decode(messages)
        if self._settle():
            self._writing = self._writer.submit(self._write, polled)
        self._settle()

    def _decode(self, messages: Sequence[Message]) -> Polled:
        """Decode the batch and drop the rows of erased plates (1; pure)."""
        started = time.monotonic()
        now = self._clock()
        partitions = np.fromiter((m.partition() for m in messages), np.int32, len(messages))
        offsets = np.fromiter((m.offset() for m in messages), np.int64, len(messages))
        decoded = self.decoder.decode(messages, now)
        table = self._drop_erased(decoded.table)
        return Polled(
            [(r, messages[r.index]) for r in decoded.rejected],
            partitions,
            offsets,
            started,
            now,
            decoded,
            table,
            len(decoded.table) - len(table),
        )

    def _prepare(self, polled: Polled) -> Prepared:
        """Drop repeats worker-wide and partition by partition (2, on the writer thread)."""
        table, partitions, offsets = polled.table, polled.partitions, polled.offsets
        column, collected = self.decoder.unique_column, self.decoder.collected_column
        remember: list[Callable[[], None]] = []
        if column is not None:
            self._recall_ids()
            assert self._ids is not None
            ids = self._ids
            keys = WindowKeys.of(table[column], table[collected])
            new = ids.filter_keys(keys)
            table = table.filter(new)
            remember.append(functools.partial(ids.remember_keys, keys.take(new)))
        row_partitions = partitions[table["msg_index"].to_numpy()]
        pieces: list[pa.Table] = []
        for partition in np.unique(row_partitions):
            memory = self._partition_memory(int(partition))
            kept, step = self.decoder.keep(
                memory, table.take(np.flatnonzero(row_partitions == partition))
            )
            pieces.append(kept)
            remember.append(step)
        kept_rows = pa.concat_tables(pieces) if pieces else table
        extra = self.decoder.complete(kept_rows)
        rows = lake_rows(kept_rows, self.decoder.schema, extra, partitions, offsets, polled.now)
        decoded = polled.decoded
        duplicates = len(decoded.table) - polled.erased - len(kept_rows)
        return Prepared(
            polled.rejected,
            partitions,
            offsets,
            polled.started,
            dataclasses.replace(decoded, table=decoded.table.slice(0, 0)),
            rows,
            duplicates,
            remember,
            self._ids_since,
            polled.erased,
        )

    def _drop_erased(self, table: pa.Table) -> pa.Table:
        """``table`` without rows naming an erased plate in any of the table's plate columns.

        Erased rows go nowhere: not to the lake, not to the dead-letter topic (which would
        publish the plate again). See :mod:`pipeline.erasure`.
        """
        spec = LAKE_TABLES[self.decoder.table]
        if self._erasures is None or not len(table):
            return table
        hits: list[pa.Array] = []
        for column in spec.plate_columns:
            if column in table.column_names:
                mask = self._erasures.erased(table[column])
                if mask is None:
                    return table  # nothing erased: no HMAC computed
                hits.append(mask)
        for column in spec.plate_lists:
            if column in table.column_names:
                hits.append(self._erased_in_lists(table[column]))
        if not hits:
            return table
        drop = functools.reduce(pc.or_, hits)
        if not pc.any(drop).as_py():
            return table
        logger.info("dropped %d rows of erased plates", pc.sum(drop).as_py())
        return table.filter(pc.invert(drop))

    def _erased_in_lists(self, lists: pa.ChunkedArray) -> pa.Array:
        """Per row: does any entry of a list of {plate, ...} structs name an erased plate?"""
        assert self._erasures is not None
        flat = lists.combine_chunks()
        plates = pc.struct_field(pc.list_flatten(flat), "plate")
        normalised = pc.replace_substring_regex(pc.utf8_upper(plates), "[^A-Z0-9]", "")
        mask = self._erasures.erased(normalised)
        if mask is None or not len(plates):
            return pa.array([False] * len(flat))
        parents = pc.list_parent_indices(flat)
        rows = pc.filter(parents, mask).to_numpy()
        hit = np.zeros(len(flat), dtype=bool)
        hit[rows] = True
        return pa.array(hit)

    def _write(self, polled: Polled) -> Written:
        """Steps 2-4 (on the writer thread): repeats, dead letters, then rows and offsets."""
        prepared = self._prepare(polled)
        next_offsets = prepared.next_offsets
        written = Written(prepared, next_offsets)
        self._send_dead_letters(prepared)
        column = self.decoder.unique_column
        unique = (
            None
            if column is None
            else UniqueIds(
                column,
                self.decoder.collected_column,
                self._writer_tag,
                prepared.ids_since,
                self.decoder.feed.dedup_window,
            )
        )
        with self._lake_lock:
            expected = {p: self._positions.get(p) for p in next_offsets}
            try:
                written.retries = self._lake.write_batch(
                    self.decoder.table,
                    prepared.rows,
                    consumer_group=self._group,
                    topic=self._topic,
                    next_offsets=next_offsets,
                    expected=expected,
                    unique=unique,
                )
            except OffsetFenced:
                written.fenced = True
                return written
        written.committed = time.time()
        # Noted only now: a fenced or failed batch must not make its rows look stored. The
        # ids a repeat in it shares with a row kept here are in the same window either way.
        for step in prepared.remember:
            step()
        if unique is not None:
            written.stored_elsewhere = unique.dropped
            written.others = unique.others
            written.snapshot = unique.snapshot
        return written

    def _settle(self) -> bool:
        """Wait for the batch being written and finish it (steps 4-5); False if it was
        fenced (the caller then drops whatever it decoded after it)."""
        future, self._writing = self._writing, None
        if future is None:
            return True
        written = future.result()  # a failed write raises here: the worker stops
        prepared = written.prepared
        if written.fenced:
            logger.warning(
                "lake offsets for %s moved under us (rebalance): batch of %d dropped, "
                "the partition's new owner replays it",
                self._topic,
                len(prepared.partitions),
            )
            self._metrics.fenced_batches.inc()
            for partition in written.next_offsets:
                self._memory.pop(partition, None)  # the new owner may store rows meanwhile
            self._seek_to_lake(written.next_offsets)
            return False
        self._positions.update(written.next_offsets)
        self._metrics.commit_retries.inc(written.retries)
        if self._ids is not None and written.others is not None:
            column, collected = self.decoder.unique_column, self.decoder.collected_column
            assert column is not None
            self._ids.remember(written.others[column], written.others[collected])
        if written.snapshot is not None:
            self._ids_since = max(self._ids_since or 0, written.snapshot)
        self._count(written)
        self._commit_to_kafka(written.next_offsets)
        if self._on_batch is not None:
            self._on_batch(self.totals)
        return True

    def _count(self, written: Written) -> None:
        """Metrics and totals of one committed batch."""
        prepared, committed = written.prepared, written.committed
        m, t, decoded, rows = self._metrics, self.totals, prepared.decoded, prepared.rows
        duplicates = prepared.duplicates + written.stored_elsewhere
        stored = len(rows) - written.stored_elsewhere
        for fmt, n in collections.Counter(decoded.formats).items():
            m.consumed.labels(topic=self._topic, format=fmt).inc(n)
        for fmt, n in decoded.extra_by_format.items():
            m.extra_reads.labels(format=fmt).inc(n)
        for (fmt, quirk), n in decoded.quirks.items():
            m.vendor_quirks.labels(format=fmt, quirk=quirk).inc(n)
        m.rows_written.labels(table=self.decoder.table).inc(stored)
        self.decoder.count(m, rows)
        for reject in decoded.rejected:
            reason = reject.reason.value
            m.rejected.labels(reason=reason, format=decoded.formats[reject.index]).inc()
            t.rejected_by_reason[reason] = t.rejected_by_reason.get(reason, 0) + 1
        m.expired.labels(topic=self._topic).inc(decoded.expired)
        m.duplicates.inc(duplicates)
        m.batch_duration.observe(time.monotonic() - prepared.started)
        if len(rows):
            collected_s = pc.cast(rows[self.decoder.collected_column], pa.int64()).to_numpy() / 1e6
            m.freshness.observe_many(committed - collected_s)
        m.last_commit.set(committed)
        t.consumed += len(decoded.formats)
        t.extra_reads += decoded.extra_reads
        t.written += stored
        t.rejected += len(decoded.rejected)
        t.expired += decoded.expired
        t.duplicates += duplicates
        t.erased += prepared.erased
        t.batches += 1

    def _send_dead_letters(self, prepared: Prepared) -> None:
        partitions, offsets = prepared.partitions, prepared.offsets
        if not prepared.rejected:
            return
        for reject, message in prepared.rejected:
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


def _is_error(message: Message) -> bool:
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
