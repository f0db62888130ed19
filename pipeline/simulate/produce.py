"""``anpr simulate plates``: send synthetic camera reads to Kafka.

Two modes:

- **backlog** (``--start`` given, or ``--rate 0``): capture times follow the traffic model from
  ``--start``, produced as fast as the broker takes them;
- **live** (``--rate N`` without ``--start``): N reads per second, each stamped with the wall
  clock when it is sent, as a camera would.

``--formats`` picks which cameras of the registry send: ``canonical`` cameras send
``plate_read/1``; cameras registered with a vendor send that vendor's payload.
"""

from __future__ import annotations

import collections
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.errors import BrokerError
from pipeline.reference.sites import SiteRegistry
from pipeline.simulate.hostile import corrupt
from pipeline.simulate.traffic import TrafficModel, encode
from pipeline.simulate.vendor_payloads import encode_vendor

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]
_RECENT_IDS = 10_000  # retransmissions follow their original within a second


@dataclass
class SimulationSummary:
    produced: int = 0
    hostile: int = 0
    hostile_by_variant: dict[str, int] = field(default_factory=dict)
    first_captured_at: str | None = None
    last_captured_at: str | None = None


def simulate_plates(
    producer: Any,
    topic: str,
    registry: SiteRegistry,
    *,
    count: int,
    rate: float = 0.0,
    start: datetime | None = None,
    bad_ratio: float = 0.0,
    seed: int = 1,
    passages_per_hour: float = 1500.0,
    formats: Sequence[str] = ("canonical",),
    progress: Progress | None = None,
) -> SimulationSummary:
    """Produce ``count`` reads (some hostile, at ``bad_ratio``) and wait for every ack."""
    if not 0.0 <= bad_ratio <= 1.0:
        raise ValueError("bad_ratio must be within 0..1")
    live = rate > 0 and start is None
    rng = random.Random(seed ^ 0x5EED)
    model = TrafficModel(registry, seed=seed, passages_per_hour=passages_per_hour, formats=formats)
    vendor_rng = random.Random(seed ^ 0xCA3E)
    if start is None:
        start = model.start_for(count, datetime.now(UTC))
    summary = SimulationSummary()
    failures: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    began = time.monotonic()
    reads = model.reads(start)
    # Event ids sent lately, with their live capture time: a camera's retransmission repeats
    # the event exactly (same time, Hikvision flags it), so it must not be stamped anew.
    recent: collections.OrderedDict[str, str] = collections.OrderedDict()
    for n in range(count):
        read = dict(next(reads))
        event_id = str(read["event_id"])
        repeat = event_id in recent
        if live:
            if not repeat:
                recent[event_id] = datetime.now(UTC).isoformat(timespec="milliseconds")
            read["captured_at"] = recent[event_id]
        elif not repeat:
            recent[event_id] = ""
        if len(recent) > _RECENT_IDS:
            recent.popitem(last=False)
        key, value = encode(read)
        headers: list[tuple[str, bytes]] | None = None
        camera = registry.camera(str(read["camera_id"]))
        if camera is not None and camera.vendor != "canonical":
            # What this camera's own software sends (images included; ingest drops them).
            value, content_type = encode_vendor(read, camera, vendor_rng, retransmission=repeat)
            headers = [("content-type", content_type.encode())]
        if bad_ratio and rng.random() < bad_ratio:
            variant, value = corrupt(read, rng)
            summary.hostile += 1
            summary.hostile_by_variant[variant] = summary.hostile_by_variant.get(variant, 0) + 1
        _produce(producer, topic, key, value, headers, delivered)
        summary.produced += 1
        if summary.first_captured_at is None:
            summary.first_captured_at = str(read["captured_at"])
        summary.last_captured_at = str(read["captured_at"])
        if rate > 0:
            # Pace against the wall clock, not per message sleeps that drift.
            ahead = (n + 1) / rate - (time.monotonic() - began)
            if ahead > 0.001:
                producer.poll(0)
                time.sleep(ahead)
        if progress is not None and (n + 1) % 10_000 == 0:
            progress(n + 1)
    remaining = producer.flush(60)
    if remaining or failures:
        raise BrokerError(
            f"{remaining} reads not acknowledged, {len(failures)} failed: {failures[:3]}"
        )
    if progress is not None:
        progress(count)
    return summary


def _produce(
    producer: Any,
    topic: str,
    key: bytes,
    value: bytes,
    headers: list[tuple[str, bytes]] | None,
    delivered: Callable[[Any, Any], None],
) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value, headers=headers, on_delivery=delivered)
            return
        except BufferError:
            producer.poll(0.05)  # queue full: let deliveries drain, then retry
