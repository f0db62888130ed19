"""Erasure end to end on a real broker: `anpr subject erase`, the nightly run, then replay.

The plate must be in no byte of the lake, the state folder (activity log, reports, ledger,
keys) in any spelling; and ingest replaying both topics from the start into a rebuilt lake
must store it nowhere, although Kafka still holds it until topic retention.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from conftest import MakeTopic, RunAnpr, service_thread
from lakehelp import files_holding, spellings

# The service's TLS users: NAME's client certificate for `--user NAME`.
from test_access import anpr, certs  # noqa: F401

from pipeline.config import load_settings
from pipeline.kafka.admin import topic_plan
from pipeline.kafka.clients import make_consumer, make_producer
from pipeline.lake.catalog import Lake
from pipeline.reference.sites import SiteRegistry
from pipeline.simulate.produce import simulate_plates

START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
READS, SEED = 3_000, 7


def _ingest(run: RunAnpr, env: dict[str, str]) -> None:
    for kind in ("plates", "passengers"):
        done = run(env, "ingest", kind, "--until-idle", "3", timeout=300)
        assert done.returncode == 0, done.stderr


def _count(lake_dir: Path, plate: str) -> tuple[int, int]:
    with Lake.open(lake_dir) as lake:
        row = lake.execute(
            "SELECT (SELECT count(*) FROM plate_reads WHERE plate = $p "
            "OR list_contains(list_transform(candidates, c -> c.plate), $p)), "
            "(SELECT count(*) FROM passengers WHERE vehicle_plate = $p)",
            {"p": plate},
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _seen(run: RunAnpr, env: dict[str, str], user: str, plate: str) -> tuple[int, int]:
    """(reads, people) of ``plate`` as ``user`` sees them through `anpr query`."""
    sql = (
        f"SELECT (SELECT count(*) FROM plate_reads WHERE plate = '{plate}' OR "
        f"list_contains(list_transform(candidates, c -> c.plate), '{plate}')) AS reads, "
        f"(SELECT count(*) FROM passengers WHERE vehicle_plate = '{plate}') AS people"
    )
    reason = {"ivan": "investigation", "dora": "dsar"}[user]
    result = run(env, "query", "--user", user, "--reason", reason, "--case", "C-1",
                  "--format", "json", sql)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    return int(row["reads"]), int(row["people"])


def _in_topic(env: dict[str, str], topic: str, plate: str) -> bool:
    """Does any message of ``topic`` (decompressed by the client) name ``plate``, as sent?"""
    settings = load_settings(None, env=env)
    consumer = make_consumer(settings, f"scan-{topic}")
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in partitions}  # fmt: skip
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        pending = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            # As sent, in any spelling and separated any way (JSON, EDIFACT with the sender's
            # separators): the message's letters and digits only, upper-cased.
            text = (message.value() or b"").decode("utf-8", errors="replace").upper()
            if plate in re.sub(r"[^A-Z0-9]", "", text):
                return True
            if message.offset() + 1 >= ends[message.partition()]:
                pending.discard(message.partition())
        return False
    finally:
        consumer.close()


@pytest.fixture
def env(kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path) -> dict[str, str]:
    base = load_settings(None, env={})
    configs = {spec.name: spec.config for spec in topic_plan(base)}
    reads = make_topic(2, configs[base.topics.plate_reads])
    return {
        **os.environ,
        "ANPR_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ANPR_TOPICS_PLATE_READS": reads,
        "ANPR_TOPICS_PASSENGERS": make_topic(2, configs[base.topics.passengers]),
        "ANPR_TOPICS_DLQ": make_topic(1, configs[base.topics.dlq]),
        "ANPR_TOPICS_AUDIT_ANCHORS": make_topic(1, {"cleanup.policy": "compact"}),
        "ANPR_INGEST_CONSUMER_GROUP": f"g-{reads}",
        "ANPR_PASSENGERS_CONSUMER_GROUP": f"gp-{reads}",
        "ANPR_LAKE_PATH": str(tmp_path / "lake"),
        "ANPR_STATE_DIR": str(tmp_path / "state"),
        "ANPR_INGEST_METRICS_PORT": "0",
        "ANPR_PASSENGERS_METRICS_PORT": "0",
        "ANPR_LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def service(
    env: dict[str, str],
    certs: Path,  # noqa: F811
    tmp_path: Path,
) -> Iterator[dict[str, str]]:
    """`anpr serve` for the lake of ``env`` (in this process); the env its clients use."""
    settings = load_settings(
        None,
        env=env,
        overrides={
            "access.users": {"ivan": "investigator", "dora": "dpo"},
            "serve.socket": tmp_path / "anpr.sock",
            "serve.tls_listen": "127.0.0.1:0",
            "serve.tls_cert": certs / "server.pem",
            "serve.tls_key": certs / "server.key",
            "serve.tls_client_ca": certs / "service-ca.pem",
        },
    )
    with service_thread(settings) as address:
        yield {**env, "ANPR_SERVE_SOCKET": str(settings.serve.socket),
               "TEST_TLS_ADDRESS": address}  # fmt: skip


def test_an_erased_plate_is_in_no_byte_and_replay_never_brings_it_back(
    service: dict[str, str],
    anpr: RunAnpr,  # noqa: F811
    registry: SiteRegistry,
    tmp_path: Path,
) -> None:
    env = service
    settings = load_settings(None, env=env)
    simulate_plates(make_producer(settings), settings.topics.plate_reads, registry,
                    count=READS, start=START, seed=SEED)  # fmt: skip
    sent = anpr(env, "simulate", "passengers", "--plate-reads", str(READS),
                "--start", START.isoformat(), "--seed", str(SEED))  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    _ingest(anpr, env)
    lake_dir = settings.lake.path
    with Lake.open(lake_dir) as lake:
        found = lake.execute(
            "SELECT vehicle_plate FROM passengers WHERE vehicle_plate IN "
            "(SELECT plate FROM plate_reads) GROUP BY ALL ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
    assert found is not None, "the simulators put no read vehicle on a passenger list"
    plate = str(found[0])
    reads_before, people_before = _count(lake_dir, plate)
    assert reads_before > 0
    assert people_before > 0

    # Restriction hides the vehicle's passengers too (passengers.vehicle_plate), not only its
    # reads; the investigator's question names the plate, which the log must not keep.
    restrict = anpr(env, "subject", "restrict", "--plate", plate, "--until", "2099-01-01",
                    "--reason", "art. 18", "--case", "DSR-1", "--user", "dora")  # fmt: skip
    assert restrict.returncode == 0, restrict.stderr
    assert _seen(anpr, env, "ivan", plate) == (0, 0)
    assert _seen(anpr, env, "dora", plate) == (reads_before, people_before)
    assert _seen(anpr, env, "ivan", "NOSUCH1") == (0, 0)  # the test's query can find nothing
    unrestricted = anpr(env, "subject", "unrestrict", "--plate", plate, "--case", "DSR-1",
                        "--user", "dora")  # fmt: skip
    assert unrestricted.returncode == 0, unrestricted.stderr
    assert _seen(anpr, env, "ivan", plate) == (reads_before, people_before)
    # The report goes to the dpo (--out), never into the service's state folder.
    dpo_folder = tmp_path / "dpo"
    dpo_folder.mkdir()
    access = anpr(env, "subject", "access", "--plate", plate, "--case", "DSR-1",
                  "--out", str(dpo_folder), "--user", "dora")  # fmt: skip
    assert access.returncode == 0, access.stderr
    assert set(files_holding(dpo_folder, [plate])) == {plate}

    erase = anpr(env, "subject", "erase", "--plate", plate, "--reason", "art. 17",
                 "--case", "DSR-1", "--user", "dora")  # fmt: skip
    assert erase.returncode == 0, erase.stderr
    nightly = anpr(env, "maintain", "--no-topic-check", timeout=600)
    assert nightly.returncode == 0, nightly.stdout + nightly.stderr
    assert _count(lake_dir, plate) == (0, 0)

    needles = spellings(plate)
    assert files_holding(lake_dir, needles) == {}
    assert files_holding(settings.state.dir, needles) == {}  # log, ledger, reports, keys
    # The erasure is in Kafka's hands until retention: the topics still hold the plate...
    assert _in_topic(env, settings.topics.plate_reads, plate)
    assert _in_topic(env, settings.topics.passengers, plate)

    # ...and a lake rebuilt from them, by a fresh consumer group, never stores it again.
    rebuilt = {
        **env,
        "ANPR_LAKE_PATH": str(tmp_path / "rebuilt"),
        "ANPR_INGEST_CONSUMER_GROUP": "rebuild-plates",
        "ANPR_PASSENGERS_CONSUMER_GROUP": "rebuild-passengers",
    }
    _ingest(anpr, rebuilt)
    assert _count(tmp_path / "rebuilt", plate) == (0, 0)
    with Lake.open(tmp_path / "rebuilt") as lake:
        counts = lake.execute(
            "SELECT (SELECT count(*) FROM plate_reads), (SELECT count(*) FROM passengers)"
        ).fetchone()
    assert counts is not None
    assert counts[0] > 0  # the rest came back
    assert counts[1] > 0
    assert files_holding(tmp_path / "rebuilt", needles) == {}
