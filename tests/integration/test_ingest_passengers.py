"""Passenger lists end to end on the real broker and real DuckLake: JSON and PAXLST mixed,
rejections with reasons, kill -9 and restart, and the README's analyst join."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from pipeline.codec.passenger_lists import decode_passenger_lists
from pipeline.codec.paxlst import write_interchange
from pipeline.config import Settings, load_settings
from pipeline.ingest.passengers import PassengerDecoder
from pipeline.ingest.worker import IngestTotals, LakeIngestor, RunLimits
from pipeline.kafka.admin import topic_plan
from pipeline.kafka.clients import make_producer
from pipeline.kafka.local import free_port
from pipeline.lake.catalog import Lake
from pipeline.metrics import IngestMetrics
from pipeline.reference.plates import normalise_plate
from pipeline.reference.sites import SiteRegistry
from pipeline.simulate.passengers import (
    JOIN_AFTER,
    JOIN_BEFORE,
    crew_list,
    departures,
    encode,
    encode_json,
)
from pipeline.simulate.produce import simulate_plates
from pipeline.simulate.traffic import TrafficModel

if TYPE_CHECKING:
    from tests.integration.conftest import RunAnpr

START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
README = Path(__file__).resolve().parents[2] / "README.md"


@dataclass(frozen=True)
class Env:
    settings: Settings
    env: dict[str, str]
    registry: SiteRegistry


@pytest.fixture
def penv(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path, registry: SiteRegistry
) -> Env:
    base = load_settings(None, env={})
    configs = {spec.name: spec.config for spec in topic_plan(base)}
    lists = make_topic(3, configs[base.topics.passengers])
    reads = make_topic(2, configs[base.topics.plate_reads])
    dlq = make_topic(1, configs[base.topics.dlq])
    env = {
        "ANPR_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ANPR_TOPICS_PASSENGERS": lists,
        "ANPR_TOPICS_PLATE_READS": reads,
        "ANPR_TOPICS_DLQ": dlq,
        "ANPR_PASSENGERS_CONSUMER_GROUP": f"gp-{lists}",
        "ANPR_INGEST_CONSUMER_GROUP": f"g-{reads}",
        "ANPR_LAKE_PATH": str(tmp_path / "lake"),
        "ANPR_STATE_DIR": str(tmp_path / "state"),
        "ANPR_PASSENGERS_METRICS_PORT": "0",
        "ANPR_INGEST_METRICS_PORT": "0",
    }
    return Env(load_settings(None, env=env), env, registry)


def produce(env: Env, values: list[bytes | None]) -> None:
    producer = Producer(
        {
            "bootstrap.servers": env.settings.kafka.bootstrap_servers,
            "message.max.bytes": 12 * 1024 * 1024,
            "linger.ms": 5,
        }
    )
    failures: list[Any] = []
    for value in values:
        # Operators key by carrier:voyage, so a resent list lands in the same partition; the
        # digest of the value does the same here.
        producer.produce(
            env.settings.topics.passengers,
            key=hashlib.sha256(value or b"").hexdigest()[:8].encode(),
            value=value,
            on_delivery=lambda err, _m: failures.append(err) if err else None,
        )
        producer.poll(0)
    assert producer.flush(60) == 0
    assert failures == []


def run_ingest(env: Env) -> tuple[IngestTotals, CollectorRegistry]:
    metrics_registry = CollectorRegistry()
    with Lake.open(env.settings.lake.path) as lake:
        ingestor = LakeIngestor.connect(
            env.settings,
            PassengerDecoder(env.settings),
            lake=lake,
            metrics=IngestMetrics(metrics_registry),
        )
        totals = ingestor.run(RunLimits(until_idle_s=2.0))
    return totals, metrics_registry


def lake_rows(env: Env, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with Lake.open(env.settings.lake.path, read_only=True) as lake:
        return [tuple(r) for r in lake.con.execute(sql, params or []).fetchall()]


def read_dlq(env: Env, expected: int, timeout: float = 30.0) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": env.settings.kafka.bootstrap_servers,
            "group.id": f"dlq-{env.settings.topics.dlq}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([env.settings.topics.dlq])
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            records.extend(m for m in consumer.consume(100, timeout=0.5) if m.error() is None)
    finally:
        consumer.close()
    return records


def simulated_lists(registry: SiteRegistry, *, seed: int, plate_reads: int) -> list[bytes]:
    rng = random.Random(seed)
    values = []
    for n, d in enumerate(departures(registry, seed=seed, start=START, plate_reads=plate_reads)):
        lists = [d.manifest, crew_list(rng, d.manifest)] if n % 4 == 0 else [d.manifest]
        values.append(encode(rng, lists, 0.5))
    return values


def expected_ids(values: list[bytes]) -> set[str]:
    batch = decode_passenger_lists(
        values, [int(time.time() * 1000)] * len(values), retention_cutoff=START - timedelta(days=9)
    )
    assert batch.rejected == []
    return set(batch.table["person_id"].to_pylist())


def header(record: Any, name: str) -> str:
    return dict(record.headers())[name].decode()


# --- the tests ---------------------------------------------------------------------------


def test_mixed_json_and_paxlst_stream_lands_exactly_and_rejects_reconcile(penv: Env) -> None:
    good = simulated_lists(penv.registry, seed=11, plate_reads=20_000)
    assert {v[:1] for v in good} >= {b"{", b"U"}  # both formats present
    ids = expected_ids(good)
    one = departures(penv.registry, seed=11, start=START, plate_reads=20_000)
    sample = next(one).manifest
    paxlst = write_interchange([sample]).decode()
    bad: dict[str, bytes | None] = {
        "control_total_mismatch": paxlst.replace("CNT+42:", "CNT+42:9").encode(),
        "malformed_edifact": paxlst[: paxlst.index("UNT+")].encode(),  # no UNT
        "malformed_json": b"\x00\x9f\xff binary garbage \x01",
        "oversized": b'{"schema":"passenger_list/1","pad":"' + b"x" * 10_000_000 + b'"}',
        "empty_value": None,
        "schema_violation": encode_json(sample).replace(b'"direction":"exit"', b'"direction":"up"'),
    }
    values = good[:10] + list(bad.values()) + good[10:] + good[:5]  # the last 5: sent again
    produce(penv, values)
    totals, metrics = run_ingest(penv)

    assert totals.consumed == len(values)
    assert totals.reconciles()
    assert totals.rejected_by_reason == dict.fromkeys(bad, 1)
    stored = Counter(r[0] for r in lake_rows(penv, "SELECT person_id FROM passengers"))
    assert set(stored) == ids
    assert max(stored.values()) == 1  # the resent lists were dropped as repeats
    records = read_dlq(penv, len(bad))
    assert sorted(header(r, "anpr-reason") for r in records) == sorted(bad)
    cut = next(r for r in records if header(r, "anpr-reason") == "oversized")
    assert int(header(cut, "anpr-original-size")) > 10_000_000
    # Metrics by format and role reconcile with the rows.
    people = sum(
        metrics.get_sample_value("anpr_people_written_total", {"format": f, "role": r}) or 0
        for f in ("json", "paxlst")
        for r in ("passenger", "crew", "driver")
    )
    assert people == len(ids)
    assert (metrics.get_sample_value("anpr_people_written_total",
                                     {"format": "paxlst", "role": "crew"}) or 0) > 0  # fmt: skip
    # Names upper case; plates normalised; contact details nowhere.
    assert lake_rows(
        penv,
        "SELECT count(*) FROM passengers WHERE surname <> upper(surname) "
        "OR NOT regexp_full_match(vehicle_plate, '[A-Z0-9]+')",
    ) == [(0,)]


def _people_written(port: int) -> float:
    """``anpr_people_written_total`` of a running worker; 0 before its /metrics answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "anpr_people_written_total"
    )


def test_sigkill_and_restart_store_every_person_once(penv: Env, anpr: RunAnpr) -> None:
    values = simulated_lists(penv.registry, seed=23, plate_reads=120_000)
    ids = expected_ids(values)
    produce(penv, values)
    child_env = {
        **os.environ,
        **penv.env,
        "ANPR_LOG_LEVEL": "WARNING",
        "ANPR_PASSENGERS_BATCH_SIZE": "3",
    }
    rng = random.Random(3)
    kills = 0
    while kills < 3:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "ingest", "passengers", "--until-idle", "5"],
            env={**child_env, "ANPR_PASSENGERS_METRICS_PORT": str(port)},
        )
        # Kill mid-stream: once this worker has committed a batch, at a random moment after.
        deadline = time.monotonic() + 120
        while _people_written(port) == 0 and proc.poll() is None:
            assert time.monotonic() < deadline, "the worker committed nothing in 120 s"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        kills += 1
    assert kills == 3, "the ingest finished too fast to be killed three times"
    final = anpr(child_env, "ingest", "passengers", "--until-idle", "5", timeout=600)
    assert final.returncode == 0, final.stderr

    stored = Counter(r[0] for r in lake_rows(penv, "SELECT person_id FROM passengers"))
    assert set(stored) == ids
    assert max(stored.values()) == 1
    assert lake_rows(penv, "SELECT sum(next_offset) FROM ingest_offsets") == [(len(values),)]


def readme_join_sql() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- join-example -->")
    return text[start:].split("```sql\n", 1)[1].split("```", 1)[0]


def test_readme_join_returns_the_reads_of_the_vehicles_on_a_departure(
    penv: Env, anpr: RunAnpr
) -> None:
    plate_reads, seed = 20_000, 5
    start = START.isoformat()
    env = {**os.environ, **penv.env, "ANPR_LOG_LEVEL": "WARNING"}
    simulate_plates(
        make_producer(penv.settings),
        penv.settings.topics.plate_reads,
        penv.registry,
        count=plate_reads,
        start=START,
        seed=seed,
    )
    sent = anpr(env, "simulate", "passengers", "--plate-reads", str(plate_reads),
                "--start", start, "--seed", str(seed))  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    for kind in ("plates", "passengers"):
        done = anpr(env, "ingest", kind, "--until-idle", "3", timeout=300)
        assert done.returncode == 0, done.stderr

    # The departure with the most vehicles, and what the join must find for it: every read
    # of one of its vehicles at that terminal within the window, computed without SQL.
    chosen = max(
        departures(penv.registry, seed=seed, start=START, plate_reads=plate_reads),
        key=lambda d: len(d.reads),
    )
    m = chosen.manifest
    assert m.departure_at is not None
    on_board = {normalise_plate(p.vehicle_plate) for p in m.people if p.vehicle_plate}
    reads = TrafficModel(penv.registry, seed=seed).reads(START)
    expected = set()
    for _ in range(plate_reads):
        r = next(reads)
        at = datetime.fromisoformat(str(r["captured_at"]))
        if (
            r["site_id"] == chosen.site_id
            and normalise_plate(str(r["plate"])) in on_board
            and m.departure_at - JOIN_BEFORE <= at <= m.departure_at + JOIN_AFTER
        ):
            expected.add(str(r["event_id"]))
    assert expected

    sql = readme_join_sql()
    found = lake_rows(penv, sql, [m.carrier, m.voyage_id, chosen.site_id])
    assert {row[0] for row in found} == expected
    # One row per read and person travelling with that vehicle: drivers are always there.
    assert {row[3] for row in found} >= {"driver"}
