"""The distributed set against the embedded lake, in the same run: ingest rate with one, two
and three workers, and the commit latency of each backend.

Both backends read from the same three-broker Kafka cluster (`anpr cluster start`'s code, in a
temporary state dir), so only the lake differs: the embedded SQLite catalog with local Parquet
files, against a PostgreSQL catalog with Parquet files on S3Proxy. Every run produces
``--reads`` simulated reads to a fresh topic first, then starts ``k`` workers (processes,
each with its own state folder: "hosts"; embedded workers share the lake folder, as they must)
and times until the lake holds every offset. Commit latency: ``--commits`` calls of
``Lake.write_batch`` with ``--rows`` rows each, one writer, p50 and p95.

    .venv/bin/python -m benchmarks.run distributed                 # 60,000 reads per run
    .venv/bin/python -m benchmarks.run distributed --reads 20000   # quicker
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from benchmarks.commit_cost import rows
from benchmarks.common import say
from pipeline.cluster import control
from pipeline.codec.vendors import VENDOR_RULES
from pipeline.config import Settings, load_settings
from pipeline.kafka.admin import create_topics
from pipeline.kafka.clients import make_producer
from pipeline.lake.catalog import Lake
from pipeline.reference.sites import DEFAULT_REGISTRY, load_registry
from pipeline.simulate.produce import simulate_plates
from pipeline.simulate.traffic import TrafficModel

REPO = Path(__file__).resolve().parents[1]


def backend_env(kind: str, info: control.ClusterInfo, root: Path, name: str) -> dict[str, str]:
    """ANPR_* for one run: the cluster's Kafka, and the lake of ``kind``."""
    env = control.kafka_env(info, name) | {"ANPR_LAKE_PATH": str(root / name / "lake")}
    if kind == "postgres+s3":
        env |= control.lake_env(info, name)
    return env


def committed(settings: Settings) -> int:
    try:
        with Lake.from_settings(settings.lake, read_only=True) as lake:
            row = lake.con.execute("SELECT coalesce(sum(next_offset), 0) FROM ingest_offsets")
            return int(str(row.fetchall()[0][0]))
    except duckdb.InterruptException:
        raise  # Ctrl-C while a look runs: stop the benchmark, do not read it as "nothing yet"
    except Exception:
        return 0


def ingest_rate(
    kind: str, workers: int, reads: int, info: control.ClusterInfo, root: Path
) -> float:
    name = f"b{uuid.uuid4().hex[:10]}"
    env = backend_env(kind, info, root, name)
    settings = load_settings(None, env=env)
    create_topics(settings)
    registry = load_registry(DEFAULT_REGISTRY, VENDOR_RULES)
    start = TrafficModel(registry, seed=5).start_for(reads, datetime.now(UTC))
    simulate_plates(
        make_producer(settings), settings.topics.plate_reads, registry, count=reads, start=start
    )
    procs = []
    started = time.monotonic()
    for host in range(workers):
        home = root / name / f"host-{host}"
        home.mkdir(parents=True)
        host_env = {**os.environ, **env, "ANPR_STATE_DIR": str(home / "state")}
        host_env["ANPR_LOG_LEVEL"] = "WARNING"
        procs.append(
            subprocess.Popen(
                # Idle this long before exiting: a worker that waits out a rebalance on a busy
                # machine must not leave with partitions no one else reads (the run then never
                # ends). The rate is timed to the last commit, not to the exits.
                [sys.executable, "-m", "pipeline", "ingest", "plates", "--until-idle", "20"],
                env=host_env,
                cwd=home,
            )
        )
    while (done := committed(settings)) < reads:
        if any(p.poll() not in (None, 0) for p in procs):
            raise SystemExit(f"a worker failed in the {kind} run")
        if all(p.poll() == 0 for p in procs) and committed(settings) < reads:
            raise SystemExit(f"every worker of the {kind} run stopped at {done} of {reads} reads")
        time.sleep(0.5)  # each look opens the lake: not free on a small machine
    elapsed = time.monotonic() - started
    for proc in procs:  # done: stop them now rather than after their idle time
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(120)
    return reads / elapsed


def commit_latency(
    kind: str, commits: int, size: int, info: control.ClusterInfo, root: Path
) -> list[float]:
    name = f"c{uuid.uuid4().hex[:10]}"
    settings = load_settings(None, env=backend_env(kind, info, root, name))
    times = []
    captured = datetime.now(UTC).replace(microsecond=0)
    with Lake.from_settings(settings.lake) as lake:
        nxt: dict[int, int | None] = {p: None for p in range(4)}
        for i in range(commits):
            batch = rows(size, i * size, captured)
            after = {p: (i + 1) * size // 4 for p in range(4)}
            began = time.perf_counter()
            lake.write_batch(
                "plate_reads",
                batch,
                consumer_group="bench",
                topic="bench",
                next_offsets=after,
                expected=nxt,
            )
            times.append(time.perf_counter() - began)
            nxt = dict(after)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=60_000, help="reads per ingest run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per backend and workers")
    parser.add_argument("--commits", type=int, default=40, help="commits timed per backend")
    parser.add_argument("--rows", type=int, default=2_000, help="rows per timed commit")
    args = parser.parse_args(argv)
    kinds = ("embedded", "postgres+s3")
    say("starting the local cluster (3 brokers, PostgreSQL, S3Proxy)")
    with control.temporary("anpr-bench-cluster-", timeout=300) as (state, info):
        rates: dict[tuple[str, int], list[float]] = {}
        latencies: dict[str, list[float]] = {}
        loads: list[float] = []
        for kind in kinds:
            latencies[kind] = commit_latency(kind, args.commits, args.rows, info, state / "runs")
        # Interleaved (each repeat runs every backend and worker count once): the machine's
        # load drifts over minutes, and a ratio is only fair between neighbouring runs.
        for run in range(args.repeat):
            for workers in (1, 2, 3):
                for kind in kinds:
                    rate = ingest_rate(kind, workers, args.reads, info, state / "runs")
                    rates.setdefault((kind, workers), []).append(rate)
                    loads.append(os.getloadavg()[0])
                    say(f"run {run + 1}: {kind}, {workers} worker(s): {rate:,.0f} reads/s")
    print(
        f"\ningest rate, {args.reads:,} reads per run, median of {args.repeat} "
        f"(reads/s; ratio postgres+s3 / embedded; {os.cpu_count()} cores, load average "
        f"{min(loads):.1f}-{max(loads):.1f}, median {statistics.median(loads):.1f}):"
    )
    for workers in (1, 2, 3):
        emb = statistics.median(rates[("embedded", workers)])
        dist = statistics.median(rates[("postgres+s3", workers)])
        print(
            f"  {workers} worker(s): embedded {emb:8,.0f}   postgres+s3 {dist:8,.0f}   "
            f"ratio {dist / emb:.2f}"
        )
    print(f"\ncommit latency, {args.rows:,} rows per write_batch, one writer:")
    for kind, times in latencies.items():
        q = statistics.quantiles(times, n=20)
        print(
            f"  {kind:12s} p50 {statistics.median(times) * 1000:7.1f} ms   "
            f"p95 {q[18] * 1000:7.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
