"""The README's broker commands, through the real `anpr` CLI, on a broker of their own."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from confluent_kafka.admin import AdminClient

from pipeline.kafka import local

if TYPE_CHECKING:
    from tests.integration.conftest import RunAnpr


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().find(b"kafka.Kafka") >= 0
    except FileNotFoundError:
        return False


def test_start_status_topics_stop_through_the_cli(
    tmp_path: Path, kafka_jars: Path, anpr: RunAnpr
) -> None:
    state = tmp_path / "state"
    # The CLI finds its jars in <state>/cache/kafka, where `make setup` fetched them.
    (state / "cache").mkdir(parents=True)
    (state / "cache" / "kafka").symlink_to(kafka_jars.parents[1])
    bootstrap = f"127.0.0.1:{local.free_port()}"
    env = {
        **os.environ,
        "ANPR_STATE_DIR": str(state),
        "ANPR_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "ANPR_TOPICS_PARTITIONS": "2",
    }
    try:
        first = anpr(env, "kafka", "start")
        assert first.returncode == 0, first.stderr
        pid = int(first.stdout.split("pid ")[1].rstrip(")\n"))
        again = anpr(env, "kafka", "start")
        assert again.returncode == 0
        assert f"pid {pid}" in again.stdout  # idempotent: the same broker
        assert anpr(env, "kafka", "status").returncode == 0

        created = anpr(env, "topics", "create")
        assert created.returncode == 0, created.stderr
        assert "anpr.plate-reads: created" in created.stdout
        assert "anpr.plate-reads: exists" in anpr(env, "topics", "create").stdout
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = admin.list_topics(timeout=10).topics
        assert {"anpr.plate-reads", "anpr.passengers", "anpr.dlq", "anpr.watchlist"} <= set(topics)
        assert len(topics["anpr.plate-reads"].partitions) == 2

        # A retention above the legal limit is refused before anything is created.
        illegal = anpr(
            {**env, "ANPR_TOPICS_PERSONAL_RETENTION_MS": str(200 * 86_400_000)},
            "topics",
            "create",
        )
        assert illegal.returncode == 2
        assert "personal_retention_ms" in illegal.stderr
    finally:
        stopped = anpr(env, "kafka", "stop")
    assert stopped.returncode == 0
    assert not _alive(pid), "stop left the broker process running"
    assert anpr(env, "kafka", "status").returncode == 1
    assert "not running" in anpr(env, "kafka", "stop").stdout
