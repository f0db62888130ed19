"""The dead-letter topic: every rejected message, its original bytes, and why.

A DLQ record's value is the original message value, unchanged; its key is the original key.
Headers say why and where it came from:

=========================  ====================================================
``anpr-reason``            reason code (:class:`pipeline.codec.reasons.Reason`)
``anpr-error``             human detail; never holds a plate or other personal value
``anpr-source-topic``      topic the message was consumed from
``anpr-source-partition``  its partition (decimal)
``anpr-source-offset``     its offset (decimal)
``anpr-original-size``     only when the value had to be cut to fit the DLQ topic
=========================  ====================================================

Delivery is at least once: records are flushed *before* the lake commit that moves the
offsets past them, so a crash in between replays the batch and may write a record twice. The
source coordinates identify such repeats.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from pipeline.config import Settings
from pipeline.errors import BrokerError
from pipeline.kafka.admin import DLQ_MAX_MESSAGE_BYTES
from pipeline.kafka.clients import make_producer

logger = logging.getLogger(__name__)

# The DLQ topic is created with max.message.bytes above the largest value a source topic may
# hold; a value larger than this is cut (its size kept in a header), leaving room for headers.
DLQ_MAX_VALUE_BYTES = DLQ_MAX_MESSAGE_BYTES - 64 * 1024
# What every Kafka cluster accepts (the broker default is about 1 MB).
_FALLBACK_VALUE_BYTES = 512 * 1024
_FLUSH_TIMEOUT_S = 30.0


class DeadLetters:
    """Produce rejected messages to the DLQ; :meth:`flush` raises if any was not delivered."""

    def __init__(self, producer: Any, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._failed: list[str] = []
        self._too_large: list[tuple[bytes, bytes | None, list[Any]]] = []

    @classmethod
    def create(cls, settings: Settings) -> DeadLetters:
        """A DLQ writer with a producer sized for the largest record the DLQ topic takes."""
        producer = make_producer(settings, **{"message.max.bytes": DLQ_MAX_MESSAGE_BYTES})
        return cls(producer, settings.topics.dlq)

    def send(
        self,
        *,
        value: bytes | None,
        key: bytes | None,
        reason: str,
        detail: str,
        source_topic: str,
        source_partition: int,
        source_offset: int,
    ) -> None:
        headers = [
            ("anpr-reason", reason.encode()),
            ("anpr-error", detail.encode("utf-8", "replace")[:1024]),
            ("anpr-source-topic", source_topic.encode()),
            ("anpr-source-partition", str(source_partition).encode()),
            ("anpr-source-offset", str(source_offset).encode()),
        ]
        if value is not None and len(value) > DLQ_MAX_VALUE_BYTES:
            value, headers = _cut(value, headers, DLQ_MAX_VALUE_BYTES)
        self._produce(value, key, headers)

    def _produce(self, value: bytes | None, key: bytes | None, headers: list[Any]) -> None:
        def delivered(error: Any, message: Any) -> None:
            if error is None:
                return
            if error.code() == KafkaError.MSG_SIZE_TOO_LARGE and value:
                self._too_large.append((value, key, headers))
            else:
                self._failed.append(str(error))

        while True:
            try:
                self._producer.produce(
                    self._topic, value=value, key=key, headers=headers, on_delivery=delivered
                )
                return
            except BufferError:
                # The local queue is full: serve delivery reports to make room, then retry.
                self._producer.poll(0.1)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE or not value:
                    raise BrokerError(f"dead-letter topic {self._topic}: {exc}") from exc
                # Larger than this producer may send: keep the start and say how much is cut.
                value, headers = _cut(value, headers, _FALLBACK_VALUE_BYTES)

    def flush(self) -> None:
        """Wait until every record is acknowledged by the broker, or raise :class:`BrokerError`.

        A record the DLQ topic refuses as too large (a cluster with a smaller
        ``max.message.bytes`` than we create) is sent again with its value cut, once.
        """
        remaining = self._producer.flush(_FLUSH_TIMEOUT_S)
        if self._too_large:
            retry, self._too_large = self._too_large, []
            for value, key, headers in retry:
                cut_value, cut_headers = _cut(value, headers, _FALLBACK_VALUE_BYTES)
                self._produce(cut_value, key, cut_headers)
            remaining = self._producer.flush(_FLUSH_TIMEOUT_S)
        if remaining or self._failed or self._too_large:
            failures, self._failed = self._failed, []
            raise BrokerError(
                f"dead-letter topic {self._topic}: {remaining} records not acknowledged, "
                f"{len(failures) + len(self._too_large)} failed ({'; '.join(failures[:3])})"
            )


def _cut(value: bytes, headers: list[Any], limit: int) -> tuple[bytes, list[Any]]:
    """The first ``limit`` bytes of ``value``, and the headers plus its original size."""
    if any(name == "anpr-original-size" for name, _ in headers):
        return value[:limit], headers
    return value[:limit], [*headers, ("anpr-original-size", str(len(value)).encode())]
