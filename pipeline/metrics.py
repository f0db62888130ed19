"""Every Prometheus metric of the pipeline, defined against a registry passed in.

Names start with ``anpr_``, use base units, counters end in ``_total``, and no label ever
carries a plate, a name, a document number or an event id: labels are topics, tables,
reason codes, formats and partition numbers only.

Tests build a fresh ``CollectorRegistry()`` and read values with ``get_sample_value``::

    registry = CollectorRegistry()
    m = IngestMetrics(registry)
    m.consumed.labels(topic="anpr.plate-reads", format="canonical").inc(3)
    registry.get_sample_value("anpr_messages_consumed_total",
                              {"topic": "anpr.plate-reads", "format": "canonical"})  # 3.0
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
    write_to_textfile,
)
from prometheus_client.parser import text_string_to_metric_families

# Freshness (capture → committed in the lake) is expected in the sub-second to seconds range;
# the p99 target is 2 s, so resolution is finest around it.
_FRESHNESS_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)
_BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class BulkHistogram(Histogram):
    """A Histogram that also takes a whole numpy array of observations at once.

    ``observe()`` per row would put per-message Python back on the hot path (about 1 µs each);
    :meth:`observe_many` counts buckets with numpy and adds the counts. It relies on
    prometheus-client's bucket attributes (pinned in constraints.txt); a unit test checks it
    against ``observe()`` one value at a time.
    """

    def observe_many(self, amounts: npt.NDArray[np.float64] | Sequence[float]) -> None:
        values = np.asarray(amounts, dtype=np.float64)
        if not values.size:
            return
        self._raise_if_not_observable()  # type: ignore[no-untyped-call]
        bounds = np.asarray(self._upper_bounds, dtype=np.float64)
        # observe() puts a value in the first bucket whose bound is >= it: searchsorted 'left'.
        counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
        for bucket, count in zip(self._buckets, counts.tolist(), strict=False):
            if count:
                bucket.inc(count)
        self._sum.inc(float(values.sum()))


class IngestMetrics:
    """Metrics of an ingest worker (``anpr ingest plates|passengers``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.consumed = Counter(
            "anpr_messages_consumed_total",
            "Messages taken from Kafka, by topic and detected payload format.",
            ["topic", "format"],
            registry=registry,
        )
        self.extra_reads = Counter(
            "anpr_extra_reads_total",
            "Reads beyond the first carried by one vendor payload (several vehicles in view).",
            ["format"],
            registry=registry,
        )
        self.vendor_quirks = Counter(
            "anpr_vendor_quirks_total",
            "Reads stored although the payload did something its documentation does not promise "
            "(country_unknown: stored with country ZZ; version_N: a newer OpenALPR version; "
            "best_uuid_outside_uuids; event_id_digested: a vendor id longer than ours; "
            "time_from_uuid), by payload format and quirk.",
            ["format", "quirk"],
            registry=registry,
        )
        self.people_written = Counter(
            "anpr_people_written_total",
            "People from passenger and crew lists committed to the lake, by list format "
            "(json, paxlst) and role (passenger, crew, driver).",
            ["format", "role"],
            registry=registry,
        )
        self.rows_written = Counter(
            "anpr_rows_written_total",
            "Rows committed to a lake table.",
            ["table"],
            registry=registry,
        )
        self.rejected = Counter(
            "anpr_messages_rejected_total",
            "Messages sent to the dead-letter topic, by reason code and payload format.",
            ["reason", "format"],
            registry=registry,
        )
        self.expired = Counter(
            "anpr_messages_expired_on_arrival_total",
            "Messages already past the retention limit when consumed: counted, never stored.",
            ["topic"],
            registry=registry,
        )
        self.duplicates = Counter(
            "anpr_duplicates_dropped_total",
            "Messages whose event id was already stored within the deduplication window.",
            registry=registry,
        )
        self.batch_duration = BulkHistogram(
            "anpr_batch_duration_seconds",
            "Time from the first message of a batch to its lake commit.",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.freshness = BulkHistogram(
            "anpr_freshness_seconds",
            "Time from capture (captured_at) to the row being committed in the lake.",
            buckets=_FRESHNESS_BUCKETS,
            registry=registry,
        )
        self.lag = Gauge(
            "anpr_consumer_lag_messages",
            "Messages between the committed position and the partition's high watermark.",
            ["topic", "partition"],
            registry=registry,
        )
        self.last_commit = Gauge(
            "anpr_last_commit_timestamp_seconds",
            "Unix time of the last successful lake commit.",
            registry=registry,
        )
        self.fenced_batches = Counter(
            "anpr_fenced_batches_total",
            "Batches dropped because another worker had moved the partition's lake offsets.",
            registry=registry,
        )
        self.commit_retries = Counter(
            "anpr_lake_commit_retries_total",
            "Lake transactions retried after a write conflict with another writer.",
            registry=registry,
        )


# Hit latency (capture → hit acknowledged by Kafka): the target is p99 <= 1 s.
_HIT_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0, 30.0)


class LiveMetrics:
    """Metrics of the live app (``anpr live``). Labels are sites, cameras, directions, list
    names (a validated vocabulary), match kinds and reason codes: never a plate."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.reads = Counter(
            "anpr_live_reads_total",
            "Plate-read messages taken by the live app, by detected payload format.",
            ["format"],
            registry=registry,
        )
        self.skipped = Counter(
            "anpr_live_reads_skipped_total",
            "Reads not matched nor counted: a rejection reason code, or stale (too old).",
            ["reason"],
            registry=registry,
        )
        self.passages = Counter(
            "anpr_live_passages_total",
            "Vehicles passing (reads of one vehicle grouped into one passage), by site and "
            "direction; rate() over 1m gives passages per minute.",
            ["site", "direction"],
            registry=registry,
        )
        self.camera_last_read = Gauge(
            "anpr_camera_last_read_timestamp_seconds",
            "Capture time (Unix seconds) of the newest read of each camera seen since start.",
            ["camera", "site"],
            registry=registry,
        )
        self.camera_silent = Gauge(
            "anpr_camera_silent",
            "1 while a camera has read nothing for longer than its site's threshold.",
            ["camera", "site"],
            registry=registry,
        )
        self.camera_threshold = Gauge(
            "anpr_camera_silence_threshold_seconds",
            "The silence threshold in force for the camera now (day or night value).",
            ["camera", "site"],
            registry=registry,
        )
        self.hits = Counter(
            "anpr_watchlist_hits_total",
            "Watchlist hits sent to the hits topic, by list and match kind (exact, possible).",
            ["list", "match"],
            registry=registry,
        )
        self.duplicate_hits = Counter(
            "anpr_watchlist_duplicate_hits_total",
            "Hits not sent again because their hit id was already sent (redelivered reads).",
            registry=registry,
        )
        self.entries = Gauge(
            "anpr_watchlist_entries",
            "Watchlist entries in force.",
            registry=registry,
        )
        self.rejected_entries = Counter(
            "anpr_watchlist_rejected_total",
            "Watchlist records refused, by reason (every entry must expire, within the limit).",
            ["reason"],
            registry=registry,
        )
        self.expired_entries = Counter(
            "anpr_watchlist_expired_total",
            "Watchlist entries removed because they expired.",
            registry=registry,
        )
        self.hit_latency = Histogram(
            "anpr_watchlist_hit_latency_seconds",
            "Time from capture (captured_at) to the hit being acknowledged by Kafka.",
            buckets=_HIT_LATENCY_BUCKETS,
            registry=registry,
        )
        self.last_hit = Gauge(
            "anpr_live_last_hit_timestamp_seconds",
            "Unix time of the last hit sent.",
            registry=registry,
        )


def serve(registry: CollectorRegistry, port: int) -> None:
    """Expose ``registry`` on ``http://0.0.0.0:port/metrics``; port 0 disables the endpoint."""
    if port:
        start_http_server(port, registry=registry)


class AccessMetrics:
    """Metrics of ``anpr query|sql|subject|audit`` (short-lived: written as a textfile).

    Counters are cumulative over the life of the activity log: they are kept in its head
    record and loaded here, so each run's textfile carries the totals, not one run's share.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.queries = Counter(
            "anpr_queries",
            "Statements run against the lake, by role, reason code and outcome "
            "(ok, failed, refused, interrupted).",
            ["role", "reason", "outcome"],
            registry=registry,
        )
        self.subject_requests = Counter(
            "anpr_subject_requests",
            "Data-subject requests completed, by kind (access, rectify, erase, restrict, "
            "unrestrict).",
            ["kind"],
            registry=registry,
        )
        self.log_entries = Counter(
            "anpr_audit_log_entries",
            "Entries ever appended to the activity log.",
            registry=registry,
        )

    def load(self, counts: dict[str, int], entries: int) -> None:
        """Set the counters from the log head's totals (``queries|role|reason|outcome``...)."""
        for key, value in counts.items():
            parts = key.split("|")
            if parts[0] == "queries" and len(parts) == 4:
                self.queries.labels(role=parts[1], reason=parts[2], outcome=parts[3]).inc(value)
            elif parts[0] == "subject" and len(parts) == 2:
                self.subject_requests.labels(kind=parts[1]).inc(value)
        self.log_entries.inc(entries)


class TopicRetentionGauges:
    """``anpr_topic_retention_seconds{topic}`` and ``anpr_topic_retention_exceeded{topic}``
    (set by :mod:`pipeline.kafka.retention_check`, in ingest workers and maintenance runs)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Gauge(
            "anpr_topic_retention_seconds",
            "retention.ms of a Kafka topic carrying personal data, in seconds.",
            ["topic"],
            registry=registry,
        )
        self.exceeded = Gauge(
            "anpr_topic_retention_exceeded",
            "1 when a topic carrying personal data keeps it longer than the legal limit.",
            ["topic"],
            registry=registry,
        )

    def record(self, topic: str, seconds: float, *, exceeded: bool) -> None:
        self.seconds.labels(topic).set(seconds)
        self.exceeded.labels(topic).set(1 if exceeded else 0)


MAINTAIN_STEPS = ("stats", "compact", "retention", "purge", "verify", "activity_log")
_LAST_SUCCESS = "anpr_maintenance_last_success_timestamp_seconds"
_PENDING = "anpr_statistics_days_pending"


class MaintainMetrics:
    """Every metric ``anpr maintain`` exposes, on a registry of its own.

    A short-lived command cannot be scraped, so ``anpr maintain`` writes
    ``<state.dir>/metrics/maintain.prom`` atomically at the end of every run (node_exporter
    collects it). Success timestamps of steps that did not run or failed this time are carried
    over from the previous file, so an alert on "statistics last succeeded 2 days ago" keeps
    working when a step keeps failing.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.oldest_age = Gauge(
            "anpr_oldest_record_age_seconds",
            "Age of the oldest stored row per personal-data table, by collection time.",
            ["table"],
            registry=r,
        )
        self.limit = Gauge(
            "anpr_retention_limit_seconds",
            "The retention limit of a table as it stands at the run's as-of time.",
            ["table"],
            registry=r,
        )
        self.deleted = Counter(
            "anpr_rows_deleted_total",
            "Rows deleted by this maintenance run, per table and reason.",
            ["table", "reason"],
            registry=r,
        )
        self.last_success = Gauge(
            "anpr_maintenance_last_success_timestamp_seconds",
            "When a maintenance step last completed successfully (Unix time).",
            ["step"],
            registry=r,
        )
        self.last_run = Gauge(
            "anpr_maintenance_last_run_timestamp_seconds",
            "When a maintenance step last ran, successfully or not (Unix time).",
            ["step"],
            registry=r,
        )
        self.stats_pending = Gauge(
            "anpr_statistics_days_pending",
            "Closed periods (days, trip weeks) whose statistics are missing or out of date.",
            registry=r,
        )
        self.compaction_files = Gauge(
            "anpr_compaction_files",
            "Data files of the days compacted by this run, before and after.",
            ["state"],
            registry=r,
        )
        self.topics = TopicRetentionGauges(r)

    def carry_over(self, previous: Path) -> None:
        """Take the last success time of every step, and the statistics backlog, from the
        previous textfile (a run with ``--only retention`` does not measure the backlog)."""
        try:
            text = previous.read_text()
        except FileNotFoundError:
            return
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == _LAST_SUCCESS and sample.labels.get("step") in MAINTAIN_STEPS:
                    self.last_success.labels(sample.labels["step"]).set(sample.value)
                elif sample.name == _PENDING:
                    self.stats_pending.set(sample.value)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), self.registry)
