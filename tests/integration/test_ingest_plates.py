"""The hot path end to end on the real broker and real DuckLake files.

Each test gets its own topics and lake, so tests never see each other's data.
"""

from __future__ import annotations

import csv
import dataclasses
import getpass
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import NewPartitions
from prometheus_client import CollectorRegistry

from pipeline.codec.reasons import Reason
from pipeline.codec.vendors import VENDORS
from pipeline.config import Settings, load_settings
from pipeline.errors import ConfigError
from pipeline.ingest.plates import PlateDecoder
from pipeline.ingest.worker import IngestTotals, LakeIngestor, RunLimits
from pipeline.kafka.admin import topic_plan
from pipeline.kafka.clients import make_producer
from pipeline.lake.catalog import Lake
from pipeline.metrics import IngestMetrics
from pipeline.reference.passages import PassageGrouper
from pipeline.reference.sites import SiteRegistry
from pipeline.simulate.hostile import VARIANTS
from pipeline.simulate.produce import simulate_plates
from pipeline.simulate.traffic import TrafficModel, encode
from pipeline.simulate.vendor_payloads import encode_vendor, mapped_event_id
from tests.integration.conftest import running_service

if TYPE_CHECKING:
    from tests.integration.conftest import RunAnpr

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Env:
    """One test's pipeline: its own topics, consumer group and lake."""

    settings: Settings
    env: dict[str, str]  # the same, as ANPR_* variables for a subprocess
    registry: SiteRegistry

    @property
    def lake_path(self) -> Path:
        return self.settings.lake.path


@pytest.fixture
def pipeline_env(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path, registry: SiteRegistry
) -> Env:
    base = load_settings(None, env={})
    configs = {spec.name: spec.config for spec in topic_plan(base)}
    reads = make_topic(4, configs[base.topics.plate_reads])
    dlq = make_topic(1, configs[base.topics.dlq])
    env = {
        "ANPR_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ANPR_TOPICS_PLATE_READS": reads,
        "ANPR_TOPICS_DLQ": dlq,
        "ANPR_INGEST_CONSUMER_GROUP": f"g-{reads}",
        "ANPR_LAKE_PATH": str(tmp_path / "lake"),
        "ANPR_STATE_DIR": str(tmp_path / "state"),
        "ANPR_INGEST_METRICS_PORT": "0",
    }
    return Env(load_settings(None, env=env), env, registry)


def run_ingest(
    env: Env, *, until_idle: float = 2.0, clock: Callable[[], datetime] | None = None
) -> tuple[IngestTotals, CollectorRegistry]:
    """One in-process ingest run until idle; returns its totals and its metrics."""
    metrics_registry = CollectorRegistry()
    settings = env.settings
    extra: dict[str, Any] = {} if clock is None else {"clock": clock}
    with Lake.open(settings.lake.path) as lake:
        ingestor = LakeIngestor.connect(
            settings,
            PlateDecoder(settings, env.registry),
            lake=lake,
            metrics=IngestMetrics(metrics_registry),
            **extra,
        )
        totals = ingestor.run(RunLimits(until_idle_s=until_idle))
    return totals, metrics_registry


def produce(env: Env, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = Producer(
        {
            "bootstrap.servers": env.settings.kafka.bootstrap_servers,
            "message.max.bytes": 2 * 1024 * 1024,
            "linger.ms": 5,
        }
    )
    failures: list[Any] = []
    for key, value in messages:
        producer.produce(
            env.settings.topics.plate_reads,
            key=key,
            value=value,
            on_delivery=lambda err, _m: failures.append(err) if err else None,
        )
        producer.poll(0)
    assert producer.flush(30) == 0
    assert failures == []


def simulate(env: Env, count: int, *, seed: int = 7) -> set[str]:
    """Send ``count`` simulated reads; return their distinct event ids."""
    start = TrafficModel(env.registry, seed=seed).start_for(count, datetime.now(UTC))
    simulate_plates(
        make_producer(env.settings),
        env.settings.topics.plate_reads,
        env.registry,
        count=count,
        start=start,
        seed=seed,
    )
    reads = TrafficModel(env.registry, seed=seed).reads(start)
    return {str(next(reads)["event_id"]) for _ in range(count)}


def valid_reads(env: Env, count: int, *, seed: int = 3) -> list[dict[str, object]]:
    """``count`` valid reads ending in the recent past (no retransmissions)."""
    model = TrafficModel(env.registry, seed=seed, retransmit_ratio=0.0)
    reads = model.reads(model.start_for(count, datetime.now(UTC)))
    return [next(reads) for _ in range(count)]


def lake_rows(env: Env, sql: str) -> list[tuple[Any, ...]]:
    with Lake.open(env.lake_path, read_only=True) as lake:
        return [tuple(r.values()) for r in lake.execute(sql).to_arrow_table().to_pylist()]


def _committed_once(env: Env) -> bool:
    if not (env.lake_path / "catalog.sqlite").exists():
        return False
    try:
        return lake_rows(env, "SELECT count(*) FROM ingest_offsets") != [(0,)]
    except (duckdb.Error, ConfigError):
        return False  # the lake is still being created


def stored_ids(env: Env) -> Counter[str]:
    return Counter(r[0] for r in lake_rows(env, "SELECT event_id FROM plate_reads"))


def read_dlq(env: Env, expected: int, timeout: float = 30.0) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": env.settings.kafka.bootstrap_servers,
            "group.id": f"dlq-reader-{env.settings.topics.dlq}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([env.settings.topics.dlq])
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for m in consumer.consume(500, timeout=0.5):
                if m.error() is None:
                    records.append(m)
    finally:
        consumer.close()
    return records


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


# --- the tests ---------------------------------------------------------------------------


def test_every_produced_read_is_stored_once_and_counters_reconcile(pipeline_env: Env) -> None:
    reads = valid_reads(pipeline_env, 5000)
    repeats = reads[100:130]  # camera retransmissions: same event ids at new offsets
    produce(pipeline_env, [encode(r) for r in reads + repeats])

    totals, metrics = run_ingest(pipeline_env)

    ids = stored_ids(pipeline_env)
    assert set(ids) == {str(r["event_id"]) for r in reads}
    assert max(ids.values()) == 1
    assert totals.consumed == 5030
    assert totals.written == 5000
    assert totals.duplicates == 30
    assert totals.rejected == totals.expired == 0
    topic = pipeline_env.settings.topics.plate_reads
    consumed = sample(metrics, "anpr_messages_consumed_total", topic=topic, format="canonical")
    written = sample(metrics, "anpr_rows_written_total", table="plate_reads")
    duplicates = sample(metrics, "anpr_duplicates_dropped_total")
    assert (consumed, written, duplicates) == (5030, 5000, 30)
    assert metrics.get_sample_value("anpr_freshness_seconds_count") == 5000
    assert sample(metrics, "anpr_last_commit_timestamp_seconds") > time.time() - 60

    # A second run finds nothing new: the lake's offsets say where it stopped.
    again, _ = run_ingest(pipeline_env, until_idle=1.0)
    assert again.consumed == 0
    assert stored_ids(pipeline_env) == ids


def test_retransmission_after_restart_is_still_dropped(pipeline_env: Env) -> None:
    reads = valid_reads(pipeline_env, 200, seed=11)
    produce(pipeline_env, [encode(r) for r in reads])
    run_ingest(pipeline_env, until_idle=1.0)
    # A new worker process warms its window from the lake, so the repeat is caught.
    produce(pipeline_env, [encode(reads[5]), encode(reads[6])])
    totals, _ = run_ingest(pipeline_env, until_idle=1.0)
    assert (totals.consumed, totals.duplicates, totals.written) == (2, 2, 0)
    assert sum(stored_ids(pipeline_env).values()) == 200


def test_every_reason_code_reaches_the_dlq_with_its_headers(pipeline_env: Env) -> None:
    good = valid_reads(pipeline_env, 20, seed=5)
    base = dict(good[0])
    now = datetime.now(UTC)

    def with_(**changes: object) -> bytes:
        return json.dumps(
            {**base, "event_id": f"bad-{len(changes)}-{random.random()}", **changes}
        ).encode()

    cases: dict[Reason, bytes | None] = {
        Reason.MALFORMED_JSON: b'{"schema": "plate_read/1", "event_id": ',
        Reason.SCHEMA_VIOLATION: with_(lane="2"),
        Reason.UNKNOWN_SITE: with_(site_id="NO-NOWHERE"),
        Reason.INVALID_PLATE: with_(plate="1;DROP--"),
        Reason.FUTURE_TIMESTAMP: with_(captured_at=(now + timedelta(hours=2)).isoformat()),
        Reason.OVERSIZED: with_(padding="x" * 70_000),
        Reason.UNSUPPORTED_FORMAT: with_(schema="plate_read/9"),
        Reason.EMPTY_VALUE: None,
    }
    expired = with_(captured_at=(now - timedelta(days=200)).isoformat())
    messages = [(b"NO-SVINESUND", v) for v in cases.values()] + [(b"k", expired)]
    produce(pipeline_env, messages + [encode(r) for r in good])

    totals, metrics = run_ingest(pipeline_env)

    assert totals.written == 20
    assert totals.rejected == len(cases)
    assert totals.expired == 1
    assert totals.reconciles()
    records = read_dlq(pipeline_env, len(cases))
    assert len(records) == len(cases)
    by_reason = {}
    for record in records:
        headers = dict(record.headers())
        by_reason[headers["anpr-reason"].decode()] = (record, headers)
        assert headers["anpr-source-topic"].decode() == pipeline_env.settings.topics.plate_reads
        assert int(headers["anpr-source-partition"]) in range(4)
        assert int(headers["anpr-source-offset"]) >= 0
        assert headers["anpr-error"]
    assert set(by_reason) == {r.value for r in cases}
    for reason, value in cases.items():
        record, _ = by_reason[reason.value]
        assert record.value() == value  # the original bytes, unchanged
        assert (
            sample(metrics, "anpr_messages_rejected_total", reason=reason.value, format="canonical")
            == 1
        )
    # The expired read is nowhere: not stored, not in the DLQ.
    assert all(r.value() != expired for r in records)


def test_hostile_corpus_never_stops_the_worker(pipeline_env: Env) -> None:
    rng = random.Random(99)
    good = valid_reads(pipeline_env, 300, seed=9)
    messages: list[tuple[bytes | None, bytes | None]] = []
    for i, read in enumerate(good):
        messages.append(encode(read))
        if i < len(VARIANTS) * 3:
            variant = sorted(VARIANTS)[i % len(VARIANTS)]
            messages.append((b"NO-SVINESUND", VARIANTS[variant](dict(read), rng)))
    messages.append((None, b"\x00" * 1024 * 1024))  # a 1 MB value of NUL bytes
    produce(pipeline_env, messages)

    totals, _ = run_ingest(pipeline_env)

    assert totals.consumed == len(messages)
    assert totals.reconciles()
    assert totals.written == 300
    assert set(stored_ids(pipeline_env)) == {str(r["event_id"]) for r in good}
    assert totals.rejected >= len(VARIANTS) * 3  # "future" variants may count as rejected too
    # Nothing stored came from a hostile value: every stored plate is A-Z0-9.
    assert lake_rows(
        pipeline_env,
        "SELECT count(*) FROM plate_reads WHERE NOT regexp_full_match(plate, '[A-Z0-9]+')",
    ) == [(0,)]


def _cli(env: Env, *args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args]


def _subprocess_env(env: Env) -> dict[str, str]:
    return {**os.environ, **env.env, "ANPR_LOG_LEVEL": "WARNING"}


def test_sigkill_at_random_points_then_restart_stores_exactly_the_produced_set(
    pipeline_env: Env, anpr: RunAnpr
) -> None:
    produced = 200_000
    expected_ids = simulate(pipeline_env, produced, seed=21)
    rng = random.Random(5)
    kills = 0
    child_env = {**_subprocess_env(pipeline_env), "ANPR_INGEST_BATCH_SIZE": "5000"}
    lake = pipeline_env.lake_path
    while kills < 5:
        proc = subprocess.Popen(
            _cli(pipeline_env, "ingest", "plates", "--until-idle", "5"), env=child_env
        )
        # Kill once the worker has made some progress, at a random moment after it.
        deadline = time.monotonic() + 120
        while not (lake / "catalog.sqlite").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.5, 3.0))
        if proc.poll() is not None:
            break  # finished before we could kill it: the run is over
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        kills += 1
    assert kills >= 5, "the ingest finished too fast to be killed five times"
    final = anpr(child_env, "ingest", "plates", "--until-idle", "5", timeout=600)
    assert final.returncode == 0, final.stderr

    dups = lake_rows(pipeline_env, "SELECT count(*) - count(DISTINCT event_id) FROM plate_reads")
    assert dups == [(0,)]
    # bad_ratio 0: only camera retransmissions are dropped, so the stored ids are exactly the
    # distinct produced ids, each once.
    assert set(stored_ids(pipeline_env)) == expected_ids
    # Passage ids survived five kills unchanged: the same as one uninterrupted grouping.
    with Lake.open(pipeline_env.lake_path, read_only=True) as lake:
        stored = lake.execute(
            "SELECT site_id, direction, plate, captured_at, passage_id FROM plate_reads"
        ).to_arrow_table()
    regrouped = PassageGrouper().assign(stored).ids
    assert regrouped.to_pylist() == stored["passage_id"].to_pylist()
    offsets = lake_rows(pipeline_env, "SELECT sum(next_offset) FROM ingest_offsets")
    assert offsets == [(produced,)]


def test_two_workers_in_one_group_share_the_partitions(pipeline_env: Env) -> None:
    expected_ids = simulate(pipeline_env, 100_000, seed=33)
    child_env = {**_subprocess_env(pipeline_env), "ANPR_INGEST_BATCH_SIZE": "5000"}
    first = subprocess.Popen(
        _cli(pipeline_env, "ingest", "plates", "--until-idle", "6"), env=child_env
    )
    deadline = time.monotonic() + 60
    while not (pipeline_env.lake_path / "catalog.sqlite").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    # The second worker joins mid-stream: the group rebalances and both go on.
    second = subprocess.Popen(
        _cli(pipeline_env, "ingest", "plates", "--until-idle", "6"), env=child_env
    )
    assert first.wait(300) == 0
    assert second.wait(300) == 0
    assert lake_rows(
        pipeline_env, "SELECT count(*) - count(DISTINCT event_id) FROM plate_reads"
    ) == [(0,)]
    assert lake_rows(pipeline_env, "SELECT sum(next_offset) FROM ingest_offsets") == [(100_000,)]
    assert set(stored_ids(pipeline_env)) == expected_ids


def test_sigterm_finishes_the_batch_and_exits_zero(pipeline_env: Env) -> None:
    simulate(pipeline_env, 50_000, seed=44)
    child_env = {**_subprocess_env(pipeline_env), "ANPR_INGEST_BATCH_SIZE": "2000"}
    proc = subprocess.Popen(
        _cli(pipeline_env, "ingest", "plates"), env=child_env, stdout=subprocess.PIPE, text=True
    )
    # Signal once the worker has committed a batch: its handlers are installed by then (a fixed
    # sleep after the catalog appears raced the worker's start-up on a loaded machine).
    deadline = time.monotonic() + 120
    while not _committed_once(pipeline_env) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    consumed = int(out.split("consumed ")[1].split(":")[0])
    stored = lake_rows(pipeline_env, "SELECT sum(next_offset) FROM ingest_offsets")[0][0]
    assert stored == consumed  # everything it consumed was committed before it left


def test_max_messages_stops_after_exactly_n(pipeline_env: Env, anpr: RunAnpr) -> None:
    produce(pipeline_env, [encode(r) for r in valid_reads(pipeline_env, 1000, seed=2)])
    result = anpr(_subprocess_env(pipeline_env), "ingest", "plates", "--max-messages", "300")
    assert result.returncode == 0, result.stderr
    assert lake_rows(pipeline_env, "SELECT sum(next_offset) FROM ingest_offsets") == [(300,)]


def test_anpr_query_returns_rows_with_documented_types(pipeline_env: Env, anpr: RunAnpr) -> None:
    reads = valid_reads(pipeline_env, 50, seed=8)
    produce(pipeline_env, [encode(r) for r in reads])
    run_ingest(pipeline_env, until_idle=1.0)
    # The query service gives the OS user running the tests the investigator role (clear
    # plates, for a case); `anpr query` is its client on the same socket.
    env = _subprocess_env(pipeline_env)
    socket_path = pipeline_env.settings.state.dir.parent / "anpr.sock"
    service_env = {**env, "ANPR_ACCESS_USERS": f"{getpass.getuser()}=investigator"}
    with running_service(service_env, socket_path):
        _query_types(reads, {**env, "ANPR_SERVE_SOCKET": str(socket_path)}, anpr)
    assert lake_rows(pipeline_env, "SELECT count(*) FROM plate_reads") == [(50,)]


def _query_types(reads: list[dict[str, object]], env: dict[str, str], anpr: RunAnpr) -> None:
    who = ["--reason", "investigation", "--case", "TEST-1"]
    sql = "SELECT * FROM plate_reads ORDER BY captured_at"
    result = anpr(env, "query", *who, "--format", "json", sql)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 50
    first = min(reads, key=lambda r: str(r["captured_at"]))
    assert rows[0]["event_id"] == first["event_id"]
    assert rows[0]["plate"] == str(first["plate"]).replace(" ", "").replace("-", "")
    assert rows[0]["plate_raw"] == first["plate"]
    assert rows[0]["captured_at"].endswith("+00:00")
    types = anpr(
        env,
        "query",
        *who,
        "--format",
        "csv",
        "SELECT column_name, column_type FROM (DESCRIBE plate_reads)",
    )
    assert types.returncode == 0, types.stderr
    described = dict(tuple(row) for row in list(csv.reader(io.StringIO(types.stdout)))[1:])
    assert described["captured_at"] == "TIMESTAMP WITH TIME ZONE"
    assert described["lane"] == "SMALLINT"
    assert described["confidence"] == "FLOAT"
    assert described["source_offset"] == "BIGINT"
    assert described["passage_id"] == "BIGINT"
    # Front and rear reads of one vehicle share a passage.
    assert len({r["passage_id"] for r in rows}) < len(rows)
    # No reason: usage error, nothing runs.
    refused = anpr(env, "query", "--reason", "", sql)
    assert refused.returncode == 2
    assert "--reason" in refused.stderr
    writes = anpr(env, "query", *who, "DELETE FROM plate_reads")
    assert writes.returncode == 2
    typo = anpr(env, "query", *who, "SELECT no_such_column FROM plate_reads")
    assert typo.returncode == 2
    assert "no_such_column" in typo.stderr
    assert "Traceback" not in typo.stderr


def test_dlq_on_a_cluster_with_smaller_messages_gets_a_cut_record(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path, registry: SiteRegistry
) -> None:
    # A production DLQ topic created by someone else, with Kafka's default 1 MB limit.
    base = load_settings(None, env={})
    reads = make_topic(1, {"max.message.bytes": str(2 * 1024 * 1024)})
    dlq = make_topic(1)
    env = {
        "ANPR_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ANPR_TOPICS_PLATE_READS": reads,
        "ANPR_TOPICS_DLQ": dlq,
        "ANPR_INGEST_CONSUMER_GROUP": f"g-{reads}",
        "ANPR_LAKE_PATH": str(tmp_path / "lake"),
    }
    pipeline_env = Env(load_settings(None, env=env), env, registry)
    big = random.Random(1).randbytes(1536 * 1024)  # incompressible: zstd cannot shrink it
    produce(pipeline_env, [(b"k", big)])
    totals, _ = run_ingest(pipeline_env, until_idle=1.0)
    assert totals.rejected == 1
    [record] = read_dlq(pipeline_env, 1)
    headers = dict(record.headers())
    assert headers["anpr-reason"] == b"oversized"
    assert int(headers["anpr-original-size"]) == len(big)
    assert big.startswith(record.value())
    assert base.topics.dlq == "anpr.dlq"


def test_mixed_vendor_stream_lands_exactly(pipeline_env: Env) -> None:
    registry = pipeline_env.registry
    model = TrafficModel(registry, seed=17, formats=VENDORS, retransmit_ratio=0.0)
    reads = model.reads(model.start_for(600, datetime.now(UTC)))
    rng = random.Random(17)
    messages: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
    expected_ids: set[str] = set()
    formats_sent: Counter[str] = Counter()
    hikvision: tuple[dict[str, object], Any] | None = None
    for _ in range(600):
        read = next(reads)
        camera = registry.camera(str(read["camera_id"]))
        assert camera is not None
        key = str(read["site_id"]).encode()
        if camera.vendor == "canonical":
            messages.append((key, encode(read)[1], []))
            expected_ids.add(str(read["event_id"]))
        else:
            value, content_type = encode_vendor(read, camera, rng)
            messages.append((key, value, [("content-type", content_type.encode())]))
            expected_ids.add(mapped_event_id(read, camera))
            if camera.vendor == "hikvision" and hikvision is None:
                hikvision = (read, camera)
        formats_sent[camera.vendor] += 1
    assert set(formats_sent) == set(VENDORS)
    # Repeats: ten messages sent again as they were; one Hikvision retransmission.
    repeats = messages[50:60]
    assert hikvision is not None
    retransmitted, _ = encode_vendor(hikvision[0], hikvision[1], rng, retransmission=True)
    assert b"<isDataRetransmission>true" in retransmitted
    # Unknown cameras: a Hikvision device and an OpenALPR camera nobody registered.
    unknown_hik = retransmitted.replace(
        str(hikvision[1].vendor_camera_id).encode(), b"HK-NOT-REGISTERED"
    )
    extra = [
        *repeats,
        (b"NO-SVINESUND", retransmitted, [("content-type", b"application/xml")]),
        (b"NO-SVINESUND", unknown_hik, [("content-type", b"application/xml")]),
    ]
    openalpr = next(m for m in messages if m[1] and b'"alpr_group"' in m[1])
    doc = json.loads(openalpr[1].lstrip(b"\xef\xbb\xbf"))  # type: ignore[union-attr]
    doc["camera_id"] = 999999
    extra.append((b"NO-SVINESUND", json.dumps(doc).encode(), []))

    producer = Producer({"bootstrap.servers": pipeline_env.settings.kafka.bootstrap_servers})
    for key, value, headers in messages + extra:
        producer.produce(
            pipeline_env.settings.topics.plate_reads, key=key, value=value, headers=headers
        )
    assert producer.flush(30) == 0

    totals, metrics = run_ingest(pipeline_env)

    assert totals.consumed == len(messages) + len(extra)
    assert totals.duplicates == 11  # ten repeats and the retransmission
    assert totals.rejected == 2
    assert totals.reconciles()
    assert set(stored_ids(pipeline_env)) == expected_ids
    assert max(stored_ids(pipeline_env).values()) == 1
    stored_formats = dict(
        lake_rows(pipeline_env, "SELECT source_format, count(*) FROM plate_reads GROUP BY 1")
    )
    assert stored_formats == {
        "canonical": formats_sent["canonical"],
        "openalpr_group": formats_sent["openalpr"],
        "platerecognizer": formats_sent["platerecognizer"],
        "hikvision": formats_sent["hikvision"],
        "genetec": formats_sent["genetec"],
    }
    # Passages: front and rear reads of a vehicle share one id, whatever their formats.
    with Lake.open(pipeline_env.lake_path, read_only=True) as lake:
        stored = lake.execute(
            "SELECT site_id, direction, plate, captured_at, passage_id FROM plate_reads"
        ).to_arrow_table()
    assert PassageGrouper().assign(stored).ids.to_pylist() == stored["passage_id"].to_pylist()
    assert len(set(stored["passage_id"].to_pylist())) < len(stored)
    records = read_dlq(pipeline_env, 2)
    assert sorted(dict(r.headers())["anpr-reason"].decode() for r in records) == [
        "unknown_site",
        "unknown_site",
    ]
    topic = pipeline_env.settings.topics.plate_reads
    repeated_xml = sum(1 for _, value, _ in repeats if value and value.startswith(b"<"))
    assert sample(metrics, "anpr_messages_consumed_total", topic=topic, format="hikvision") == (
        formats_sent["hikvision"] + repeated_xml + 2
    )
    assert (
        sample(
            metrics, "anpr_messages_rejected_total", reason="unknown_site", format="openalpr_group"
        )
        == 1
    )


# --- exactly once across partitions (issue 18) ---------------------------------------------


def produce_to(env: Env, placed: list[tuple[int, bytes]]) -> None:
    """Produce each value without a key to the given partition (a keyless vendor bridge's
    retransmission lands wherever its partitioner puts it)."""
    producer = Producer({"bootstrap.servers": env.settings.kafka.bootstrap_servers})
    for partition, value in placed:
        producer.produce(env.settings.topics.plate_reads, value, partition=partition)
        producer.poll(0)
    assert producer.flush(30) == 0


def reads_and_repeats(
    env: Env, count: int, partitions: int, *, seed: int
) -> tuple[set[str], list[tuple[int, bytes]]]:
    """``count`` valid reads, each sent twice: the original to one partition and the
    retransmission to the next, so repeats cross every partition boundary."""
    reads = valid_reads(env, count, seed=seed)
    placed: list[tuple[int, bytes]] = []
    for i, read in enumerate(reads):
        _, value = encode(read)
        placed += [(i % partitions, value), ((i + 1) % partitions, value)]
    return {str(r["event_id"]) for r in reads}, placed


def test_keyless_retransmissions_on_every_partition_are_stored_once(pipeline_env: Env) -> None:
    ids, placed = reads_and_repeats(pipeline_env, 2_000, 4, seed=61)
    produce_to(pipeline_env, placed)
    totals, _ = run_ingest(pipeline_env)
    assert stored_ids(pipeline_env) == Counter(ids)  # every id exactly once
    assert (totals.written, totals.duplicates) == (2_000, 2_000)


def test_a_late_upload_and_its_retransmissions_are_stored_once(pipeline_env: Env) -> None:
    # A camera back from a three-day outage uploads its buffered reads behind live traffic,
    # and resends them: a few batches later in the same run, and again after a restart.
    # Their capture hours are days behind the newest, yet the repeats must still drop.
    small = dataclasses.replace(
        pipeline_env,
        settings=dataclasses.replace(
            pipeline_env.settings,
            ingest=dataclasses.replace(pipeline_env.settings.ingest, batch_size=100),
        ),
    )
    fresh = valid_reads(pipeline_env, 200, seed=64)
    model = TrafficModel(pipeline_env.registry, seed=65, retransmit_ratio=0.0)
    reads = model.reads(model.start_for(600, datetime.now(UTC) - timedelta(days=3)))
    late = [encode(next(reads))[1] for _ in range(600)]
    first, second = late[:300], late[300:]
    produce_to(small, [(0, encode(r)[1]) for r in fresh] + [(0, v) for v in first + first])
    totals, _ = run_ingest(small)
    assert (totals.written, totals.duplicates) == (500, 300)
    produce_to(small, [(0, v) for v in second + second + first])  # a new worker process
    totals, _ = run_ingest(small)
    assert (totals.written, totals.duplicates) == (300, 600)
    expected = {str(r["event_id"]) for r in fresh} | {str(json.loads(v)["event_id"]) for v in late}
    assert stored_ids(pipeline_env) == Counter(expected)


def test_a_topic_that_gains_partitions_mid_stream_stores_each_id_once(
    pipeline_env: Env, kafka_admin: Any
) -> None:
    ids, placed = reads_and_repeats(pipeline_env, 1_000, 4, seed=62)
    produce_to(pipeline_env, placed[::2])  # the originals, on the first four partitions
    run_ingest(pipeline_env)
    topic = pipeline_env.settings.topics.plate_reads
    kafka_admin.create_partitions([NewPartitions(topic, 8)])[topic].result(timeout=30)
    deadline = time.monotonic() + 30
    while len(kafka_admin.list_topics(topic).topics[topic].partitions) < 8:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # The retransmissions come later, on the new partitions (as keyed traffic moves there).
    produce_to(pipeline_env, [(4 + p % 4, v) for p, v in placed[1::2]])
    totals, _ = run_ingest(pipeline_env)
    assert stored_ids(pipeline_env) == Counter(ids)
    assert (totals.consumed, totals.written, totals.duplicates) == (1_000, 0, 1_000)


def test_two_workers_store_a_repeat_from_the_other_ones_partition_once(pipeline_env: Env) -> None:
    ids, placed = reads_and_repeats(pipeline_env, 20_000, 4, seed=63)
    produce_to(pipeline_env, placed)
    child_env = {**_subprocess_env(pipeline_env), "ANPR_INGEST_BATCH_SIZE": "1000"}
    workers = [
        subprocess.Popen(_cli(pipeline_env, "ingest", "plates", "--until-idle", "6"), env=child_env)
        for _ in range(2)
    ]
    assert [w.wait(300) for w in workers] == [0, 0]
    assert stored_ids(pipeline_env) == Counter(ids)
    assert lake_rows(pipeline_env, "SELECT sum(next_offset) FROM ingest_offsets") == [(40_000,)]
