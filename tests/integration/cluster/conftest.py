"""The production-shaped set for this folder's tests: three Kafka brokers, PostgreSQL, S3Proxy,
started once per session by the code behind `anpr cluster start`.

"Hosts" are processes with their own state folder and lake folder (nothing shared on disk);
they meet only in Kafka, the catalog database and the object store. Each test gets its own
topics, consumer group, catalog database and object prefix.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.cluster import control
from pipeline.config import Settings, load_settings
from pipeline.kafka.clients import make_producer
from pipeline.lake.catalog import Lake
from pipeline.reference.sites import SiteRegistry
from pipeline.simulate.produce import simulate_plates
from pipeline.simulate.traffic import TrafficModel


@pytest.fixture(scope="session")
def cluster(kafka_jars: Path) -> Iterator[tuple[Path, control.ClusterInfo]]:
    """The running set and its state dir (below /tmp, searchable by the database's user)."""
    state = Path(tempfile.mkdtemp(prefix="anpr-cluster-", dir="/tmp"))
    state.chmod(0o755)  # the PostgreSQL server runs as anpr-db and must reach its folder
    try:
        yield state, control.start(state, timeout=240)
    finally:
        control.stop(state)
        shutil.rmtree(state, ignore_errors=True)


@dataclass
class Shared:
    """One test's share of the set: what every host of the test is configured with."""

    state: Path
    info: control.ClusterInfo
    env: dict[str, str]
    root: Path
    hosts: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def settings(self, host: str = "probe") -> Settings:
        return load_settings(None, env=self.host_env(host))

    def host_env(self, host: str) -> dict[str, str]:
        """ANPR_* for one host: the shared services, its own state and lake folders."""
        home = self.root / host
        return {
            **self.env,
            "ANPR_STATE_DIR": str(home / "state"),
            "ANPR_LAKE_PATH": str(home / "lake"),
        }

    def start_worker(self, host: str, *args: str) -> subprocess.Popen[bytes]:
        """``anpr ingest plates`` on ``host``, in the background."""
        (self.root / host).mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "ingest", "plates", *args],
            env={**os.environ, **self.host_env(host), "ANPR_LOG_LEVEL": "WARNING"},
            cwd=self.root / host,
        )
        self.hosts.append(proc)
        return proc

    def anpr(self, host: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        (self.root / host).mkdir(parents=True, exist_ok=True)
        return subprocess.run(
            [sys.executable, "-m", "pipeline", *args],
            env={**os.environ, **self.host_env(host), "ANPR_LOG_LEVEL": "WARNING"},
            cwd=self.root / host,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        with Lake.from_settings(self.settings().lake, read_only=True) as lake:
            return lake.con.execute(sql).fetchall()

    def committed(self) -> int:
        """Messages committed to the lake so far (sum of stored next offsets)."""
        try:
            (total,) = self.rows("SELECT coalesce(sum(next_offset), 0) FROM ingest_offsets")[0]
        except Exception:
            return 0
        return int(str(total))

    def wait_committed(self, at_least: int, timeout: float = 180) -> int:
        deadline = time.monotonic() + timeout
        while (done := self.committed()) < at_least:
            assert time.monotonic() < deadline, f"only {done} of {at_least} committed in time"
            for proc in self.hosts:
                assert proc.poll() in (None, 0, -signal.SIGKILL), "a worker failed"
            time.sleep(0.5)
        return done


@pytest.fixture
def shared(cluster: tuple[Path, control.ClusterInfo], tmp_path: Path) -> Iterator[Shared]:
    state, info = cluster
    name = f"t{uuid.uuid4().hex[:12]}"
    with info.catalog.connect("postgres") as conn:
        conn.autocommit = True
        conn.execute(f"CREATE DATABASE {name}")  # a fresh hex name of ours, not input
    env = {
        "ANPR_KAFKA_BOOTSTRAP_SERVERS": info.bootstrap,
        "ANPR_TOPICS_REPLICATION_FACTOR": "3",
        "ANPR_TOPICS_PLATE_READS": f"{name}.plate-reads",
        "ANPR_TOPICS_PASSENGERS": f"{name}.passengers",
        "ANPR_TOPICS_DLQ": f"{name}.dlq",
        "ANPR_TOPICS_WATCHLIST": f"{name}.watchlist",
        "ANPR_TOPICS_WATCHLIST_HITS": f"{name}.watchlist-hits",
        "ANPR_INGEST_CONSUMER_GROUP": f"{name}-ingest",
        "ANPR_INGEST_METRICS_PORT": "0",
        "ANPR_LAKE_CATALOG": f"postgres:{info.catalog.conninfo(name)}",
        "ANPR_LAKE_CATALOG_PASSWORD_FILE": str(info.catalog.password_file),
        "ANPR_LAKE_DATA_PATH": f"{info.data_path}{name}/",
        "ANPR_LAKE_S3_ENDPOINT": info.store.endpoint,
        "ANPR_LAKE_S3_ACCESS_KEY_ID": "anpr-local",
        "ANPR_LAKE_S3_SECRET_ACCESS_KEY_FILE": str(info.store.secret_file),
        "ANPR_LAKE_S3_USE_SSL": "false",
        "ANPR_LAKE_S3_URL_STYLE": "path",
    }
    test = Shared(state, info, env, tmp_path)
    # In a child, like every Kafka admin call of these tests (see _restart_broker).
    created = test.anpr("setup", "topics", "create")
    assert created.returncode == 0, created.stderr
    try:
        yield test
    finally:
        for proc in test.hosts:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)


def simulate(settings: Settings, registry: SiteRegistry, count: int, seed: int) -> set[str]:
    """Send ``count`` simulated reads (retransmissions included); return the distinct ids."""
    start = TrafficModel(registry, seed=seed).start_for(count, datetime.now(UTC))
    simulate_plates(
        make_producer(settings),
        settings.topics.plate_reads,
        registry,
        count=count,
        start=start,
        seed=seed,
    )
    reads = TrafficModel(registry, seed=seed).reads(start)
    return {str(next(reads)["event_id"]) for _ in range(count)}


Simulate = Callable[[Settings, SiteRegistry, int, int], set[str]]
