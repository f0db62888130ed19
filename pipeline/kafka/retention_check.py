"""Kafka topics that carry personal data must not keep it longer than the lake may.

``anpr maintain`` and ``anpr ingest`` (at start) read each such topic's ``retention.ms`` and
compare it with the shortest span the legal limit can have (:func:`shortest_span_days`);
a topic above it gets a warning and ``anpr_topic_retention_exceeded{topic} 1``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.kafka.admin import topic_retentions
from pipeline.metrics import TopicRetentionGauges
from pipeline.retention import shortest_span_days

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicRetention:
    topic: str
    seconds: float  # inf: retention.ms = -1 (kept for ever)
    limit_seconds: float

    @property
    def exceeded(self) -> bool:
        return self.seconds >= self.limit_seconds


def limit_seconds(settings: Settings) -> float:
    """The shortest legal span of the strictest retention limit that applies."""
    months = min([settings.retention.months, *settings.retention.tables.values()])
    return float(shortest_span_days(months) * 86400)


def assess(retention_ms: Mapping[str, int | None], limit_s: float) -> list[TopicRetention]:
    """Pure: each existing topic's retention against ``limit_s`` (missing topics skipped)."""
    out = []
    for topic, ms in sorted(retention_ms.items()):
        if ms is None:
            continue
        seconds = math.inf if ms < 0 else ms / 1000.0
        out.append(TopicRetention(topic, seconds, limit_s))
    return out


def check_topic_retentions(
    settings: Settings, gauges: TopicRetentionGauges
) -> list[TopicRetention]:
    """Read the personal-data topics' retention from the broker, record and warn."""
    checks = assess(
        topic_retentions(settings, list(settings.topics.personal_data_topics())),
        limit_seconds(settings),
    )
    for check in checks:
        gauges.record(check.topic, check.seconds, exceeded=check.exceeded)
        if check.exceeded:
            logger.warning(
                "Kafka topic %s keeps data %.0f s, longer than the legal limit (%.0f s): "
                "lower its retention.ms",
                check.topic,
                check.seconds,
                check.limit_seconds,
            )
    return checks


def check_at_start(settings: Settings, registry: CollectorRegistry) -> list[TopicRetention]:
    """For a long-running worker: check once at start, exporting the gauges on ``registry``.

    A broker that cannot answer yet is logged and skipped (the worker's own connection
    reports it); ``anpr maintain`` checks again every night.
    """
    try:
        return check_topic_retentions(settings, TopicRetentionGauges(registry))
    except Exception as exc:
        logger.warning("could not read Kafka topic retention at start: %s", exc)
        return []
