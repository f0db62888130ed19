"""The activity log's head, anchored outside its host: the compacted topic ``anpr.audit-anchors``.

The service publishes ``{"seq", "mac"}`` of the log's last entry under one key, every
``access.anchor_every_entries`` entries and every ``access.anchor_interval_s`` seconds (so a
quiet log is anchored too). The topic is replicated and compacted: the newest anchor always
survives, and its MAC covers every entry before it. :func:`verify_log` checks a log against
what the topic holds; a topic that cannot be read fails verification (fail closed).

    publisher = AnchorPublisher.from_settings(settings)
    log = ActivityLog(path, key, on_append=publisher)
    publisher.start(log.head())
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from pipeline.access.audit import ActivityLog, Anchor, Head, Verdict
from pipeline.config import Settings
from pipeline.kafka.clients import make_consumer, make_producer

logger = logging.getLogger(__name__)

ANCHOR_KEY = b"activity-log"
_READ_TIMEOUT_S = 15.0


class AnchorPublisher:
    """Publishes the newest head it was given: on every ``every``-th entry and on a timer."""

    def __init__(
        self,
        producer: Any,
        topic: str,
        *,
        every: int,
        interval_s: float,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._every = every
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._latest: Head | None = None
        self._since = 0  # entries since the last anchor was sent
        self._sent = -1  # seq of the last anchor handed to the producer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AnchorPublisher:
        producer = make_producer(settings, **{"linger.ms": 0, "compression.type": "none"})
        return cls(
            producer,
            settings.topics.audit_anchors,
            every=settings.access.anchor_every_entries,
            interval_s=settings.access.anchor_interval_s,
        )

    def __call__(self, head: Head) -> None:
        """``ActivityLog``'s ``on_append``: remember the head, anchor it every N entries."""
        with self._lock:
            self._latest = head
            self._since += 1
            due = self._since >= self._every
        if due:
            self.publish()
        self._producer.poll(0)  # serve delivery reports without blocking the request

    def publish(self) -> None:
        """Send the newest head unless it was sent already (never blocks on the broker)."""
        with self._lock:
            head = self._latest
            if head is None or head.next_seq == 0 or head.next_seq - 1 == self._sent:
                return
            seq = head.next_seq - 1
            value = json.dumps({"seq": seq, "mac": head.last_mac}, separators=(",", ":"))
            try:
                self._producer.produce(
                    self._topic, key=ANCHOR_KEY, value=value.encode(), on_delivery=_delivered
                )
            except (BufferError, KafkaException) as exc:
                logger.warning("cannot queue the audit anchor for seq %d: %s", seq, exc)
                return
            self._sent, self._since = seq, 0

    def start(self, head: Head | None) -> None:
        """Anchor ``head`` (the log as the service found it) now, then every interval."""
        with self._lock:
            self._latest = head
        self.publish()
        self._thread = threading.Thread(target=self._run, name="audit-anchors", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.publish()
            remaining = self._producer.flush(self._interval_s / 2)
            if remaining:
                logger.warning("%d audit anchors not yet acknowledged by Kafka", remaining)

    def close(self, timeout_s: float = 10.0) -> None:
        """Anchor the final head and wait for Kafka to acknowledge it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.publish()
        if self._producer.flush(timeout_s):
            logger.error("the last audit anchor was not acknowledged by Kafka")


def _delivered(error: KafkaError | None, message: Any) -> None:
    if error is not None:
        logger.error("audit anchor not stored by Kafka: %s", error)


class AnchorsUnavailable(Exception):
    """The anchor topic could not be read to its end."""


def read_anchors(settings: Settings, *, timeout_s: float = _READ_TIMEOUT_S) -> list[Anchor]:
    """Every anchor the topic still holds (compaction keeps at least the newest)."""
    topic = settings.topics.audit_anchors
    # A throwaway group that never commits: reading never moves anything for anyone.
    consumer = make_consumer(settings, f"anpr-audit-verify-{uuid.uuid4().hex}")
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise AnchorsUnavailable(f"topic {topic} does not exist: run `anpr topics create`")
        ends: dict[int, int] = {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout_s
            )
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        return _consume_to(consumer, ends, time.monotonic() + timeout_s)
    except KafkaException as exc:
        raise AnchorsUnavailable(f"cannot read {topic}: {exc.args[0]}") from None
    finally:
        consumer.close()


def _consume_to(consumer: Any, ends: dict[int, int], deadline: float) -> list[Anchor]:
    anchors: list[Anchor] = []
    pending = dict(ends)
    while pending:
        if time.monotonic() > deadline:
            raise AnchorsUnavailable("timed out reading the anchors")
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error() is not None:
            raise AnchorsUnavailable(f"reading the anchors: {message.error()}")
        partition, offset = message.partition(), message.offset()
        if message.key() == ANCHOR_KEY and message.value() is not None:
            data = json.loads(message.value())
            anchors.append(Anchor(int(data["seq"]), str(data["mac"])))
        if offset + 1 >= pending.get(partition, 0):
            pending.pop(partition, None)
    return anchors


def verify_log(
    settings: Settings,
    log: ActivityLog,
    *,
    anchors: Callable[[Settings], list[Anchor]] = read_anchors,
) -> Verdict:
    """``anpr audit verify``: ``log`` against its audit key and the anchors."""
    try:
        found = anchors(settings)
    except AnchorsUnavailable as exc:
        return Verdict(False, 0, problem=f"cannot check the anchors: {exc}")
    return log.verify(found)
