"""``anpr live``: the faust-streaming app. Agents only wire; the logic is in the pure modules.

Consumer group (= faust app id) ``live.consumer_group``, default ``anpr-live``, beside the
archival ingest's ``anpr-ingest`` on the same topic. Wiring:

- agent ``watchlist`` on ``anpr.watchlist`` (compacted): each record →
  :func:`pipeline.live.watchlist.parse_change` → the faust table ``watchlist`` and the
  in-memory :class:`~pipeline.live.watchlist.WatchlistIndex`;
- agent ``reads`` on ``anpr.plate-reads``: ``take_events`` batches →
  :meth:`pipeline.live.process.LiveProcessor.process` → hits to ``anpr.watchlist-hits``,
  counters, cameras' last-read times;
- a timer every ``live.check_interval_s``: expired entries out of table and index, camera
  silence gauges, old hit ids forgotten.

**State that survives a restart** lives in two faust ``GlobalTable`` s backed by compacted
changelog topics (``<app id>-watchlist-changelog``, ``<app id>-hits-changelog``): the
watchlist, and the ids of hits already sent. On start faust replays them before any agent
runs; the index is rebuilt from the table in the recovery callback. Global tables, so every
worker of the group holds the whole watchlist whatever plate-read partitions it owns; one
partition each, run as one instance (ADR 0002: upstream's multi-instance workaround,
``recovery_buffer_size=1``, makes recovering 100,000 entries take minutes). The
faust web server is off; metrics go through prometheus-client on ``live.metrics_port``.

**Delivery semantics: at-least-once sends, exactly-once hits by id.** faust acknowledges a
``take_events`` batch only after the agent's body has run for it, and commits acknowledged
offsets every few seconds. For every batch the agent, in order:

1. decodes and matches the reads (pure, no I/O);
2. drops hits whose id is already in the ``hits`` table (a read delivered twice, by a camera
   retransmitting or by Kafka after a crash, has the same hit id: event id + plate + list);
3. sends each new hit keyed by its hit id and **waits for Kafka's acknowledgement**;
4. records the hit id in the ``hits`` table (its changelog write is asynchronous);
5. returns, which acknowledges the batch; its offsets are committed later.

A crash after 3 and before the offset commit redelivers the batch: if the changelog write of
step 4 reached Kafka, the restarted app drops the repeat (tested: restart with the group's
offsets reset); if it did not, the hit is sent a second time **with the same hit id**, and
consumers of ``anpr.watchlist-hits`` drop ids they have seen. That is the guarantee: at least
once on the wire, once per (read, list) for a consumer that keys on the hit id. faust's
``processing_guarantee="exactly_once"`` (Kafka transactions over hits, changelog and offsets)
would close the gap on the wire, at the cost of a transaction per commit interval and of
consumers reading with ``isolation.level=read_committed``; with upstream reports of EOS
recovery hangs (faust-streaming #47) the id-based guarantee is the safer one here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import faust

from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.live.hits import unseen
from pipeline.live.process import LiveBatch, LiveProcessor
from pipeline.live.silence import SilenceMonitor
from pipeline.live.standby import (
    HEARTBEAT_INTERVAL_S,
    SESSION_TIMEOUT_S,
    active,
)
from pipeline.live.transport import App as LiveFaustApp
from pipeline.live.watchlist import (
    Removal,
    Upsert,
    WatchlistIndex,
    entry_from_record,
    parse_change,
)
from pipeline.metrics import LiveMetrics, serve
from pipeline.reference.sites import SiteRegistry

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# Old hit ids are forgotten this often (a scan of the hits table).
_PRUNE_EVERY_S = 60.0
# Changelog topics hold plates (watchlist keys): roll segments hourly so that compaction can
# drop a removed or expired plate within hours instead of the default week-long segment.
_CHANGELOG_CONFIG: Mapping[str, Any] = {
    "segment.ms": str(3600 * 1000),
    "delete.retention.ms": str(3600 * 1000),
    "min.cleanable.dirty.ratio": "0.1",
}


def utc_now() -> datetime:
    return datetime.now(UTC)


def broker_urls(settings: Settings) -> list[str]:
    """faust's broker list from ``kafka.bootstrap_servers``; refuses librdkafka security
    settings, which faust's client does not take (a plain-text connection would be wrong)."""
    if settings.kafka.client:
        raise ConfigError(
            "kafka.client",
            "anpr live cannot yet pass librdkafka security settings to faust's client; "
            "run it against a listener that needs none, or add faust broker_credentials",
        )
    hosts = [h.strip() for h in settings.kafka.bootstrap_servers.split(",") if h.strip()]
    return [f"kafka://{host}" for host in hosts]


class LiveApp:
    """The faust app with its topics, tables, agents and timer; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: SiteRegistry,
        metrics: LiveMetrics,
        clock: Clock = utc_now,
    ) -> None:
        live = settings.live
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._max_days = live.watchlist_max_days
        self._dedup_window = timedelta(seconds=live.hit_dedup_window_s)
        self.index = WatchlistIndex()
        self.processor = LiveProcessor(settings, registry=registry, index=self.index)
        self.silence = SilenceMonitor.for_registry(registry, live)
        self._pruned_at = 0.0

        app = LiveFaustApp(
            live.consumer_group,
            fetch_max_wait_ms=round(live.fetch_max_wait_s * 1000),
            broker=broker_urls(settings),
            key_serializer="raw",
            value_serializer="raw",
            store="memory://",
            datadir=str(settings.state.dir / "live"),
            web_enabled=False,
            consumer_auto_offset_reset="earliest",
            topic_partitions=settings.topics.partitions,
            producer_acks=-1,
            # The tables' changelogs are replicated like every topic of ours: with three brokers
            # and min.insync.replicas=2, a changelog of one replica refuses acks=all writes.
            topic_replication_factor=settings.topics.replication_factor,
            # A standby taking over waits this long for the dead instance's partitions.
            broker_session_timeout=SESSION_TIMEOUT_S,
            broker_heartbeat_interval=HEARTBEAT_INTERVAL_S,
        )
        self.app = app
        topics = settings.topics
        reads_topic = app.topic(topics.plate_reads, key_type=bytes, value_type=bytes)
        watchlist_topic = app.topic(topics.watchlist, key_type=bytes, value_type=bytes)
        self.hits_topic = app.topic(topics.watchlist_hits, key_type=bytes, value_type=bytes)
        table_options: dict[str, Any] = {
            "partitions": 1,
            "use_partitioner": True,  # writable from the timer, outside a stream
            # No key_type/value_type: faust then (de)serialises keys and values as JSON.
            "extra_topic_configs": _CHANGELOG_CONFIG,
        }
        self.watchlist = app.GlobalTable("watchlist", **table_options)
        self.recent_hits = app.GlobalTable("hits", **table_options)
        self.watchlist.on_recover(self._rebuild_index)

        async def watchlist_agent(stream: Any) -> None:
            async for events in stream.take_events(1000, within=live.batch_within_s):
                for event in events:
                    self.apply_change(event.key, event.value)

        async def reads_agent(stream: Any) -> None:
            async for events in stream.take_events(live.batch_size, within=live.batch_within_s):
                await self.handle_reads(events)

        async def checks() -> None:
            self.check(self._clock())

        app.agent(watchlist_topic, name="watchlist")(watchlist_agent)
        app.agent(reads_topic, name="reads")(reads_agent)
        app.timer(live.check_interval_s, name="checks")(checks)

    # --- the watchlist -----------------------------------------------------------------------

    def apply_change(self, key: bytes | None, value: bytes | None) -> None:
        """One ``anpr.watchlist`` record into the table and the index."""
        change = parse_change(key, value, now=self._clock(), max_days=self._max_days)
        if isinstance(change, Upsert):
            entry = change.entry
            self.watchlist[entry.plate] = entry.to_record()
            self.index.put(entry)
        else:
            plate = change.plate
            if not isinstance(change, Removal):
                self._metrics.rejected_entries.labels(reason=change.reason.value).inc()
                # The reason only: the key is a plate (personal data).
                logger.warning("watchlist record refused: %s", change.reason.value)
            if plate is not None and plate in self.watchlist:
                del self.watchlist[plate]
            if plate is not None:
                self.index.remove(plate)
        self._metrics.entries.set(len(self.index))

    async def _rebuild_index(self) -> None:
        """After faust replayed the changelog: the index from the table's entries."""
        self.index = WatchlistIndex()
        self.processor.index = self.index
        for plate, record in self.watchlist.items():
            entry = entry_from_record(plate, record)
            if entry is not None:
                self.index.put(entry)  # expired ones are removed by the next check
        self._metrics.entries.set(len(self.index))
        logger.info("watchlist recovered: %d entries", len(self.index))

    # --- plate reads --------------------------------------------------------------------------

    async def handle_reads(self, events: Sequence[Any]) -> None:
        """One batch of plate-read events; the order of steps is the module docstring's."""
        now = self._clock()
        batch = self.processor.process(
            [e.value for e in events], [_content_type(e.headers) for e in events], now
        )
        self._count(batch)
        fresh = unseen(batch.hits, self.recent_hits)
        if len(fresh) < len(batch.hits):
            self._metrics.duplicate_hits.inc(len(batch.hits) - len(fresh))
        # force=True: send now, not when the event is acknowledged. All of the batch's hits
        # are in flight together; then wait for every acknowledgement (step 3).
        pending = [
            await self.hits_topic.send(key=hit.key(), value=hit.to_json(), force=True)
            for hit in fresh
        ]
        if pending:
            await asyncio.gather(*pending)
        sent = time.time()
        for hit in fresh:
            self.recent_hits[hit.hit_id] = sent
            self._metrics.hits.labels(list=hit.list_name, match=hit.match).inc()
            self._metrics.hit_latency.observe(max(sent - hit.captured_at.timestamp(), 0.0))
        if fresh:
            self._metrics.last_hit.set(sent)

    def _count(self, batch: LiveBatch) -> None:
        metrics = self._metrics
        for fmt, n in batch.formats.items():
            metrics.reads.labels(format=fmt).inc(n)
        for reason, n in batch.skipped.items():
            metrics.skipped.labels(reason=reason).inc(n)
        for (site, direction), n in batch.passages.items():
            metrics.passages.labels(site=site, direction=direction).inc(n)
        self.silence.observe_many(batch.newest)

    # --- periodic checks ----------------------------------------------------------------------

    def check(self, now: datetime) -> None:
        """Expire watchlist entries, update camera silence, forget old hit ids."""
        expired = self.index.pop_expired(now)
        for plate in expired:
            if plate in self.watchlist:
                del self.watchlist[plate]
        if expired:
            self._metrics.expired_entries.inc(len(expired))
            self._metrics.entries.set(len(self.index))
            logger.info("watchlist: %d entries expired", len(expired))
        for state in self.silence.evaluate(now):
            labels = {"camera": state.camera_id, "site": state.site_id}
            self._metrics.camera_last_read.labels(**labels).set(state.last_read)
            self._metrics.camera_threshold.labels(**labels).set(state.threshold_s)
            self._metrics.camera_silent.labels(**labels).set(1 if state.silent else 0)
        if time.monotonic() - self._pruned_at >= _PRUNE_EVERY_S:
            self._pruned_at = time.monotonic()
            cutoff = (now - self._dedup_window).timestamp()
            for hit_id, sent in list(self.recent_hits.items()):
                if sent < cutoff:
                    del self.recent_hits[hit_id]


def _content_type(headers: Mapping[str, bytes] | Sequence[tuple[str, bytes]] | None) -> str | None:
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        if name.lower() == "content-type" and value is not None:
            return value.decode("latin-1")
    return None


def run_live(
    settings: Settings,
    *,
    registry: SiteRegistry,
    metrics: LiveMetrics,
    clock: Clock = utc_now,
) -> None:
    """Run the app until SIGTERM/SIGINT (faust's worker handles both and shuts down cleanly),
    once this instance is the group's active one (:mod:`pipeline.live.standby`)."""
    live = LiveApp(settings, registry=registry, metrics=metrics, clock=clock)
    (settings.state.dir / "live").mkdir(parents=True, exist_ok=True)
    with active(settings):
        _run_worker(live, settings, metrics)


def _run_worker(live: LiveApp, settings: Settings, metrics: LiveMetrics) -> None:
    # /metrics only once active: a standby on the same host can then take over its port.
    serve(metrics.registry, settings.live.metrics_port)
    worker = faust.Worker(
        live.app,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,  # the CLI configured logging already
        loglevel=logging.getLogger().getEffectiveLevel(),
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:  # the worker ends this way even when all went well
        if exc.code not in (None, 0):
            raise
