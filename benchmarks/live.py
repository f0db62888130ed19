"""Live-app benchmark: ``anpr live`` hit latency and sustained rate, against the hot path.

On a broker of its own, with a **100,000-entry watchlist** (0.5 % of the replayed traffic pool
is listed, the rest synthetic plates):

1. the watchlist is produced and ``anpr live`` (the real CLI, a subprocess) loads it: load
   time until ``anpr_watchlist_entries`` reaches 100,000;
2. **hit latency** at offered rates (default 2,000 and 10,000 reads/s, ``--duration`` s
   each): each read is stamped with the wall clock when sent (``benchmarks.feed``), and a
   consumer of ``anpr.watchlist-hits`` takes *produce → hit received* from every hit;
   p50/p99 per rate. Target: p99 ≤ 1 s at 2,000/s. Measured after ``--warmup`` s of traffic
   at the first rate (default 10), whose worst latency is reported on its own: when the
   entries gauge reaches 100,000 the app is still reading back its own watchlist changelog;
3. **sustained maximum rate**: the app is stopped, a backlog of ``--backlog`` reads is
   produced, the app restarts (its watchlist comes back from the changelog: recovery time)
   and drains it; the rate is first to last ``anpr_live_reads_total`` sample;
4. **the hot path** on the same topic: ``anpr ingest plates`` drains everything in it into a
   fresh lake; rate from ``anpr_messages_consumed_total`` samples the same way;
5. for information, the app's pure logic alone (``LiveProcessor.process`` on the pool in
   500-read batches, no Kafka) and the fast plate normaliser against the scalar one.

Topics are uncompressed (``benchmarks.feed``), like the hot-path benchmark, so the two are
measured on the same bytes. Results are printed and written to ``benchmarks/results/``.

    .venv/bin/python -m benchmarks.live            # full run (~6 min on 2 cores)
    .venv/bin/python -m benchmarks.live --quick    # smoke run (~2 min)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from benchmarks.common import (
    ANPR,
    REPO,
    Child,
    create_topics,
    local_broker,
    metric_sum,
    say,
    scrape,
    wait_for,
)
from benchmarks.feed import Template, make_pool, produce_backlog, produce_live
from pipeline.codec.vendors import VENDOR_RULES
from pipeline.config import Settings
from pipeline.kafka.local import free_port
from pipeline.live.process import LiveProcessor
from pipeline.live.watchlist import Entry, WatchlistIndex, normalise_fast
from pipeline.reference.plates import normalise_plate
from pipeline.reference.sites import DEFAULT_REGISTRY, load_registry

RESULTS = REPO / "benchmarks" / "results"
READS, WATCHLIST, HITS, DLQ = "bench.reads", "bench.watchlist", "bench.hits", "bench.dlq"
LISTED_EVERY = 200  # one pool read in 200 is on the watchlist: 0.5 % of reads hit


@dataclass
class Latency:
    rate: float
    offered: float
    hits: int
    p50_s: float
    p99_s: float
    max_s: float


def pool_plates(pool: list[Template]) -> list[str]:
    """Normalised plates of the pool's valid reads, in pool order (None-free)."""
    plates = []
    for template in pool:
        if template.valid:
            document = json.loads(template.replay(b""))
            plates.append(normalise_fast(str(document["plate"])))
    return plates


def watchlist_plates(pool: list[Template], size: int) -> list[str]:
    listed = sorted(set(pool_plates(pool)[::LISTED_EVERY]))
    fillers = (f"WL{i:06d}" for i in range(size))
    return (listed + [p for p in fillers if p not in listed])[:size]


def produce_watchlist(bootstrap: str, plates: list[str]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50})
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    for plate in plates:
        value = {"list": "bench", "reason": "B1", "added_by": "bench", "expires_at": expires}
        while True:
            try:
                producer.produce(WATCHLIST, json.dumps(value).encode(), plate.encode())
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(60):
        raise RuntimeError("watchlist not delivered")


class HitsReader:
    """A thread consuming the hits topic; latency = receive time - captured_at."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "bench-hits-reader",
                "auto.offset.reset": "earliest",
            }
        )
        self._consumer.subscribe([HITS])
        self.samples: list[tuple[float, float]] = []  # (captured, latency)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(1000, timeout=0.1):
                if message.error() is None:
                    received = time.time()
                    captured = datetime.fromisoformat(json.loads(message.value())["captured_at"])
                    self.samples.append((captured.timestamp(), received - captured.timestamp()))

    def between(self, start: float, end: float) -> list[float]:
        return sorted(lat for captured, lat in list(self.samples) if start <= captured <= end)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


class LiveApp:
    """``anpr live`` as a subprocess with a metrics port."""

    def __init__(self, bootstrap: str, work: Path) -> None:
        self.port = free_port()
        self.env = {
            "ANPR_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "ANPR_TOPICS_PLATE_READS": READS,
            "ANPR_TOPICS_WATCHLIST": WATCHLIST,
            "ANPR_TOPICS_WATCHLIST_HITS": HITS,
            "ANPR_TOPICS_PARTITIONS": "4",
            "ANPR_STATE_DIR": str(work / "state"),
            "ANPR_LIVE_METRICS_PORT": str(self.port),
            "ANPR_LIVE_CONSUMER_GROUP": "anpr-live-bench",
        }
        self.work = work
        self.child: Child | None = None

    def start(self) -> float:
        self.child = Child.spawn(
            [ANPR, "--log-level", "WARNING", "live"], env=self.env, log=self.work / "live.log"
        )
        return self.child.started

    def value(self, name: str) -> float:
        samples = scrape(self.port)
        return metric_sum(samples, name) if samples else -1.0

    def wait(self, name: str, target: float, timeout: float) -> None:
        def reached() -> bool:
            assert self.child is not None
            if not self.child.running():
                raise RuntimeError(f"anpr live exited:\n{self.child.output()[-2000:]}")
            return self.value(name) >= target

        wait_for(reached, timeout, f"{name} >= {target:,.0f}")

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()


def sampled_rate(
    read: Callable[[], float], target: float, timeout: float, alive: Callable[[], bool]
) -> tuple[float, float]:
    """(steady rate, seconds) from samples of a counter until it reaches ``target``:
    first sample above zero to the first at the target."""
    samples: list[tuple[float, float]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        now = time.time()
        if value > 0:
            samples.append((now, value))
        if value >= target:
            break
        if not alive():
            raise RuntimeError("the process exited before draining")
        time.sleep(0.25)
    else:
        raise TimeoutError(f"not drained within {timeout:.0f} s")
    (t0, v0), (t1, v1) = samples[0], samples[-1]
    return ((v1 - v0) / (t1 - t0) if t1 > t0 else float("nan")), t1 - t0


def per_call_us(call: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=3)) / number * 1e6


def pure_logic_rate(pool: list[Template], index: WatchlistIndex) -> float:
    settings = Settings()
    processor = LiveProcessor(
        settings, registry=load_registry(DEFAULT_REGISTRY, VENDOR_RULES), index=index
    )
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z").encode()
    values: list[bytes | None] = [t.live(b".p", stamp) for t in pool]
    started = time.perf_counter()
    for i in range(0, len(values), 500):
        chunk = values[i : i + 500]
        processor.process(chunk, [None] * len(chunk), datetime.now(UTC))
    return len(values) / (time.perf_counter() - started)


def run(args: argparse.Namespace) -> dict[str, Any]:
    registry = load_registry(DEFAULT_REGISTRY, VENDOR_RULES)
    say(f"building a pool of {args.pool:,} reads")
    pool = make_pool(registry, args.pool)
    plates = watchlist_plates(pool, args.watchlist)
    out: dict[str, Any] = {"watchlist": len(plates), "pool": len(pool)}

    # Pure parts, for information (same process, no Kafka).
    out["normalise_fast_us"] = per_call_us(lambda: normalise_fast("ab 123-45"), 2000)
    out["normalise_plate_us"] = per_call_us(lambda: normalise_plate("ab 123-45"), 200)
    index = WatchlistIndex()
    expires = datetime.now(UTC) + timedelta(days=30)
    for plate in plates:
        index.put(Entry(plate, "bench", "B1", "bench", expires))
    out["pure_logic_rate"] = pure_logic_rate(pool, index)
    say(
        f"normaliser {out['normalise_fast_us']:.2f} µs vs scalar {out['normalise_plate_us']:.0f}"
        f" µs; pure live logic {out['pure_logic_rate']:,.0f} reads/s"
    )

    with tempfile.TemporaryDirectory(prefix="anpr-bench-live-") as tmp:
        work = Path(tmp)
        with local_broker(work / "kafka") as bootstrap:
            create_topics(bootstrap, {READS: 4, WATCHLIST: 1, HITS: 4, DLQ: 4})
            say(f"producing the {len(plates):,}-entry watchlist")
            produce_watchlist(bootstrap, plates)
            app = LiveApp(bootstrap, work)
            reader = HitsReader(bootstrap)
            try:
                started = app.start()
                app.wait("anpr_watchlist_entries", len(plates), args.timeout)
                out["watchlist_load_s"] = time.time() - started
                say(f"anpr live up with {len(plates):,} entries in {out['watchlist_load_s']:.1f} s")

                sent = 0
                if args.warmup:
                    # The app is still reading back its own watchlist changelog (100,000
                    # records) when the entries gauge is full; traffic first, then measure.
                    say(f"warm-up: {args.rates[0]:,.0f} reads/s for {args.warmup:.0f} s")
                    begin = time.time()
                    sent += produce_live(
                        bootstrap, READS, pool, rate=args.rates[0], seconds=args.warmup
                    ).sent
                    app.wait("anpr_live_reads_total", sent, args.timeout)
                    warm = reader.between(begin, time.time())
                    out["warmup_max_s"] = max(warm, default=float("nan"))
                    say(f"  warm-up hits: {len(warm)}, max {out['warmup_max_s'] * 1000:.0f} ms")
                latencies = []
                for rate in args.rates:
                    say(f"offering {rate:,.0f} reads/s for {args.duration:.0f} s")
                    begin = time.time()
                    offered = produce_live(
                        bootstrap, READS, pool, rate=rate, seconds=args.duration, start=sent
                    )
                    end = time.time()
                    sent += offered.sent
                    app.wait("anpr_live_reads_total", sent, args.timeout)
                    wait_for(
                        lambda: len(reader.samples) >= app.value("anpr_watchlist_hits_total"),
                        60,
                        "every hit the app sent to arrive",
                    )
                    lat = reader.between(begin, end)
                    result = Latency(
                        rate, offered.rate, len(lat), quantile(lat, 0.5), quantile(lat, 0.99),
                        max(lat, default=float("nan")),
                    )  # fmt: skip
                    latencies.append(result)
                    say(
                        f"  {result.hits} hits: p50 {result.p50_s * 1000:.0f} ms, "
                        f"p99 {result.p99_s * 1000:.0f} ms, max {result.max_s * 1000:.0f} ms"
                    )
                out["latency"] = [vars(r) for r in latencies]
                out["app_latency_buckets"] = {
                    k: v for k, v in (scrape(app.port) or {}).items() if "hit_latency" in k
                }
                app.stop()
                if not args.backlog:
                    return out

                say(f"producing a backlog of {args.backlog:,} reads with the app stopped")
                produce_backlog(bootstrap, READS, pool, start=sent, count=args.backlog)
                total = sent + args.backlog
                started = app.start()
                app.wait("anpr_watchlist_entries", len(plates), args.timeout)
                out["restart_recovery_s"] = time.time() - started
                assert app.child is not None
                child = app.child
                rate, seconds = sampled_rate(
                    lambda: app.value("anpr_live_reads_total"),
                    args.backlog,
                    args.timeout,
                    child.running,
                )
                out["live_max_rate"] = rate
                out["live_peak_rss_mb"] = child.peak_rss_mb
                say(
                    f"restart: watchlist back in {out['restart_recovery_s']:.1f} s; drained "
                    f"{args.backlog:,} at {rate:,.0f} reads/s ({seconds:.1f} s)"
                )
            finally:
                app.stop()
                reader.close()

            port = free_port()
            env = {
                "ANPR_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "ANPR_TOPICS_PLATE_READS": READS,
                "ANPR_TOPICS_DLQ": DLQ,
                "ANPR_INGEST_CONSUMER_GROUP": "anpr-ingest-bench",
                "ANPR_LAKE_PATH": str(work / "lake"),
                "ANPR_INGEST_METRICS_PORT": str(port),
                "ANPR_STATE_DIR": str(work / "ingest-state"),
            }
            say(f"hot path: anpr ingest plates drains the same {total:,} reads")
            ingest = Child.spawn(
                # --until-idle, not --max-messages: it stays up (and scrapable) after the drain.
                [ANPR, "--log-level", "WARNING", "ingest", "plates", "--until-idle", "15"],
                env=env,
                log=work / "ingest.log",
            )
            try:
                rate, seconds = sampled_rate(
                    lambda: metric_sum(scrape(port) or {}, "anpr_messages_consumed_total"),
                    total,
                    args.timeout,
                    ingest.running,
                )
            finally:
                ingest.stop()
            out["hot_path_rate"] = rate
            out["live_to_hot_path"] = out["live_max_rate"] / rate
            say(f"  hot path {rate:,.0f} reads/s; live/hot path = {out['live_to_hot_path']:.2f}")
    return out


def report(out: dict[str, Any]) -> None:
    print()
    print(f"watchlist {out['watchlist']:,} entries; loaded in {out['watchlist_load_s']:.1f} s")
    print("| offered reads/s | achieved | hits | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    for r in out["latency"]:
        print(
            f"| {r['rate']:,.0f} | {r['offered']:,.0f} | {r['hits']} | {r['p50_s'] * 1000:.0f} "
            f"| {r['p99_s'] * 1000:.0f} | {r['max_s'] * 1000:.0f} |"
        )
    first = out["latency"][0]
    verdict = "met" if first["p99_s"] <= 1.0 else "MISSED"
    print(f"target p99 <= 1 s at {first['rate']:,.0f}/s: {verdict}")
    if "live_max_rate" not in out:
        return
    print(f"recovered from the changelog on restart in {out['restart_recovery_s']:.1f} s")
    print(
        f"sustained: anpr live {out['live_max_rate']:,.0f} reads/s, anpr ingest plates "
        f"{out['hot_path_rate']:,.0f} reads/s: live/hot path = {out['live_to_hot_path']:.2f}"
    )
    print(
        f"pure live logic {out['pure_logic_rate']:,.0f} reads/s; plate normaliser "
        f"{out['normalise_fast_us']:.2f} µs (scalar ingest one {out['normalise_plate_us']:.0f} µs)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--watchlist", type=int, default=100_000, help="watchlist entries")
    parser.add_argument("--pool", type=int, default=100_000, help="distinct reads replayed")
    parser.add_argument("--rates", type=float, nargs="+", default=[2_000, 10_000])
    parser.add_argument("--duration", type=float, default=60, help="seconds per rate")
    parser.add_argument("--backlog", type=int, default=500_000, help="reads for the max rate")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per wait")
    parser.add_argument(
        "--warmup", type=float, default=10, help="seconds of traffic before measuring latency"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 15 s per rate, 60k")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.backlog, args.pool = 15, 60_000, 40_000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = run(args)
    report(out)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"live-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps({"args": vars(args), **out}, indent=2, default=str))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
