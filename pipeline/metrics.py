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

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

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
