"""Hot-path benchmark: ``anpr ingest plates`` against its baselines, in one run, on one broker.

On a broker of its own, one pre-produced topic (``--count`` canonical reads of ~265 bytes,
uncompressed, 4 partitions, ~1% hostile) is drained into a fresh lake by:

  (a) ``anpr ingest plates --max-messages N`` (the real CLI, a subprocess);
  (b) a naive baseline: ``poll()`` per message, ``json.loads``, plain-Python rules,
      ``Table.from_pylist``, the same lake writes (:mod:`benchmarks.naive`), on a prefix;
  (c) a faust-streaming agent doing the same (:mod:`benchmarks.faust_baseline`), on a prefix;
  (d) the limit: the same messages from memory through ``LakeIngestor.commit_batch``
      (decode, dedup, the same lake write; Kafka and the DLQ stubbed out);
  (d') and (d'') the machine's limits: decode + ``pyarrow.parquet.write_table`` (zstd), no
      catalog, with one thread, and with two decode threads feeding a writer (both cores).

Rates are taken from lake commits: *steady* is first to last commit (start-up and the group
join excluded; the headline and the ratios), *wall* is process start to last commit. Each
method runs ``--repeats`` times, interleaved, and the median is reported. Then a 5M-event
backlog is drained by (a) for its peak RSS; ``--commits`` small commits time the commit cost
(:mod:`benchmarks.commit_cost`), on a SQLite and on a PostgreSQL catalog; and (a) runs live
at an offered 20k events/s for 60 s from messages built before the clock starts, its
freshness taken from each message's Kafka append time (LogAppendTime) to the lake snapshot
that made its row queryable, so the generator's CPU does not count. Every result carries the
load average (2 cores shared with other work).
Results are printed and written to ``benchmarks/results/``.

    .venv/bin/python -m benchmarks.hot_path            # full run (~40 min on 2 busy cores)
    .venv/bin/python -m benchmarks.hot_path --quick    # smoke run (~10 min on a busy machine)
    .venv/bin/python -m benchmarks.hot_path --count 200000 --repeats 0 --skip-rss \\
        --set ANPR_INGEST_BATCH_TIMEOUT_S=0.1          # freshness alone, one setting changed
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from confluent_kafka import OFFSET_BEGINNING, Consumer, ConsumerGroupState, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry

from benchmarks import commit_cost
from benchmarks.common import (
    ANPR,
    PYTHON,
    REPO,
    Child,
    Commit,
    ProgressFile,
    Result,
    bucket_delta,
    bucket_quantile,
    create_topics,
    end_offsets,
    histogram_buckets,
    local_broker,
    metric_sum,
    result_from_commits,
    say,
    scrape,
    wait_for,
)
from benchmarks.feed import Template, make_pool, prebuild_live, produce_backlog, produce_prebuilt
from benchmarks.naive import Refused, default_validator
from pipeline.codec.plate_reads import DecodeLimits, DecodeResult, decode_plate_reads
from pipeline.codec.vendors import VENDOR_RULES
from pipeline.config import LakeSettings, Settings, load_settings
from pipeline.ingest.plates import PlateDecoder
from pipeline.ingest.worker import LakeIngestor
from pipeline.kafka.local import free_port
from pipeline.lake.catalog import Lake
from pipeline.metrics import IngestMetrics
from pipeline.reference.sites import DEFAULT_REGISTRY, SiteRegistry, load_registry
from pipeline.retention import expired_on_arrival

BULK_TOPIC = "bench.plate-reads"
LIVE_TOPIC = "bench.live-reads"
DLQ_TOPIC = "bench.dlq"
PARTITIONS = 4
# Report facts of the commit cost, by catalog (commit_cost.CATALOGS).
_COMMIT_FACT = {"sqlite": "commit_cost", "postgres": "commit_cost_postgres"}
RESULTS = REPO / "benchmarks" / "results"
_TOTALS_LINE = re.compile(
    r"consumed (\d+): stored (\d+), rejected (\d+), expired on arrival (\d+), duplicates (\d+)"
)


@dataclass(frozen=True)
class Target:
    name: str
    value: float
    limit: float
    at_least: bool  # True: value >= limit passes; False: value <= limit passes
    unit: str = ""

    @property
    def passed(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def verdict(self) -> str:
        if self.value != self.value:  # NaN: not measured
            return "NOT MEASURED"
        margin = self.value / self.limit if self.at_least else self.limit / self.value
        word = "PASS" if self.passed else "MISS"
        return f"{word} ({margin:.2f}x the target)"


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def of(self, method: str) -> list[Result]:
        return [r for r in self.results if r.method == method]

    def median_rate(self, method: str, *, steady: bool = True) -> float:
        runs = self.of(method)
        if not runs:
            return float("nan")
        return statistics.median(r.steady_rate if steady else r.wall_rate for r in runs)


@dataclass(frozen=True)
class Bench:
    """What every step of one run shares."""

    args: argparse.Namespace
    tmp: Path
    bootstrap: str
    registry: SiteRegistry
    settings: Settings  # the ingest settings of (a) and (d): defaults plus --set
    overrides: dict[str, str]  # --set, as ANPR_* variables for the worker

    def workdir(self, name: str) -> Path:
        work = self.tmp / name
        work.mkdir()
        return work

    def decode_limits(self) -> DecodeLimits:
        ingest = self.settings.ingest
        return DecodeLimits(
            max_message_bytes=ingest.max_message_bytes,
            future_tolerance=timedelta(seconds=ingest.future_tolerance_s),
        )

    def decode(self, values: Sequence[bytes | None], now: datetime) -> DecodeResult:
        return decode_plate_reads(
            values,
            registry=self.registry,
            now=now,
            retention_cutoff=expired_on_arrival(now, self.settings.retention.months),
            limits=self.decode_limits(),
        )


# --- (a) the real worker ---------------------------------------------------------------------


class Worker:
    """``anpr ingest plates`` as a subprocess, watched through its /metrics endpoint."""

    def __init__(self, bench: Bench, topic: str, work: Path) -> None:
        self.port = free_port()
        self.group = f"bench-{work.name}"
        self.env = {
            **bench.overrides,
            "ANPR_KAFKA_BOOTSTRAP_SERVERS": bench.bootstrap,
            "ANPR_TOPICS_PLATE_READS": topic,
            "ANPR_TOPICS_DLQ": DLQ_TOPIC,
            "ANPR_INGEST_CONSUMER_GROUP": self.group,
            "ANPR_LAKE_PATH": str(work / "lake"),
            "ANPR_INGEST_METRICS_PORT": str(self.port),
            "ANPR_STATE_DIR": str(work / "anpr-state"),
        }
        self.log = work / "worker.log"
        self.child: Child | None = None

    def start(self, *flags: str) -> Child:
        self.child = Child.spawn([ANPR, "ingest", "plates", *flags], env=self.env, log=self.log)
        return self.child

    def scrape(self) -> dict[str, float] | None:
        return scrape(self.port, timeout=1.0)

    def consumed(self, samples: dict[str, float]) -> int:
        return int(metric_sum(samples, "anpr_messages_consumed_total"))


def drain_with_worker(
    bench: Bench, topic: str, count: int, work: Path, label: str, timeout: float
) -> Result:
    """Drain ``count`` messages with the CLI; commits from its metrics, RSS from /proc."""
    worker = Worker(bench, topic, work)
    child = worker.start("--max-messages", str(count))
    commits: list[Commit] = []
    deadline = time.monotonic() + timeout
    try:
        while child.running():
            samples = worker.scrape()
            if samples is not None:
                consumed = worker.consumed(samples)
                if consumed and (not commits or consumed > commits[-1].consumed):
                    last = samples["anpr_last_commit_timestamp_seconds"]
                    commits.append(Commit(last, consumed))
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: not done within {timeout:.0f} s")
            time.sleep(0.2)
    finally:
        child.stop()
    if child.proc.returncode != 0:
        raise RuntimeError(f"{label} failed ({child.proc.returncode}):\n{child.output()[-3000:]}")
    totals = _TOTALS_LINE.search(child.output())
    names = ("consumed", "stored", "rejected", "expired", "duplicates")
    # The closing line is for people; if its wording changes, only the count checks are lost.
    counts = dict(zip(names, map(int, totals.groups()), strict=True)) if totals else {}
    counts.setdefault("consumed", count)
    result = result_from_commits(
        "a", label, child.started, commits, peak_rss_mb=child.peak_rss_mb, counts=counts
    )
    result.note = "CLI subprocess; commits from /metrics (0.2 s polls, last batch may be unseen)"
    return result


# --- (b) and (c): baselines that report their own commits -------------------------------------


def drain_with_baseline(
    method: str, argv: Sequence[str | Path], work: Path, *, count: int, label: str, timeout: float
) -> Result:
    """Run a baseline child until it has committed ``count`` messages, then stop it.

    The rate is taken up to the first commit that reaches ``count``: a prefix of at least
    ``count`` (or everything, if the child drained the topic first).
    """
    progress = ProgressFile(work / "progress.jsonl")
    child = Child.spawn(
        [*argv, "--progress", progress.path, "--lake", work / "lake"],
        env={},
        log=work / "child.log",
    )
    deadline = time.monotonic() + timeout
    shown = 0
    try:
        while child.running():
            commits = progress.commits()
            done = commits[-1].consumed if commits else 0
            if done >= count:
                break
            if done >= shown + count // 5:
                shown = done
                say(f"  {label}: {done:,}/{count:,}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: {done:,} of {count:,} after {timeout:.0f} s")
            time.sleep(0.25)
    finally:
        child.stop()
    records = progress.read()
    reached = next((i for i, r in enumerate(records) if r["consumed"] >= count), None)
    records = records if reached is None else records[: reached + 1]
    if not records or records[-1]["consumed"] < min(count, 100_000):
        raise RuntimeError(
            f"{label}: only {records[-1]['consumed'] if records else 0} committed:\n"
            f"{child.output()[-3000:]}"
        )
    commits = [Commit(r["t"], r["consumed"]) for r in records]
    counts = {k: v for k, v in records[-1].items() if k != "t"}
    return result_from_commits(
        method, label, child.started, commits, peak_rss_mb=child.peak_rss_mb, counts=counts
    )


def drain_naive(bench: Bench, work: Path, count: int) -> Result:
    ingest = bench.settings.ingest
    argv = [
        PYTHON, "-m", "benchmarks.naive", "--bootstrap", bench.bootstrap,
        "--topic", BULK_TOPIC, "--dlq", DLQ_TOPIC, "--group", f"bench-{work.name}",
        "--max-messages", str(count), "--batch-size", str(ingest.batch_size),
        "--batch-timeout-s", str(ingest.batch_timeout_s),
    ]  # fmt: skip
    result = drain_with_baseline(
        "b", argv, work, count=count, label="(b) naive poll()", timeout=bench.args.timeout
    )
    result.note = "poll() + json.loads + plain-Python rules + from_pylist; same lake writes"
    return result


def drain_faust(bench: Bench, work: Path, count: int) -> Result:
    argv = [
        PYTHON, "-m", "benchmarks.faust_baseline", "--bootstrap", bench.bootstrap,
        "--topic", BULK_TOPIC, "--dlq", DLQ_TOPIC, "--group", f"bench-{work.name}",
        "--datadir", work / "faust", "--batch-size", str(bench.settings.ingest.batch_size),
    ]  # fmt: skip
    result = drain_with_baseline(
        "c", argv, work, count=count, label="(c) faust agent", timeout=bench.args.timeout
    )
    result.note = "take_events batches, per-message plain-Python rules; same lake writes"
    return result


# --- (d) the limit: the same messages from memory ---------------------------------------------


class _NoKafka:
    """The consumer calls commit_batch makes after a lake commit (monitoring only)."""

    def commit(self, *, offsets: Any, asynchronous: bool) -> None:
        return None

    def get_watermark_offsets(self, tp: Any, cached: bool) -> tuple[int, int]:
        return -1, -1


class _NoDeadLetters:
    def __init__(self) -> None:
        self.sent = 0

    def send(self, **record: Any) -> None:
        self.sent += 1

    def flush(self) -> None:
        return None


def load_batches(bench: Bench, topic: str, count: int) -> list[list[Any]]:
    """The topic's first ``count`` messages, in consume order, in batches like the worker's."""
    consumer = Consumer(
        {
            "bootstrap.servers": bench.bootstrap,
            "group.id": "bench-load",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    messages: list[Any] = []
    deadline = time.monotonic() + 300
    while len(messages) < count and time.monotonic() < deadline:
        got = consumer.consume(num_messages=min(10_000, count - len(messages)), timeout=1.0)
        messages.extend(m for m in got if m.error() is None)
    consumer.close()
    if len(messages) < count:
        raise RuntimeError(f"loaded only {len(messages)} of {count} messages from {topic}")
    size = bench.settings.ingest.batch_size
    return [messages[i : i + size] for i in range(0, count, size)]


def drain_from_memory(bench: Bench, batches: list[list[Any]], work: Path) -> Result:
    """(d): LakeIngestor.commit_batch over in-memory messages into a fresh lake."""
    settings = replace(bench.settings, lake=LakeSettings(path=work / "lake"))
    with Lake.open(settings.lake.path) as lake:
        ingestor = LakeIngestor(
            PlateDecoder(settings, bench.registry),
            consumer=_NoKafka(),
            dead_letters=_NoDeadLetters(),
            lake=lake,
            metrics=IngestMetrics(CollectorRegistry()),
        )
        started = time.time()
        commits, consumed = [Commit(started, 0)], 0  # in process: no start-up to exclude
        for batch in batches:
            ingestor.commit_batch(batch)
            consumed += len(batch)
            commits.append(Commit(time.time(), consumed))
    t = ingestor.totals
    counts = {
        "consumed": t.consumed,
        "stored": t.written,
        "rejected": t.rejected,
        "expired": t.expired,
        "duplicates": t.duplicates,
    }
    result = result_from_commits("d", "(d) limit: commit_batch", started, commits, counts=counts)
    result.note = "in-process commit_batch: decode + dedup + lake write; no Kafka, DLQ stubbed"
    return result


def decode_to_parquet(bench: Bench, batches: list[list[Any]], work: Path) -> Result:
    """(d'), for information: decode + one zstd Parquet file per batch, no lake, no dedup."""
    started = time.time()
    commits, consumed = [Commit(started, 0)], 0  # in process: no start-up to exclude
    for n, batch in enumerate(batches):
        result = bench.decode([m.value() for m in batch], datetime.now(UTC))
        pq.write_table(result.table, work / f"{n:05d}.parquet", compression="zstd")
        consumed += len(batch)
        commits.append(Commit(time.time(), consumed))
    return result_from_commits("d2", "(d') decode + Parquet file", started, commits)


def decode_to_parquet_two_threads(bench: Bench, batches: list[list[Any]], work: Path) -> Result:
    """(d''), the two-core limit: two threads decode (the decoder releases the GIL in Arrow)
    while this one writes each batch's zstd Parquet file, in batch order; at most four batches
    decoded ahead, so memory stays bounded."""
    started = time.time()
    commits, consumed = [Commit(started, 0)], 0  # in process: no start-up to exclude
    ahead: deque[Future[DecodeResult]] = deque()
    with ThreadPoolExecutor(max_workers=2) as pool:
        for n in range(len(batches) + 4):
            if n < len(batches):
                values = [m.value() for m in batches[n]]
                ahead.append(pool.submit(bench.decode, values, datetime.now(UTC)))
            if len(ahead) > 4 or (n >= len(batches) and ahead):
                done = len(commits) - 1  # batches written so far
                table = ahead.popleft().result().table
                pq.write_table(table, work / f"{done:05d}.parquet", compression="zstd")
                consumed += len(batches[done])
                commits.append(Commit(time.time(), consumed))
    return result_from_commits("d3", "(d'') 2 decode threads + file", started, commits)


# --- sanity: the plain validator makes the decoder's decisions --------------------------------


def check_agreement(bench: Bench, pool: list[Template]) -> dict[str, Any]:
    """Outcome of every pool value under decode_plate_reads and under the plain validator."""
    values = [t.replay(b".r0") for t in pool]
    now = datetime.now(UTC)
    size = bench.settings.ingest.batch_size
    vectorised: dict[int, tuple[str, str | None]] = {}
    began = time.perf_counter()
    for start in range(0, len(values), size):
        decoded = bench.decode(values[start : start + size], now)
        table = decoded.table
        for i, plate in zip(
            table["msg_index"].to_pylist(), table["plate"].to_pylist(), strict=True
        ):
            vectorised[start + i] = ("stored", plate)
        for reject in decoded.rejected:
            vectorised[start + reject.index] = (reject.reason.value, None)
        for i in decoded.expired:
            vectorised[start + i] = ("expired", None)
    vectorised_s = time.perf_counter() - began
    validator = default_validator(bench.registry)
    cutoff = expired_on_arrival(now, bench.settings.retention.months)
    mismatches: Counter[str] = Counter()
    began = time.perf_counter()
    for i, value in enumerate(values):
        try:
            row = validator.check(value, now, cutoff)
            plain = ("expired", None) if row is None else ("stored", row["plate"])
        except Refused as refused:
            plain = (refused.reason.value, None)
        if plain != vectorised[i]:
            mismatches[f"{vectorised[i][0]} vs plain {plain[0]}"] += 1
    plain_s = time.perf_counter() - began
    return {
        "values": len(values),
        "agree": len(values) - sum(mismatches.values()),
        "mismatches": dict(mismatches),
        "outcomes": dict(Counter(outcome for outcome, _ in vectorised.values())),
        "decode_rate": len(values) / vectorised_s,
        "plain_validate_rate": len(values) / plain_s,
    }


# --- freshness at a steady offered load ---------------------------------------------------------


class FellBehind(Exception):
    """The worker did not keep up with the offered rate: freshness is unbounded, a miss."""


def measure_freshness(bench: Bench, pool: list[Template], work: Path) -> dict[str, Any]:
    """Run the worker live, offer ``--rate`` reads/s, and read its freshness histogram.

    A sampler scrapes the worker every second meanwhile, for its lag and batch sizes: they
    say why freshness is what it is.
    """
    rate, seconds = bench.args.rate, bench.args.duration
    worker = Worker(bench, LIVE_TOPIC, work)
    child = worker.start()
    admin = AdminClient({"bootstrap.servers": bench.bootstrap})
    snapshots: dict[str, dict[str, float]] = {}
    samples: list[tuple[float, dict[str, float]]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            scraped = worker.scrape()
            if scraped is not None:
                samples.append((time.time(), scraped))

    def snapshot_before() -> None:
        snapshots["before"] = worker.scrape() or {}
        sampler.start()

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        wait_for(lambda: worker.scrape() is not None, 60, "the worker's /metrics endpoint")
        wait_for(lambda: _group_stable(admin, worker.group), 60, "the worker to join its group")
        warmup = min(5.0, seconds / 4)
        messages = prebuild_live(pool, rate=rate, seconds=warmup + seconds)
        say(f"  offering {rate:,.0f} reads/s for {warmup:.0f} s warm-up + {seconds:.0f} s")
        measured_from = time.time() + warmup
        offered = produce_prebuilt(
            bench.bootstrap, LIVE_TOPIC, messages, rate=rate, at=(warmup, snapshot_before)
        )
        messages.clear()
        try:
            wait_for(
                lambda: worker.consumed(worker.scrape() or {}) >= offered.sent,
                60,
                "the worker to catch up with the offered load",
                interval=0.2,
            )
        except TimeoutError:
            behind = offered.sent - worker.consumed(worker.scrape() or {})
            raise FellBehind(
                f"{behind:,.0f} of {offered.sent:,} offered reads still unconsumed 60 s after "
                f"the offer ended (load {os.getloadavg()[0]:.1f})"
            ) from None
        after = worker.scrape() or {}
        child.running()  # a last peak-RSS sample
    finally:
        stop.set()
        child.stop()
    before = snapshots.get("before", {})
    fresh = _histogram_delta(before, after, "anpr_freshness_seconds")
    batch = _histogram_delta(before, after, "anpr_batch_duration_seconds")
    observed = fresh[-1][1] if fresh else 0.0
    batches = batch[-1][1] if batch else 0.0
    consumed = worker.consumed(after) - worker.consumed(before)
    lags = [metric_sum(s, "anpr_consumer_lag_messages") for _, s in samples]
    queryable = append_to_queryable(bench, work / "lake", measured_from)
    return {
        **queryable,
        "offered_rate": offered.rate,
        "offered": offered.sent,
        "offered_seconds": offered.seconds,
        "warmup_s": warmup,
        "rows_observed": int(observed),
        "p50_s": bucket_quantile(fresh, 0.50),
        "p99_s": bucket_quantile(fresh, 0.99),
        "mean_s": _histogram_sum(before, after, "anpr_freshness_seconds") / observed
        if observed
        else float("nan"),
        "buckets": fresh,
        "batches": int(batches),
        "mean_batch": consumed / batches if batches else float("nan"),
        "batch_p50_s": bucket_quantile(batch, 0.50),
        "batch_p99_s": bucket_quantile(batch, 0.99),
        "max_lag": max(lags, default=float("nan")),
        "lag_per_second": lags,
        "worker_peak_rss_mb": child.peak_rss_mb,
    }


def append_to_queryable(bench: Bench, lake_path: Path, since: float) -> dict[str, Any]:
    """Seconds from each message's Kafka append time (the live topic stamps LogAppendTime) to
    the commit of the lake snapshot that made its row queryable, for messages appended after
    ``since`` (Unix time). Neither the generator's pace nor the capture times matter."""
    appended: dict[tuple[int, int], int] = {}
    consumer = Consumer(
        {
            "bootstrap.servers": bench.bootstrap,
            "group.id": "bench-append",
            "enable.auto.commit": False,
        }
    )
    ends = end_offsets(bench.bootstrap, LIVE_TOPIC)
    consumer.assign([TopicPartition(LIVE_TOPIC, p, OFFSET_BEGINNING) for p in ends])
    deadline = time.monotonic() + 120
    while len(appended) < sum(ends.values()) and time.monotonic() < deadline:
        for m in consumer.consume(num_messages=10_000, timeout=1.0):
            if m.error() is None:
                appended[(m.partition(), m.offset())] = m.timestamp()[1]
    consumer.close()
    with Lake.open(lake_path, read_only=True) as lake:
        (last,) = lake.con.execute(
            "SELECT max(snapshot_id) FROM ducklake_snapshots('lake')"
        ).fetchone() or (0,)
        rows = lake.con.execute(
            "SELECT c.source_partition, c.source_offset, epoch_ms(s.snapshot_time) "
            "FROM ducklake_table_changes('lake', 'main', 'plate_reads', 0, ?) c "
            "JOIN ducklake_snapshots('lake') s USING (snapshot_id) WHERE c.change_type = 'insert'",
            [last],
        ).fetchall()
    since_ms = since * 1000
    latencies = sorted(
        (committed - appended[(part, offset)]) / 1000
        for part, offset, committed in rows
        if appended.get((part, offset), 0) >= since_ms
    )
    if not latencies:
        return {"append_rows": 0, "append_p50_s": float("nan"), "append_p99_s": float("nan")}
    return {
        "append_rows": len(latencies),
        "append_p50_s": latencies[len(latencies) // 2],
        "append_p99_s": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "append_max_s": latencies[-1],
    }


def _histogram_delta(
    before: dict[str, float], after: dict[str, float], name: str
) -> list[tuple[float, float]]:
    return bucket_delta(histogram_buckets(before, name), histogram_buckets(after, name))


def _histogram_sum(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)


def _group_stable(admin: AdminClient, group: str) -> bool:
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    return bool(description.state == ConsumerGroupState.STABLE and description.members)


# --- the run --------------------------------------------------------------------------------------


def run(bench: Bench) -> Report:
    args = bench.args
    report = Report()
    say(f"generating a pool of {args.pool:,} reads (~1% hostile)")
    pool = make_pool(bench.registry, args.pool)
    agreement = check_agreement(bench, pool)
    report.facts["agreement"] = agreement
    say(
        f"plain validator vs decode_plate_reads on the pool: {agreement['agree']:,}/"
        f"{agreement['values']:,} agree {agreement['mismatches'] or ''}; outcomes "
        f"{agreement['outcomes']}"
    )
    create_topics(bench.bootstrap, {BULK_TOPIC: PARTITIONS, DLQ_TOPIC: PARTITIONS})
    # Freshness is measured from the broker's append time (append_to_queryable).
    create_topics(
        bench.bootstrap,
        {LIVE_TOPIC: PARTITIONS},
        config={"message.timestamp.type": "LogAppendTime"},
    )
    say(f"producing {args.count:,} reads to {BULK_TOPIC}")
    seconds = produce_backlog(bench.bootstrap, BULK_TOPIC, pool, start=0, count=args.count)
    ends = end_offsets(bench.bootstrap, BULK_TOPIC)
    count = sum(ends.values())
    sizes = sorted(len(t.replay(b".r0")) for t in pool)
    report.facts["topic"] = {
        "messages": count,
        "per_partition": ends,
        "produce_rate": args.count / seconds,
        "median_value_bytes": sizes[len(sizes) // 2],
        "mean_value_bytes": sum(sizes) / len(sizes),
    }
    say(f"topic holds {count:,} messages {ends}, produced at {args.count / seconds:,.0f}/s")

    batches: list[list[Any]] = []
    if args.repeats:
        say(f"loading the {count:,} messages into memory for (d)")
        batches = load_batches(bench, BULK_TOPIC, count)
    naive_count = min(args.naive_count, count)
    faust_count = min(args.faust_count, count)
    for i in range(args.repeats):
        say(f"round {i + 1}/{args.repeats}")
        steps: list[tuple[str, Callable[[Path], Result]]] = [
            ("d", lambda w: drain_from_memory(bench, batches, w)),
            ("d2", lambda w: decode_to_parquet(bench, batches, w)),
            ("d3", lambda w: decode_to_parquet_two_threads(bench, batches, w)),
            (
                "a",
                lambda w: drain_with_worker(
                    bench, BULK_TOPIC, count, w, "(a) anpr ingest plates", args.timeout
                ),
            ),
            ("b", lambda w: drain_naive(bench, w, naive_count)),
        ]
        if i < args.faust_repeats:
            steps.append(("c", lambda w: drain_faust(bench, w, faust_count)))
        for method, step in steps:
            try:
                result = step(bench.workdir(f"{method}-{i}"))
            except (RuntimeError, TimeoutError) as exc:
                say(f"  {method} FAILED: {exc}")
                report.facts.setdefault("failures", []).append(f"{method} round {i}: {exc}")
                continue
            report.results.append(result)
            say(
                f"  {result.label}: {result.events:,} events, steady "
                f"{result.steady_rate:,.0f}/s, wall {result.wall_rate:,.0f}/s"
                + (f", peak RSS {result.peak_rss_mb:.0f} MB" if result.peak_rss_mb else "")
            )
    _check_same_rows(report)
    batches.clear()  # free the in-memory copy before the big drain

    if not args.skip_rss:
        extra = args.rss_count - count
        if extra > 0:
            say(f"appending {extra:,} reads for the {args.rss_count:,}-event backlog")
            produce_backlog(bench.bootstrap, BULK_TOPIC, pool, start=count, count=extra)
        total = sum(end_offsets(bench.bootstrap, BULK_TOPIC).values())
        say(f"draining a {total:,}-event backlog with (a) for its peak RSS")
        rss = drain_with_worker(
            bench,
            BULK_TOPIC,
            total,
            bench.workdir("rss"),
            f"(a) {total / 1e6:g}M backlog",
            args.timeout * 3,
        )
        rss.method = "a-rss"
        report.results.append(rss)
        say(f"  peak RSS {rss.peak_rss_mb:.0f} MB, steady {rss.steady_rate:,.0f}/s")

    for catalog in commit_cost.CATALOGS if args.commits > 0 else ():
        say(f"commit cost: {args.commits + 100:,} small commits into a fresh lake ({catalog})")
        cost = commit_cost.measure(
            bench.workdir(f"commits-{catalog}"),
            commits=args.commits,
            rows_per_commit=40,
            window=100,
            catalog=catalog,
        )
        report.facts[_COMMIT_FACT[catalog]] = {
            **vars(cost),
            "ratio": cost.ratio,
            "load_avg": os.getloadavg()[0],
        }
        say(f"  {cost.line()}")

    if args.duration > 0:
        say(f"freshness: (a) live at an offered {args.rate:,.0f} reads/s")
        try:
            fresh = measure_freshness(bench, pool, bench.workdir("fresh"))
        except FellBehind as exc:
            # The other results still stand; the freshness targets read as missed, not absent.
            inf = float("inf")
            report.facts["freshness"] = {"fell_behind": str(exc), "p99_s": inf, "append_p99_s": inf}
            say(f"  the worker fell behind: {exc}")
            return report
        report.facts["freshness"] = {**fresh, "load_avg": os.getloadavg()[0]}
        fresh = report.facts["freshness"]
        say(
            f"  offered {fresh['offered_rate']:,.0f}/s; freshness p50 {fresh['p50_s']:.2f} s, "
            f"p99 {fresh['p99_s']:.2f} s over {fresh['rows_observed']:,} rows"
        )
    return report


def _check_same_rows(report: Report) -> None:
    """(a) and (d) read the same messages, so they must store and reject the same counts."""
    seen = {
        (r.counts.get("stored"), r.counts.get("rejected"), r.counts.get("duplicates"))
        for r in report.of("a") + report.of("d")
    }
    report.facts["a_d_same_counts"] = len(seen) == 1
    if len(seen) > 1:
        say(f"  WARNING: (a) and (d) runs disagree on stored/rejected/duplicates: {seen}")


# --- output ---------------------------------------------------------------------------------------


def targets(report: Report) -> list[Target]:
    a = report.median_rate("a")
    fresh = report.facts.get("freshness", {})
    rss = report.of("a-rss")
    nan = float("nan")
    commits = []
    for catalog, fact in _COMMIT_FACT.items():
        commit = report.facts.get(fact, {})
        name = f"commit after {commit.get('commits', 0):,} / first {commit.get('window', 0)}"
        commits.append(Target(f"{name} ({catalog})", commit.get("ratio", nan), 1.2, at_least=False))
    return [
        Target("(a) draining the backlog", a, 100_000, at_least=True, unit="/s"),
        Target("a/d'' (two-core limit)", a / report.median_rate("d3"), 0.55, at_least=True),
        *commits,
        Target(
            "p99 Kafka append -> queryable",
            fresh.get("append_p99_s", nan),
            2.0,
            at_least=False,
            unit="s",
        ),
        Target("a/b (steady rates)", a / report.median_rate("b"), 5, at_least=True),
        Target("a/c (steady rates)", a / report.median_rate("c"), 20, at_least=True),
        Target("a/d (steady rates)", a / report.median_rate("d"), 0.6, at_least=True),
        Target("p99 freshness", fresh.get("p99_s", nan), 2.0, at_least=False, unit="s"),
        Target(
            f"peak RSS, {rss[0].counts['consumed'] / 1e6:g}M backlog" if rss else "peak RSS",
            (rss[0].peak_rss_mb or nan) if rss else nan,
            400,
            at_least=False,
            unit="MB",
        ),
    ]


def render(report: Report, bench: Bench) -> str:
    topic = report.facts["topic"]
    nan = float("nan")
    lines = [
        f"hot path, {os.cpu_count()} cores (load average now {os.getloadavg()[0]:.1f}); "
        f"topic {topic['messages']:,} reads (median "
        f"{topic['median_value_bytes']} B, uncompressed) in {PARTITIONS} partitions "
        f"{topic['per_partition']}; batch {bench.settings.ingest.batch_size:,}"
        + (f"; --set {bench.overrides}" if bench.overrides else "")
        + f"; medians of up to {bench.args.repeats} round(s)"
    ]
    head = (
        f"{'method':<30} {'runs':>4} {'events':>10} {'steady s':>9} {'events/s':>10} "
        f"{'wall ev/s':>10} {'a/x':>6} {'peak RSS':>9} {'load':>5}"
    )
    lines += [head, "-" * len(head)]
    a = report.median_rate("a")
    for method in ("a", "b", "c", "d", "d2", "d3", "a-rss"):
        runs = report.of(method)
        if not runs:
            continue
        rate = report.median_rate(method)
        rss = [r.peak_rss_mb for r in runs if r.peak_rss_mb]
        lines.append(
            f"{runs[0].label:<30} {len(runs):>4} {runs[0].events:>10,} "
            f"{statistics.median(r.steady_s for r in runs):>9.1f} {rate:>10,.0f} "
            f"{report.median_rate(method, steady=False):>10,.0f} {a / rate:>6.2f} "
            + (f"{max(rss):>6.0f} MB" if rss else f"{'-':>9}")
            + f" {statistics.median(r.load_avg for r in runs):>5.1f}"
        )
        if len(runs) > 1:
            spread = ", ".join(f"{r.steady_rate:,.0f}" for r in runs)
            lines.append(f"{'':<30} steady events/s per round: {spread}")
    lines.append(
        "steady = first to last lake commit (no start-up or group join); wall = from process\n"
        "start. (d) is the a/d denominator; (d') is for information. (b), (c): prefixes."
    )
    fresh = report.facts.get("freshness")
    if fresh and "fell_behind" in fresh:
        lines.append(
            f"freshness of (a): not bounded, the worker fell behind: {fresh['fell_behind']}"
        )
    elif fresh:
        lines.append(
            f"freshness of (a) at an offered {fresh['offered_rate']:,.0f}/s for "
            f"{fresh['offered_seconds'] - fresh['warmup_s']:.0f} s (after {fresh['warmup_s']:.0f}"
            f" s warm-up): p50 {fresh['p50_s']:.2f} s, p99 {fresh['p99_s']:.2f} s, mean "
            f"{fresh['mean_s']:.2f} s over {fresh['rows_observed']:,} rows (bucket resolution);"
            f"\n  {fresh['batches']:,} batches of {fresh['mean_batch']:,.0f} on average, batch "
            f"duration p50 {fresh['batch_p50_s']:.2f} s, p99 {fresh['batch_p99_s']:.2f} s; "
            f"max lag {fresh['max_lag']:,.0f} messages (1 s samples)"
        )
    if fresh and fresh.get("append_rows"):
        lines.append(
            f"  Kafka append -> queryable (lake snapshot commit), {fresh['append_rows']:,} rows: "
            f"p50 {fresh['append_p50_s']:.2f} s, p99 {fresh['append_p99_s']:.2f} s, max "
            f"{fresh['append_max_s']:.2f} s (load {fresh.get('load_avg', nan):.1f})"
        )
    for catalog, fact in _COMMIT_FACT.items():
        commit = report.facts.get(fact)
        if commit:
            lines.append(
                f"commit cost (write_batch, {catalog} catalog, {commit['rows_per_commit']} "
                f"rows/commit): first {commit['window']} {commit['first_ms']:.1f} ms, after "
                f"{commit['commits']:,} {commit['late_ms']:.1f} ms (medians): "
                f"{commit['ratio']:.2f}x (load {commit['load_avg']:.1f})"
            )
    agreement = report.facts["agreement"]
    lines.append(
        f"validation alone on the pool: decode_plate_reads {agreement['decode_rate']:,.0f}/s, "
        f"plain Python {agreement['plain_validate_rate']:,.0f}/s; decisions agree on "
        f"{agreement['agree']:,}/{agreement['values']:,}"
    )
    lines.append("targets:")
    checked = targets(report)
    width = max(len(t.name) for t in checked)
    for t in checked:
        lines.append(
            f"  {t.name:<{width}} {t.value:>9.2f} {t.unit:<2} vs {t.limit:g}: {t.verdict()}"
        )
    lines += [f"FAILED: {failure}" for failure in report.facts.get("failures", [])]
    return "\n".join(lines)


def save(report: Report, bench: Bench, text: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"hot_path-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    document = {
        "args": {k: str(v) for k, v in vars(bench.args).items()},
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "runs": [r.as_json() for r in report.results],
        "targets": [
            {**vars(t), "passed": t.passed, "verdict": t.verdict()} for t in targets(report)
        ],
        "facts": report.facts,
        "table": text,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=2, default=str))
    os.replace(tmp, path)
    return path


# The benchmark owns these: they name its broker, topics, groups, lakes and ports.
_OWNED = frozenset(
    {
        "ANPR_KAFKA_BOOTSTRAP_SERVERS",
        "ANPR_TOPICS_PLATE_READS",
        "ANPR_TOPICS_DLQ",
        "ANPR_INGEST_CONSUMER_GROUP",
        "ANPR_LAKE_PATH",
        "ANPR_INGEST_METRICS_PORT",
        "ANPR_STATE_DIR",
    }
)


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("ANPR_") or name in _OWNED:
        raise argparse.ArgumentTypeError(f"expected ANPR_<SECTION>_<KEY>=VALUE, not {text!r}")
    return name, value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--count", type=int, default=2_000_000, help="reads in the topic")
    parser.add_argument("--pool", type=int, default=200_000, help="distinct reads replayed")
    parser.add_argument("--naive-count", type=int, default=300_000, help="prefix for (b)")
    parser.add_argument("--faust-count", type=int, default=150_000, help="prefix for (c)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of (a), (b), (d)")
    parser.add_argument("--faust-repeats", type=int, default=1, help="rounds including (c)")
    parser.add_argument("--rss-count", type=int, default=5_000_000, help="backlog for peak RSS")
    parser.add_argument("--skip-rss", action="store_true", help="skip the peak-RSS drain")
    parser.add_argument("--rate", type=float, default=20_000, help="offered reads/s, live")
    parser.add_argument("--duration", type=float, default=60, help="live seconds; 0 skips")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per drain")
    parser.add_argument("--commits", type=int, default=10_000, help="commit cost after; 0 skips")
    parser.add_argument(
        "--set",
        type=_setting,
        action="append",
        default=[],
        metavar="ANPR_X_Y=V",
        help="an ingest setting for (a) and (d), e.g. ANPR_INGEST_BATCH_SIZE=50000",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 200k reads, 1 round, 1M RSS, 15 s live, 1,000 commits",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.pool, args.repeats = 200_000, 50_000, 1
        args.naive_count, args.faust_count = 200_000, 100_000
        args.rss_count, args.duration, args.commits = 1_000_000, 15, 1_000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the broker and the workers are always stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    overrides = dict(args.set)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="anpr-bench-") as folder:
        tmp = Path(folder)
        # An empty config file: an anpr.toml in the current folder must not leak in.
        (tmp / "bench.toml").touch()
        settings = load_settings(tmp / "bench.toml", env=overrides)
        with local_broker(tmp / "kafka") as bootstrap:
            bench = Bench(
                args,
                tmp,
                bootstrap,
                load_registry(DEFAULT_REGISTRY, VENDOR_RULES),
                settings,
                overrides,
            )
            report = run(bench)
    text = render(report, bench)
    print()
    print(text)
    path = save(report, bench, text)
    print(f"\nresults: {path.relative_to(REPO)} (total {time.monotonic() - began:.0f} s)")
    return 1 if report.facts.get("failures") else 0


if __name__ == "__main__":
    sys.exit(main())
