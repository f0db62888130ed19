"""Passenger-list throughput in people/s: decoding JSON vs PAXLST, and ingest end to end.

In one run, on the same simulated departures (``pipeline.simulate.passengers``), each list
sent once as ``passenger_list/1`` JSON and once as a PAXLST interchange:

- **decode**: ``decode_passenger_lists`` in process (no Kafka, no lake), median of
  ``--repeats`` passes; ratio to JSON, the baseline;
- **ingest**: a real local Kafka broker and a real DuckLake lake; the lists are produced to a
  topic, then a passenger ``LakeIngestor`` drains it (people/s from the first consume to the last
  commit), once per format; ratio to JSON.

    .venv/bin/python -m benchmarks.passengers --quick
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from benchmarks.common import create_topics, local_broker, say
from pipeline.codec.passenger_lists import decode_passenger_lists
from pipeline.codec.paxlst import Manifest, write_interchange
from pipeline.codec.vendors import VENDOR_RULES
from pipeline.config import load_settings
from pipeline.ingest.passengers import PassengerDecoder
from pipeline.ingest.worker import IngestTotals, LakeIngestor, RunLimits
from pipeline.lake.catalog import Lake
from pipeline.metrics import IngestMetrics
from pipeline.reference.sites import DEFAULT_REGISTRY, load_registry
from pipeline.simulate.passengers import departures, encode_json

START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
CUTOFF = START - timedelta(days=150)


def manifests(plate_reads: int) -> list[Manifest]:
    registry = load_registry(DEFAULT_REGISTRY, VENDOR_RULES)
    return [d.manifest for d in departures(registry, seed=9, start=START, plate_reads=plate_reads)]


def encoded(lists: list[Manifest]) -> dict[str, list[bytes]]:
    rng = random.Random(1)
    return {
        "json": [encode_json(m) for m in lists],
        "paxlst": [
            write_interchange([m], reference=str(n), groups=rng.random() < 0.5)
            for n, m in enumerate(lists)
        ],
    }


def decode_rate(values: list[bytes], people: int, repeats: int) -> float:
    stamps = [int(time.time() * 1000)] * len(values)
    rates = []
    for _ in range(repeats):
        began = time.perf_counter()
        for i in range(0, len(values), 500):
            decode_passenger_lists(
                values[i : i + 500], stamps[i : i + 500], retention_cutoff=CUTOFF
            )
        rates.append(people / (time.perf_counter() - began))
    return statistics.median(rates)


def ingest_rate(bootstrap: str, fmt: str, values: list[bytes], work: Path) -> float:
    topic, dlq = f"bench-passengers-{fmt}", f"bench-dlq-{fmt}"
    create_topics(bootstrap, {topic: 4, dlq: 1})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "message.max.bytes": 4 * 1024 * 1024})  # fmt: skip
    for n, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, key=str(n).encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)
    settings = load_settings(
        None,
        env={
            "ANPR_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "ANPR_TOPICS_PASSENGERS": topic,
            "ANPR_TOPICS_DLQ": dlq,
            "ANPR_PASSENGERS_CONSUMER_GROUP": f"bench-{fmt}",
            "ANPR_LAKE_PATH": str(work / f"lake-{fmt}"),
        },
    )
    marks: list[float] = []

    def on_batch(totals: IngestTotals) -> None:
        marks.append(time.monotonic())

    with Lake.open(settings.lake.path) as lake:
        ingestor = LakeIngestor.connect(
            settings,
            PassengerDecoder(settings),
            lake=lake,
            metrics=IngestMetrics(CollectorRegistry()),
        )
        began = time.monotonic()
        totals = ingestor.run(RunLimits(until_idle_s=2.0), on_batch=on_batch)
    assert totals.rejected == 0, totals.rejected_by_reason
    # From the first consume to the last commit; the first batch waits for the group join,
    # so its wait is not counted: measured from the end of the first batch.
    people_after_first = totals.written - (totals.written / max(totals.batches, 1))
    span = marks[-1] - marks[0] if len(marks) > 1 else marks[-1] - began
    return people_after_first / span if len(marks) > 1 else totals.written / span


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run (about a minute)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    plate_reads = 60_000 if args.quick else 400_000
    lists = manifests(plate_reads)
    people = sum(len(m.people) for m in lists)
    values = encoded(lists)
    load = os.getloadavg()[0]
    say(f"{len(lists)} departures, {people} people; load average {load:.1f} on "
        f"{os.cpu_count()} cores")  # fmt: skip
    decode = {fmt: decode_rate(v, people, args.repeats) for fmt, v in values.items()}
    with tempfile.TemporaryDirectory(prefix="anpr-bench-passengers-") as tmp:
        work = Path(tmp)
        with local_broker(work / "kafka") as bootstrap:
            ingest = {fmt: ingest_rate(bootstrap, fmt, v, work) for fmt, v in values.items()}
    print()
    print("| stage | format | people/s (median) | ratio to JSON |")
    print("|---|---|---:|---:|")
    for stage, rates in (("decode", decode), ("ingest (broker + lake)", ingest)):
        for fmt, rate in rates.items():
            print(f"| {stage} | {fmt} | {rate:,.0f} | {rate / rates['json']:.2f} |")


if __name__ == "__main__":
    main()
