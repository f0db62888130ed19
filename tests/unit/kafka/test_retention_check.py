"""Topic retention against the legal limit (pure part)."""

from __future__ import annotations

import math

from pipeline.config import load_settings
from pipeline.kafka.retention_check import assess, limit_seconds
from pipeline.retention import shortest_span_days

DAY_MS = 86_400_000


def test_a_topic_at_or_above_the_shortest_legal_span_is_exceeded() -> None:
    limit = float(shortest_span_days(6) * 86400)
    checks = assess(
        {
            "short": 7 * DAY_MS,
            "at": shortest_span_days(6) * DAY_MS,
            "forever": -1,
            "missing": None,
        },
        limit,
    )
    assert {c.topic: c.exceeded for c in checks} == {"at": True, "forever": True, "short": False}
    assert next(c.seconds for c in checks if c.topic == "forever") == math.inf


def test_the_strictest_table_limit_applies() -> None:
    settings = load_settings(None, env={"ANPR_RETENTION_TABLES": "passengers=3"})
    assert limit_seconds(settings) == shortest_span_days(3) * 86400
    assert limit_seconds(load_settings(None, env={})) == shortest_span_days(6) * 86400
