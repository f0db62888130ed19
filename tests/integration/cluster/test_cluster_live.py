"""`anpr live` on two "hosts": one active, one on standby behind the group's lock in the catalog
database; the standby raises the hits once the active one is SIGKILLed (ADR 0005).

Observed as tests/integration/test_live.py does (its LiveRun, reads and deadlines): the apps'
/metrics, their logs, and the hits topic read by a consumer of the test's own.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from test_live import LiveRun, iso, read, wait_until

from pipeline.kafka.clients import make_producer
from pipeline.kafka.local import free_port
from tests.integration.cluster.conftest import Shared

TAKEOVER_S = 30.0  # issue 17: a standby takes over within 30 s
LISTED = "SB10001"


class Hits:
    """The hits topic as a consumer that keeps every hit it has seen."""

    def __init__(self, shared: Shared) -> None:
        self.topic = shared.env["ANPR_TOPICS_WATCHLIST_HITS"]
        self.consumer = Consumer(
            {
                "bootstrap.servers": shared.info.bootstrap,
                "group.id": f"hits-reader-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self.consumer.subscribe([self.topic])
        self.seen: list[dict[str, Any]] = []

    def of(self, event_id: str) -> list[dict[str, Any]]:
        for message in self.consumer.consume(100, timeout=0.2):
            if message.error() is None:
                self.seen.append(json.loads(message.value()))
        return [h for h in self.seen if h["event_id"] == event_id]


def committed(shared: Shared, group: str) -> int:
    """The group's committed offsets on the reads topic, summed."""
    topic = shared.env["ANPR_TOPICS_PLATE_READS"]
    consumer = Consumer({"bootstrap.servers": shared.info.bootstrap, "group.id": group})
    try:
        parts = [TopicPartition(topic, p) for p in range(shared.settings().topics.partitions)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


def test_a_standby_raises_the_hits_within_30_s_of_the_active_instance_being_killed(
    shared: Shared,
) -> None:
    group = f"anpr-live-{uuid.uuid4().hex[:8]}"
    settings = shared.settings()
    producer = make_producer(settings)

    def send(topic: str, key: bytes, value: dict[str, object]) -> None:
        producer.produce(topic, json.dumps(value).encode(), key)
        assert producer.flush(30) == 0

    expires = iso(datetime.now(UTC) + timedelta(days=1))
    entry = {"list": "stolen", "reason": "R12", "added_by": "tester-1", "expires_at": expires}
    send(settings.topics.watchlist, LISTED.encode(), entry)

    def start(host: str) -> LiveRun:
        home = shared.root / host
        home.mkdir(parents=True, exist_ok=True)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ANPR_")},
            **shared.host_env(host),
            "ANPR_LIVE_CONSUMER_GROUP": group,
            "ANPR_LIVE_METRICS_PORT": str(free_port()),
            "ANPR_LIVE_CHECK_INTERVAL_S": "0.2",
            "ANPR_LIVE_BATCH_WITHIN_S": "0.05",
            "ANPR_LOG_LEVEL": "INFO",
        }
        run = LiveRun(env, home / "live.log")
        runs.append(run)
        return run

    def hit_of(event_id: str, by: LiveRun, timeout: float) -> None:
        send(settings.topics.plate_reads, b"site", read(event_id, LISTED))
        wait_until(lambda: by._alive() and bool(hits.of(event_id)), f"hit {event_id}", timeout)

    hits = Hits(shared)
    runs: list[LiveRun] = []
    first = start("host-a")
    try:
        first.wait_metric("anpr_watchlist_entries", 1)  # active: it recovered the watchlist
        second = start("host-b")
        wait_until(
            lambda: second._alive() and "on standby" in second.log.read_text(), "the standby"
        )
        hit_of("e-before", first, 60)
        assert second.metric("anpr_watchlist_entries") is None  # no /metrics: not active
        # Known gap (ADR 0005): a partition the group has never committed, taken over while
        # it holds messages, was left unconsumed by the standby; so kill after the first commit.
        wait_until(lambda: committed(shared, group) >= 1, "the active instance's first commit")
        first.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        first.proc.wait(30)
        hit_of("e-after", second, TAKEOVER_S)
        took = time.monotonic() - killed
        print(f"standby raised the hit {took:.1f} s after the kill")
        assert took < TAKEOVER_S
        assert "is the active instance" in second.log.read_text()
        assert second.stop() == 0
    finally:
        hits.consumer.close()
        for run in runs:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait(30)
