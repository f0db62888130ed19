"""Metrics of a maintenance run, written as a Prometheus textfile (node_exporter collects it).

A short-lived command cannot be scraped, so ``anpr maintain`` writes
``<state.dir>/metrics/maintain.prom`` atomically at the end of every run. Success timestamps of
steps that did not run or failed this time are carried over from the previous file, so an
alert on "statistics last succeeded 2 days ago" keeps working when a step keeps failing.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

from pipeline.kafka.retention_check import TopicRetentionGauges

logger = logging.getLogger(__name__)

STEPS = ("stats", "compact", "retention", "purge", "verify", "activity_log")
_LAST_SUCCESS = "anpr_maintenance_last_success_timestamp_seconds"
_PENDING = "anpr_statistics_days_pending"


class MaintainMetrics:
    """Every metric ``anpr maintain`` exposes, on a registry of its own."""

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
                if sample.name == _LAST_SUCCESS and sample.labels.get("step") in STEPS:
                    self.last_success.labels(sample.labels["step"]).set(sample.value)
                elif sample.name == _PENDING:
                    self.stats_pending.set(sample.value)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), self.registry)
