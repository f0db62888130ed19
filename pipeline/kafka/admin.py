"""Topic administration: create the pipeline's topics idempotently and check their retention.

The topic plan is pure (:func:`topic_plan`); only :func:`create_topics` and
:func:`topic_retentions` talk to a broker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from pipeline.config import Settings
from pipeline.errors import BrokerError

logger = logging.getLogger(__name__)

_ADMIN_TIMEOUT_S = 30.0
SOURCE_MAX_MESSAGE_BYTES = 2 * 1024 * 1024
# Passenger lists: a producer's oversized list (a 10 MB manifest) must reach the worker, which
# rejects it as `oversized` with a reason (the DLQ keeps its start and original size), instead
# of the producer getting only a broker error. The worker's own limit is
# passengers.max_message_bytes (2 MiB).
PASSENGERS_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
DLQ_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]
    personal_data: bool


def topic_plan(settings: Settings) -> list[TopicSpec]:
    """The topics of DESIGN.md with their partitions and configuration."""
    t = settings.topics
    # With three replicas or more, an acknowledged write (acks=all) is on two of them, so one
    # broker can die without losing it and writes go on while it is down.
    durability = {"min.insync.replicas": "2"} if t.replication_factor >= 3 else {}
    personal = {
        **durability,
        "cleanup.policy": "delete",
        "retention.ms": str(t.personal_retention_ms),
        # Vendor payloads with image crops can exceed Kafka's 1 MB default; the ingest worker
        # rejects anything over ingest.max_message_bytes as `oversized` anyway.
        "max.message.bytes": str(SOURCE_MAX_MESSAGE_BYTES),
    }
    # The DLQ holds any plate-read message a source topic accepted, plus our headers; larger
    # values (passenger lists) are cut, their size kept in a header (pipeline/ingest/dlq.py).
    dlq = {**personal, "max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)}
    hits = {**durability, "cleanup.policy": "delete", "retention.ms": str(t.hits_retention_ms)}
    # The watchlist is a compacted table keyed by plate: the latest entry per plate wins and a
    # tombstone removes it. Entries carry expires_at, enforced by the live app.
    watchlist = {**durability, "cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
    return [
        TopicSpec(t.plate_reads, t.partitions, personal, personal_data=True),
        TopicSpec(
            t.passengers,
            t.partitions,
            {**personal, "max.message.bytes": str(PASSENGERS_MAX_MESSAGE_BYTES)},
            personal_data=True,
        ),
        TopicSpec(t.dlq, t.partitions, dlq, personal_data=True),
        TopicSpec(t.watchlist, 1, watchlist, personal_data=True),
        TopicSpec(t.watchlist_hits, t.partitions, hits, personal_data=True),
        # The activity log's anchors: one key, the newest value is all verification needs,
        # and compaction (never time) removes the older ones. Replicated like the others.
        TopicSpec(
            t.audit_anchors,
            1,
            {**durability, "cleanup.policy": "compact", "retention.ms": "-1"},
            personal_data=False,
        ),
    ]


def _admin(settings: Settings) -> AdminClient:
    return AdminClient(dict(settings.kafka.client_config()))


def create_topics(settings: Settings) -> dict[str, str]:
    """Create every missing topic; return ``{topic: "created" | "exists"}``.

    An existing topic is left as it is (its retention is checked by :func:`topic_retentions`,
    not silently changed).
    """
    admin = _admin(settings)
    specs = topic_plan(settings)
    new = [
        NewTopic(
            s.name,
            num_partitions=s.partitions,
            replication_factor=settings.topics.replication_factor,
            config=s.config,
        )
        for s in specs
    ]
    futures = admin.create_topics(new, request_timeout=_ADMIN_TIMEOUT_S)
    result: dict[str, str] = {}
    for name, future in futures.items():
        try:
            future.result(timeout=_ADMIN_TIMEOUT_S)
            result[name] = "created"
            logger.info("created topic %s", name)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                result[name] = "exists"
            else:
                raise BrokerError(f"creating topic {name}: {error.str()}") from exc
    return result


def topic_retentions(settings: Settings, topics: list[str]) -> dict[str, int | None]:
    """``retention.ms`` of each topic as the broker reports it (None: topic missing)."""
    admin = _admin(settings)
    existing = admin.list_topics(timeout=_ADMIN_TIMEOUT_S).topics
    present = [t for t in topics if t in existing]
    out: dict[str, int | None] = {t: None for t in topics}
    if not present:
        return out
    resources = [ConfigResource(ResourceType.TOPIC, t) for t in present]
    futures = admin.describe_configs(resources, request_timeout=_ADMIN_TIMEOUT_S)
    for resource, future in futures.items():
        try:
            entries = future.result(timeout=_ADMIN_TIMEOUT_S)
        except KafkaException as exc:
            raise BrokerError(f"describing topic {resource.name}: {exc}") from exc
        out[resource.name] = int(entries["retention.ms"].value)
    return out
