"""``anpr topics``: the pipeline's Kafka topics."""

from __future__ import annotations

import argparse

from pipeline.cli._common import EXIT_OK, Commands, group, sub
from pipeline.config import Settings


def add_parser(commands: Commands) -> None:
    actions = group(
        commands,
        "topics",
        "create the pipeline's Kafka topics",
        "Manage the pipeline's Kafka topics.",
    )
    sub(
        actions,
        "create",
        "create missing topics (idempotent)",
        "Create anpr.plate-reads, anpr.passengers, anpr.dlq, anpr.watchlist (compacted),\n"
        "anpr.watchlist-hits and anpr.audit-anchors (compacted, the activity log's anchors)\n"
        "with the configured partitions. Topics holding personal data get\n"
        "retention.ms = topics.personal_retention_ms (default 7 days); a configured value at or\n"
        "above the legal limit is refused before anything is created. Existing topics are\n"
        "left unchanged and reported as such.",
        run_create,
    )


def run_create(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.kafka.admin import create_topics

    for name, state in sorted(create_topics(settings).items()):
        print(f"{name}: {state}")
    return EXIT_OK
