"""Synthetic plate reads for benchmarks: a pool from the traffic model, replayed fast.

The traffic model makes about 60k reads/s in one process, too slow for a 5M backlog. So a
pool (200k by default) is generated once, about 1% of it replaced by hostile variants, and
replayed round after round. Every replay rewrites the event id by appending ``.r<round>``
(so ids stay unique, at most 64 characters and within the event id pattern) and, in live
mode, the capture time (the wall clock at send time). The model's retransmissions stay
repeats within their round, so the dedup filter has real work.

The rewriting works on bytes: each pool value is cut once around its event id and its
``captured_at`` value, and a replayed value is a few concatenations.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Producer

from benchmarks.common import say
from pipeline.reference.sites import SiteRegistry
from pipeline.simulate.hostile import VARIANTS
from pipeline.simulate.traffic import TrafficModel, encode

# Huge variants (deep nesting is 200 kB, oversized 70 kB) appear once per pool: rare, as in
# real traffic, instead of 1% of the bytes on the wire.
RARE_VARIANTS = ("deep_nesting", "oversized")
COMMON_VARIANTS = tuple(sorted(set(VARIANTS) - set(RARE_VARIANTS)))

# aiokafka (under faust) has no lz4 or zstd codec here (cramjam is not installed), and every
# consumer must read the same bytes: the benchmark topics are uncompressed.
UNCOMPRESSED = "none"

_ID_FIELD = b'"event_id":"'
_TIME_FIELD = b'"captured_at":"'


@dataclass(frozen=True, slots=True)
class Template:
    """One pool value cut around its event id end and its capture time.

    ``value = head + suffix + mid + stamp + tail``; a value without those fields (a hostile
    one) is all ``head`` and is replayed unchanged.
    """

    key: bytes
    head: bytes
    mid: bytes = b""
    stamp: bytes = b""
    tail: bytes = b""
    valid: bool = False

    @classmethod
    def cut(cls, key: bytes, value: bytes) -> Template:
        start = value.find(_ID_FIELD)
        if start < 0:
            return cls(key, value)
        id_end = value.index(b'"', start + len(_ID_FIELD))
        time_start = value.find(_TIME_FIELD, id_end)
        if time_start < 0:
            return cls(key, value)
        time_start += len(_TIME_FIELD)
        time_end = value.index(b'"', time_start)
        return cls(
            key,
            value[:id_end],
            value[id_end:time_start],
            value[time_start:time_end],
            value[time_end:],
            valid=True,
        )

    def replay(self, suffix: bytes) -> bytes:
        if not self.valid:
            return self.head
        return self.head + suffix + self.mid + self.stamp + self.tail

    def live(self, suffix: bytes, stamp: bytes) -> bytes:
        if not self.valid:
            return self.head
        return self.head + suffix + self.mid + stamp + self.tail


def make_pool(
    registry: SiteRegistry, size: int, *, bad_ratio: float = 0.01, seed: int = 7
) -> list[Template]:
    """``size`` reads ending shortly before now, ``bad_ratio`` of them hostile."""
    model = TrafficModel(registry, seed=seed)
    reads = model.reads(model.start_for(size, datetime.now(UTC)))
    rng = random.Random(seed)
    pool = []
    for i in range(size):
        read = next(reads)
        key, value = encode(read)
        if i < len(RARE_VARIANTS):
            pool.append(Template(key, VARIANTS[RARE_VARIANTS[i]](read, rng)))
        elif rng.random() < bad_ratio:
            pool.append(Template(key, VARIANTS[rng.choice(COMMON_VARIANTS)](read, rng)))
        else:
            pool.append(Template.cut(key, value))
    return pool


def replayed(pool: list[Template], start: int, count: int) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of replay positions ``start`` .. ``start + count - 1``."""
    end = start + count
    position = start
    while position < end:
        round_, index = divmod(position, len(pool))
        suffix = b".r%d" % round_
        stop = min(len(pool), index + end - position)
        for template in pool[index:stop]:
            yield template.key, template.replay(suffix)
        position += stop - index


def bulk_producer(bootstrap: str) -> Any:
    """Throughput settings: big lingering batches, leader acks."""
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "compression.type": UNCOMPRESSED,
            "acks": 1,
            "queue.buffering.max.messages": 1_000_000,
            "message.max.bytes": 4 * 1024 * 1024,
        }
    )


def produce_backlog(
    bootstrap: str, topic: str, pool: list[Template], *, start: int, count: int
) -> float:
    """Produce replay positions ``start`` .. ``start + count - 1``; return the seconds taken."""
    producer = bulk_producer(bootstrap)
    produce = producer.produce
    began = time.monotonic()
    step = max(count // 10, 1)
    for n, (key, value) in enumerate(replayed(pool, start, count), 1):
        while True:
            try:
                produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        if n % step == 0:
            say(f"  produced {n:,}/{count:,} ({n / (time.monotonic() - began):,.0f}/s)")
    remaining = producer.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} messages not delivered to {topic}")
    return time.monotonic() - began


def live_producer(bootstrap: str) -> Any:
    """Latency settings: small lingering, leader acks, uncompressed."""
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "compression.type": UNCOMPRESSED,
            "acks": 1,
            "message.max.bytes": 4 * 1024 * 1024,
        }
    )


@dataclass(frozen=True)
class Offered:
    sent: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def produce_live(
    bootstrap: str,
    topic: str,
    pool: list[Template],
    *,
    rate: float,
    seconds: float,
    start: int = 0,
    at: tuple[float, Callable[[], None]] | None = None,
) -> Offered:
    """Offer ``rate`` reads/s for ``seconds``, each stamped with the wall clock when sent.

    Paced in ticks of a few milliseconds against the clock (no drift); the capture time is
    taken once per tick, so it is at most a tick earlier than the send. ``at = (s, fn)``
    calls ``fn`` once, ``s`` seconds in.
    """
    producer = live_producer(bootstrap)
    # Connected before the clock starts, like a camera gateway that is up: otherwise the first
    # reads' latency includes this producer's bootstrap and metadata round trips.
    producer.list_topics(topic, timeout=30)
    tick = 0.005
    began = time.monotonic()
    sent = 0
    position = start
    pending_hook = at
    while (elapsed := time.monotonic() - began) < seconds:
        if pending_hook is not None and elapsed >= pending_hook[0]:
            pending_hook[1]()
            pending_hook = None
        due = int(rate * elapsed) - sent
        if due > 0:
            now = time.time()
            stamp = (
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
                + f".{int(now % 1 * 1000):03d}Z"
            ).encode()
            for _ in range(due):
                round_, index = divmod(position, len(pool))
                template = pool[index]
                value = template.live(b".l%d" % round_, stamp)
                try:
                    producer.produce(topic, value, template.key)
                except BufferError:
                    producer.poll(0.01)
                    producer.produce(topic, value, template.key)
                position += 1
            sent += due
        producer.poll(0)
        time.sleep(tick)
    elapsed = time.monotonic() - began
    remaining = producer.flush(30)
    if remaining:
        raise RuntimeError(f"{remaining} live messages not delivered to {topic}")
    return Offered(sent, elapsed)


def prebuild_live(
    pool: list[Template], *, rate: float, seconds: float, start: int = 0
) -> list[tuple[bytes, bytes]]:
    """The (key, value) pairs a live run of ``rate`` x ``seconds`` sends, built before it starts
    so the sending loop spends no CPU making them. Each is stamped with its planned send time
    from now on (at or before its real send, never in the future)."""
    began = time.time()
    count = int(rate * seconds)
    messages: list[tuple[bytes, bytes]] = []
    stamp_of_ms: dict[int, bytes] = {}
    for n in range(count):
        planned_ms = int((began + n / rate) * 1000)
        stamp = stamp_of_ms.get(planned_ms)
        if stamp is None:
            stamp = stamp_of_ms.setdefault(
                planned_ms,
                (
                    time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(planned_ms // 1000))
                    + f".{planned_ms % 1000:03d}Z"
                ).encode(),
            )
        round_, index = divmod(start + n, len(pool))
        template = pool[index]
        messages.append((template.key, template.live(b".l%d" % round_, stamp)))
    return messages


def produce_prebuilt(
    bootstrap: str,
    topic: str,
    messages: list[tuple[bytes, bytes]],
    *,
    rate: float,
    at: tuple[float, Callable[[], None]] | None = None,
) -> Offered:
    """Send pre-built ``messages`` at ``rate`` per second, paced in ticks against the clock.
    ``at = (s, fn)`` calls ``fn`` once, ``s`` seconds in."""
    producer = live_producer(bootstrap)
    producer.list_topics(topic, timeout=30)  # connected before the clock starts
    produce = producer.produce
    began = time.monotonic()
    sent = 0
    pending_hook = at
    while sent < len(messages):
        elapsed = time.monotonic() - began
        if pending_hook is not None and elapsed >= pending_hook[0]:
            pending_hook[1]()
            pending_hook = None
        due = min(int(rate * elapsed), len(messages))
        for key, value in messages[sent:due]:
            try:
                produce(topic, value, key)
            except BufferError:
                producer.poll(0.01)
                produce(topic, value, key)
        sent = max(sent, due)
        producer.poll(0)
        time.sleep(0.005)
    elapsed = time.monotonic() - began
    remaining = producer.flush(30)
    if remaining:
        raise RuntimeError(f"{remaining} live messages not delivered to {topic}")
    return Offered(sent, elapsed)
