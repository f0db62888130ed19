"""The production-shaped set for this folder's tests: three Kafka brokers, PostgreSQL, S3Proxy,
started once per session by the code behind `anpr cluster start`.

"Hosts" are processes with their own state folder and lake folder (nothing shared on disk);
they meet only in Kafka, the catalog database and the object store. Each test gets its own
topics, consumer group, catalog database and object prefix. When a test fails, the brokers',
PostgreSQL's and S3Proxy's logs are copied to its ``tmp_path``/cluster-logs (pytest keeps the
last three runs' folders) before the set is stopped and removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
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

_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.when == "call" and report.failed:
        item.stash[_FAILED] = True
    return report


def _keep_logs(state: Path, into: Path) -> None:
    """The set's logs (no data, no secrets) for a failed test's post-mortem."""
    for logs in [*state.glob("kafka-cluster/node-*/logs"), state / "postgres" / "logs"]:
        if logs.is_dir():
            shutil.copytree(logs, into / logs.relative_to(state), dirs_exist_ok=True)
    if (state / "s3" / "logs").is_dir():
        shutil.copytree(state / "s3" / "logs", into / "s3" / "logs", dirs_exist_ok=True)


@pytest.fixture(scope="session")
def cluster(kafka_jars: Path) -> Iterator[tuple[Path, control.ClusterInfo]]:
    """The running set and its state dir (a private folder below /tmp)."""
    with control.temporary("anpr-cluster-") as running:
        yield running


class Supervised(threading.Thread):
    """One host's worker run the way systemd runs ``anpr-ingest@`` (deploy/systemd:
    ``Restart=on-failure``, ``RestartSec=5``, ``RestartPreventExitStatus=2``): started again
    after an abnormal exit, at most ``limit`` times (systemd's start limit)."""

    def __init__(self, start: Callable[[], subprocess.Popen[bytes]], limit: int = 3) -> None:
        super().__init__(daemon=True)
        self._start = start
        self._limit = limit
        self._stopping = threading.Event()
        self.current: subprocess.Popen[bytes] | None = None
        self.exits: list[int] = []  # every exit code, in order

    @property
    def restarts(self) -> int:
        return len(self.exits) - 1 if self.exits else 0

    def run(self) -> None:
        while not self._stopping.is_set():
            self.current = self._start()
            code = self.current.wait()
            self.exits.append(code)
            if code in (0, 2) or len(self.exits) > self._limit:
                return
            self._stopping.wait(5.0)  # RestartSec

    def stop(self) -> None:
        self._stopping.set()
        if self.current is not None and self.current.poll() is None:
            self.current.kill()
            self.current.wait(30)


@dataclass
class Shared:
    """One test's share of the set: what every host of the test is configured with."""

    state: Path
    info: control.ClusterInfo
    env: dict[str, str]
    root: Path
    hosts: list[subprocess.Popen[bytes]] = field(default_factory=list)
    supervised: list[Supervised] = field(default_factory=list)

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

    def supervise_worker(self, host: str, *args: str) -> Supervised:
        """``anpr ingest plates`` on ``host`` under a supervisor, as in production."""
        (self.root / host).mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "pipeline", "ingest", "plates", *args]
        env = {**os.environ, **self.host_env(host), "ANPR_LOG_LEVEL": "WARNING"}
        supervisor = Supervised(lambda: subprocess.Popen(argv, env=env, cwd=self.root / host))
        self.supervised.append(supervisor)
        supervisor.start()
        return supervisor

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
            for supervisor in self.supervised:
                assert supervisor.is_alive() or supervisor.exits[-1] == 0, supervisor.exits
            time.sleep(0.5)
        return done


@pytest.fixture
def shared(
    cluster: tuple[Path, control.ClusterInfo], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Shared]:
    state, info = cluster
    name = f"t{uuid.uuid4().hex[:12]}"
    env = control.kafka_env(info, name) | control.lake_env(info, name)
    test = Shared(state, info, env, tmp_path)
    # In a child, like every Kafka admin call of these tests (see _restart_broker).
    created = test.anpr("setup", "topics", "create")
    assert created.returncode == 0, created.stderr
    try:
        yield test
    finally:
        if request.node.stash.get(_FAILED, False):
            _keep_logs(state, tmp_path / "cluster-logs")
        for supervisor in test.supervised:
            supervisor.stop()
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
