"""The local broker that `anpr kafka start` runs: data round-trips, idempotent start, stop."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from confluent_kafka import Consumer, KafkaError, Message, Producer

from pipeline.kafka import local

if TYPE_CHECKING:
    from tests.integration.conftest import LocalBroker

N_MESSAGES = 10_000
PARTITIONS = 4


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    failures: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(err)

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    for key, value in records:
        producer.produce(topic, value=value, key=key, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0, "messages still in flight after 30 s"
    assert failures == []


def _consume(bootstrap: str, topic: str, expected: int, timeout: float) -> list[Message]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error() is not None:
                    raise AssertionError(f"consume error: {msg.error()}")
                got.append(msg)
    finally:
        consumer.close()
    return got


def test_round_trip_every_message_comes_back_once(
    kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(partitions=PARTITIONS)
    sent = [(f"site-{i % 37}".encode(), f"read-{i:06d}".encode()) for i in range(N_MESSAGES)]

    _produce(kafka_bootstrap, topic, sent)
    received = _consume(kafka_bootstrap, topic, N_MESSAGES, timeout=60)

    assert Counter((m.key(), m.value()) for m in received) == Counter(sent)
    assert {m.partition() for m in received} == set(range(PARTITIONS))


def test_start_again_returns_the_running_pid_fast(
    kafka_broker: LocalBroker, kafka_jars: Path
) -> None:
    started = time.monotonic()
    again = local.start(kafka_broker.state_dir, kafka_broker.bootstrap, jars_dir=kafka_jars)
    elapsed = time.monotonic() - started

    assert again == kafka_broker.pid
    # A new JVM needs seconds to answer; finding the running one is a pid check and one probe.
    assert elapsed < 2.0


def test_status_true_for_the_broker_and_false_for_a_silent_port(kafka_bootstrap: str) -> None:
    assert local.status(kafka_bootstrap) is True
    assert local.status(f"127.0.0.1:{local.free_port()}", timeout=2) is False


def test_second_broker_stops_and_leaves_no_process(kafka_jars: Path, tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{local.free_port()}"
    pid = local.start(tmp_path, bootstrap, jars_dir=kafka_jars, heap_mb=256, timeout=120)
    assert local.status(bootstrap)

    assert local.stop(tmp_path) is True

    # stop() waits for (and reaps) the JVM, so nothing of it may remain, not even a zombie.
    assert not Path(f"/proc/{pid}").exists()
    assert not (tmp_path / "kafka" / "kafka.pid").exists()
    assert local.status(bootstrap, timeout=2) is False
    assert local.stop(tmp_path) is False
