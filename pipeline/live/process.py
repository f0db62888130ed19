"""One batch of plate-read messages through the live app's logic, without Kafka or faust.

The faust agent (:mod:`pipeline.live.app`) hands each ``take()`` batch of raw values here and
acts on the :class:`LiveBatch` it gets back: send the hits, bump the counters, move the
cameras' last-read times. Decoding is the hot path's own
(:func:`pipeline.codec.batch.decode_batch`: canonical and vendor formats, the same
validation and plate normalisation), so the live app and the lake never disagree on what a
message says. Rejected messages are only counted here; the ingest workers send them to the DLQ.

Reads captured more than ``live.max_read_age_s`` ago are *stale*: the decoder's retention
cut-off is set to that age, so they come back as "expired" and are counted, never matched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.codec.batch import decode_batch
from pipeline.codec.plate_reads import DecodeLimits
from pipeline.config import Settings
from pipeline.live.hits import Hit, find_hits
from pipeline.live.watchlist import WatchlistIndex
from pipeline.reference.passages import PassageGrouper
from pipeline.reference.sites import SiteRegistry

STALE = "stale"


@dataclass
class LiveBatch:
    """What one batch means for the live app's outputs."""

    formats: Counter[str] = field(default_factory=Counter)  # messages by detected format
    skipped: Counter[str] = field(default_factory=Counter)  # reason code or "stale" → reads
    passages: Counter[tuple[str, str]] = field(default_factory=Counter)  # (site, direction)
    newest: dict[tuple[str, str], float] = field(default_factory=dict)  # (camera, site) → s
    hits: list[Hit] = field(default_factory=list)
    reads: int = 0  # decoded, fresh reads


class LiveProcessor:
    """Decode → passages → cameras → watchlist matches, batch by batch.

    Holds the passage grouper's memory between batches (reads of one vehicle by front and
    rear cameras count as one passage, as in the lake); the watchlist index is shared with
    the app, which keeps it in step with its faust table.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        registry: SiteRegistry,
        index: WatchlistIndex,
    ) -> None:
        self._registry = registry
        self.index = index
        self._limits = DecodeLimits(
            max_message_bytes=settings.ingest.max_message_bytes,
            future_tolerance=timedelta(seconds=settings.ingest.future_tolerance_s),
        )
        self._vendor_max_bytes = settings.ingest.vendor_max_message_bytes
        self._max_age = timedelta(seconds=settings.live.max_read_age_s)
        self._passages = PassageGrouper(timedelta(seconds=settings.ingest.passage_window_s))

    def process(
        self, values: Sequence[bytes | None], content_types: Sequence[str | None], now: datetime
    ) -> LiveBatch:
        decoded = decode_batch(
            values,
            content_types,
            registry=self._registry,
            now=now,
            retention_cutoff=now - self._max_age,
            limits=self._limits,
            vendor_max_bytes=self._vendor_max_bytes,
        )
        batch = LiveBatch(formats=Counter(decoded.formats))
        result = decoded.result
        batch.skipped.update(r.reason.value for r in result.rejected)
        if result.expired:
            batch.skipped[STALE] += len(result.expired)
        reads = result.table
        batch.reads = len(reads)
        if not len(reads):
            return batch

        assigned = self._passages.assign(reads)
        self._passages.remember(assigned)
        assert assigned.starts is not None  # always set by assign()
        # Plain Python over a few hundred short strings: Arrow's group_by costs ~2 ms a call,
        # more than this whole step at live batch sizes.
        sites = reads["site_id"].to_pylist()
        directions = reads["direction"].to_pylist()
        starts = assigned.starts.tolist()
        batch.passages.update(
            (site, direction)
            for site, direction, start in zip(sites, directions, starts, strict=True)
            if start
        )
        millis = pc.cast(reads["captured_at"], pa.timestamp("ms", tz="UTC")).cast(pa.int64())
        newest = batch.newest
        for camera, site, ms in zip(
            reads["camera_id"].to_pylist(), sites, millis.to_pylist(), strict=True
        ):
            key = (camera, site)
            seconds = ms / 1000
            if seconds > newest.get(key, float("-inf")):
                newest[key] = seconds

        batch.hits = find_hits(self.index, reads, now=now)
        return batch
