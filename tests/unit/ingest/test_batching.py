"""Adaptive batches: small when the worker has caught up, large under a backlog, in budget."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from pipeline.config import IngestSettings, Settings
from pipeline.ingest.plates import PlateDecoder
from pipeline.ingest.worker import LakeIngestor
from pipeline.metrics import IngestMetrics
from pipeline.reference.sites import SiteRegistry


@dataclass
class Message:
    size: int

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return b"x" * self.size


@dataclass
class Fetched:
    """A consumer whose local queue holds ``available`` messages of ``size`` bytes."""

    available: int
    size: int = 250
    asked: list[int] = field(default_factory=list)

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        self.asked.append(num_messages)
        n = min(num_messages, self.available)
        self.available -= n
        return [Message(self.size) for _ in range(n)]


def worker(consumer: Fetched, **ingest: Any) -> LakeIngestor[Any]:
    settings = Settings(ingest=IngestSettings(**ingest))
    decoder = PlateDecoder(settings, SiteRegistry(()))
    return LakeIngestor(
        decoder,
        consumer=consumer,  # type: ignore[arg-type]
        dead_letters=None,  # type: ignore[arg-type]
        lake=None,  # type: ignore[arg-type]
        metrics=IngestMetrics(CollectorRegistry()),
    )


def test_a_backlog_fills_the_batch_up_to_its_message_budget() -> None:
    consumer = Fetched(available=1_000_000)
    polled = worker(consumer, batch_size=100_000, batch_timeout_s=60)._poll(100_000)
    assert len(polled) == 100_000
    assert len(consumer.asked) == 10  # in chunks of 10,000


def test_a_worker_that_has_caught_up_commits_what_it_has_at_once() -> None:
    consumer = Fetched(available=12_345)
    # A generous time budget: the test is about the short chunk ending the batch, and a loaded
    # machine can take longer than the default 0.5 s to hand over the first chunks.
    polled = worker(consumer, batch_size=100_000, batch_timeout_s=60)._poll(100_000)
    assert len(polled) == 12_345
    assert consumer.available == 0


@dataclass
class Arriving:
    """A consumer that fetches ``per_poll`` new messages between two polls (live traffic)."""

    per_poll: int
    polls: int = 0

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        self.polls += 1
        return [Message(250) for _ in range(min(num_messages, self.per_poll))]


def test_live_traffic_is_handed_over_at_the_first_short_poll_when_the_writer_is_free() -> None:
    consumer = Arriving(per_poll=100)
    batch = worker(consumer, batch_timeout_s=60)._poll(50_000)
    assert len(batch) == 100
    assert consumer.polls == 1


def test_live_traffic_keeps_collecting_while_the_batch_before_is_written() -> None:
    consumer = Arriving(per_poll=100)
    ingestor = worker(consumer, batch_timeout_s=0.3)
    ingestor._writing = Future()  # the writer is busy until the time budget ends
    batch = ingestor._poll(50_000)
    assert consumer.polls > 1
    assert len(batch) == 100 * consumer.polls


def test_the_byte_budget_ends_a_batch_of_large_messages() -> None:
    consumer = Fetched(available=1_000_000, size=1_000)
    batch = worker(consumer, batch_max_bytes=4 * 1024 * 1024)._poll(100_000)
    assert len(batch) == 10_000  # the first chunk passes 4 MiB: no second chunk


def test_a_run_limit_smaller_than_a_chunk_is_respected() -> None:
    consumer = Fetched(available=1_000_000)
    assert len(worker(consumer)._poll(7)) == 7
