"""Issue 17 on the production-shaped set: ingest workers on several "hosts" (separate state and
lake folders) sharing only three Kafka brokers, PostgreSQL and S3Proxy, through failures."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
from confluent_kafka.admin import AdminClient, PartitionMetadata

from pipeline.cluster import control, postgres
from pipeline.files import check_private
from pipeline.kafka import local
from pipeline.lake.backend import Storage
from pipeline.lake.catalog import Lake
from pipeline.maintain.lock import maintain_lock
from pipeline.reference.sites import SiteRegistry
from tests.integration.cluster.conftest import Shared, simulate


def _stored(shared: Shared) -> Counter[str]:
    return Counter(str(r[0]) for r in shared.rows("SELECT event_id FROM plate_reads"))


def _assert_exactly(shared: Shared, expected_ids: set[str], produced: int) -> None:
    stored = _stored(shared)
    assert [i for i, n in stored.items() if n > 1] == [], "an event id is stored twice"
    # Every offset of the topic, no more: fewer means the workers stopped early (the rest
    # waits in Kafka), not that a read was lost, so this is checked before the ids.
    assert shared.committed() == produced
    missing = expected_ids - set(stored)
    assert not missing, f"{len(missing)} committed reads are not stored, e.g. {min(missing)}"
    assert set(stored) == expected_ids


def _restart_broker(state: Path, jars: Path) -> None:
    # In a child: the admin clients that watch the node come back then live and die in that
    # process, away from this one (librdkafka has aborted a process whose admin client was
    # destroyed while a broker it knew was restarting).
    code = (
        "import sys; from pathlib import Path; from pipeline.kafka import local; "
        "local.start_cluster(Path(sys.argv[1]), jars_dir=Path(sys.argv[2]), brokers=3, "
        "timeout=180)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(state), str(jars)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert all(local.cluster_status(state).values())


def _wait_partitions(
    shared: Shared, ready: Callable[[PartitionMetadata], bool], what: str, timeout: float = 120
) -> None:
    """Poll until every partition of the test's read and dead-letter topics is ``ready``."""
    topics = shared.settings().topics
    names = (topics.plate_reads, topics.dlq)
    admin = AdminClient({"bootstrap.servers": shared.info.bootstrap})
    deadline = time.monotonic() + timeout
    while True:
        found = admin.list_topics(timeout=10).topics
        parts = {
            (name, i): p
            for name in names
            if name in found
            for i, p in found[name].partitions.items()
        }
        if parts and all(name in found for name in names) and all(map(ready, parts.values())):
            return
        state = {key: (p.leader, p.isrs) for key, p in sorted(parts.items())}
        assert time.monotonic() < deadline, f"{what}: (leader, ISR) per partition {state}"
        time.sleep(0.5)


def test_cluster_start_is_idempotent_and_status_sees_a_dead_broker(
    shared: Shared, kafka_jars: Path
) -> None:
    again = control.start(shared.state)
    assert again == shared.info  # same ports, same files: nothing restarted
    # The set's state dir is private, as anpr's commands require, with PostgreSQL running as
    # another user when we are root (its folder is then outside, linked from the state dir).
    check_private(shared.state, "state folder")
    assert (shared.state / "postgres" / "data").is_dir()
    assert control.status(shared.state) == {"kafka": True, "postgres": True, "s3proxy": True}
    local.kill_node(shared.state, 3)
    try:
        assert control.status(shared.state)["kafka"] is False
    finally:
        _restart_broker(shared.state, kafka_jars)
    assert control.status(shared.state)["kafka"] is True


def test_exactly_once_across_hosts_with_worker_and_broker_kills(
    shared: Shared, registry: SiteRegistry, kafka_jars: Path
) -> None:
    produced = 200_000
    expected_ids = simulate(shared.settings(), registry, produced, 31)
    hosts = ("host-a", "host-b", "host-c")
    for host in hosts:
        shared.start_worker(host, "--until-idle", "20")
    # One host dies three times, each time after the set committed more, and comes back.
    target = 0
    for _ in range(3):
        target = shared.wait_committed(target + 20_000) + 1
        victim = shared.hosts[0] if shared.hosts[0].poll() is None else shared.hosts[-1]
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        shared.hosts.remove(victim)
        shared.start_worker("host-a", "--until-idle", "20")
    # Then a broker dies mid-stream and comes back.
    shared.wait_committed(min(produced, target + 20_000))
    local.kill_node(shared.state, 2)
    shared.wait_committed(min(produced, shared.committed() + 10_000))
    _restart_broker(shared.state, kafka_jars)
    for proc in shared.hosts:
        assert proc.wait(600) in (0, -signal.SIGKILL)
    _assert_exactly(shared, expected_ids, produced)


def test_a_broker_down_for_the_whole_run_loses_nothing(
    shared: Shared, registry: SiteRegistry, kafka_jars: Path
) -> None:
    # Only a replica in the ISR may lead (unclean.leader.election.enable=false): a partition
    # whose other replicas had not joined its ISR yet would stay leaderless while node 3 is
    # down, correctly. So the broker dies once every replica is in sync, as in production.
    _wait_partitions(shared, lambda p: len(p.isrs) == 3, "replicas never all in sync")
    local.kill_node(shared.state, 3)
    try:
        # The controller fences the dead node once its session times out and moves leadership.
        _wait_partitions(
            shared, lambda p: p.leader not in (-1, 3), "leadership never left the dead broker"
        )
        # acks=all with min.insync.replicas=2: two brokers still take every write.
        produced = 20_000
        expected_ids = simulate(shared.settings(), registry, produced, 32)
        # Idle as long as the other tests' workers: with 5 s a worker once left while fetches
        # from a partition whose leader had moved were still being retried (CI, 2026-12-07),
        # and 0.5 % of the reads waited in Kafka for the next run.
        run = shared.anpr("host-a", "ingest", "plates", "--until-idle", "20")
        assert run.returncode == 0, run.stderr
        _assert_exactly(shared, expected_ids, produced)
    finally:
        _restart_broker(shared.state, kafka_jars)


def test_postgres_restarted_mid_run_workers_wait_and_resume(
    shared: Shared, registry: SiteRegistry
) -> None:
    produced = 60_000
    expected_ids = simulate(shared.settings(), registry, produced, 33)
    # Supervised as systemd runs them: DuckDB's postgres extension may abort a worker (SIGABRT,
    # uncatchable) when the server dies under an open transaction (ADR 0005); the restarted
    # worker resumes at the offsets stored in the lake. Each may restart at most 3 times.
    workers = [shared.supervise_worker(h, "--until-idle", "20") for h in ("host-a", "host-b")]
    shared.wait_committed(5_000)
    postgres.kill(shared.state)  # the whole server at once, as if its host died
    time.sleep(3)  # an outage, not a blip: the workers' next commits fail meanwhile
    postgres.start(shared.state)
    for worker in workers:
        worker.join(600)
        assert not worker.is_alive(), "a worker hung"
        assert worker.exits[-1] == 0, f"exit codes {worker.exits}"
    _assert_exactly(shared, expected_ids, produced)


def test_two_maintains_on_two_hosts_one_runs_the_other_says_why(
    shared: Shared, registry: SiteRegistry
) -> None:
    simulate(shared.settings(), registry, 2_000, 34)
    assert shared.anpr("host-a", "ingest", "plates", "--until-idle", "3").returncode == 0
    storage = Storage.from_settings(shared.settings("host-a").lake)
    # host-a's maintain holds the lock (taken here, through the same code anpr maintain uses).
    with maintain_lock(storage):
        busy = shared.anpr("host-b", "maintain", "--only", "stats", "--no-topic-check")
        assert busy.returncode == 1
        assert "another anpr maintain is running on this lake" in busy.stderr
        assert "--wait" in busy.stderr
        waiting: dict[str, object] = {}
        waiter = threading.Thread(
            target=lambda: waiting.update(
                run=shared.anpr(
                    "host-b", "maintain", "--only", "stats", "--no-topic-check", "--wait", "120"
                )
            )
        )
        waiter.start()
        time.sleep(2)
        assert waiter.is_alive(), "the waiting maintain ran while the lock was held"
    waiter.join(180)
    run = waiting["run"]
    assert run.returncode == 0, run.stderr  # type: ignore[attr-defined]


def test_a_read_only_session_on_postgres_and_s3_reads_the_lake_and_nothing_else(
    shared: Shared, registry: SiteRegistry
) -> None:
    expected_ids = simulate(shared.settings(), registry, 1_000, 35)
    assert shared.anpr("host-a", "ingest", "plates", "--until-idle", "3").returncode == 0
    assert set(_stored(shared)) == expected_ids  # read through the read-only attach
    with Lake.from_settings(shared.settings().lake, read_only=True) as lake:
        for outside in ("/etc/passwd", f"{shared.info.data_path}elsewhere/x.parquet"):
            with pytest.raises(duckdb.PermissionException):
                lake.con.execute(f"SELECT * FROM read_text('{outside}')").fetchall()
