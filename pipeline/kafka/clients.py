"""Thin factories for confluent-kafka clients, built from the settings.

Security settings (``security.protocol``, ``sasl.*``, ``ssl.*``) come from
``settings.kafka.client`` and pass through to librdkafka unchanged; callers only add what their
role needs (group id, offsets behaviour, acks).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, Producer

from pipeline.config import Settings

logger = logging.getLogger(__name__)


def _log_error(error: Any) -> None:
    # librdkafka reports transient broker trouble here and retries by itself: warn, go on.
    logger.warning("kafka client: %s", error)


def make_consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
    """A consumer whose offsets are managed by us, never auto-committed."""
    config: dict[str, Any] = {
        **settings.kafka.client_config(),
        "group.id": group_id,
        # The lake holds the real position (rows and offsets commit together); Kafka's committed
        # offsets are written after the lake commit for lag monitoring only.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # A worker killed without leaving the group holds its partitions until its session
        # times out; 10 s (librdkafka's default is 45 s) hands them over sooner. Heartbeats run
        # on librdkafka's own thread, so a long lake commit does not count against it.
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 2_000,
        # Bound prefetch memory (librdkafka's default queue is 64 MB): 8 MB is ~25k reads, about
        # a batch, and keeps a worker under 400 MB while draining a backlog. A fetcher that
        # finds the queue full looks again after fetch.queue.backoff.ms, by default 1 s: the
        # polling thread then waited for Kafka half the time. With 10 ms, 2M reads drained in
        # 23 s instead of 40 s, at the same peak RSS (ADR 0006).
        "queued.max.messages.kbytes": 8_192,
        "fetch.max.bytes": 8 * 1024 * 1024,
        "fetch.queue.backoff.ms": 10,
        "error_cb": _log_error,
        **overrides,
    }
    return Consumer(config)


def make_producer(settings: Settings, **overrides: Any) -> Any:
    """An idempotent producer: a retry after a lost ack never writes a message twice."""
    config: dict[str, Any] = {
        **settings.kafka.client_config(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "zstd",
        "error_cb": _log_error,
        **overrides,
    }
    return Producer(config)


def header_dict(headers: list[tuple[str, bytes | None]] | None) -> Mapping[str, bytes]:
    """Kafka headers as a dict (the last value wins for a repeated name)."""
    return {name: value for name, value in headers or () if value is not None}
