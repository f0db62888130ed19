"""What every benchmark run needs: its own broker, topics, child processes and rates.

A benchmark never touches a broker it did not start: :func:`local_broker` starts one on free
loopback ports with its state in a temporary folder and always stops it. Rates come from
*commit records* (time of a lake commit, messages consumed so far), so every method is
measured the same way whether the records come from a child's progress file or from the
ingest worker's ``/metrics`` endpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.kafka import local

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"
ANPR = REPO / ".venv" / "bin" / "anpr"
JARS_CACHE = REPO / ".anpr" / "cache" / "kafka"


def say(message: str) -> None:
    """A progress line on stdout (these runs take minutes)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- broker and topics ------------------------------------------------------------------------


@contextlib.contextmanager
def local_broker(state_dir: Path, *, heap_mb: int = 1024) -> Iterator[str]:
    """A single-node Kafka broker of our own; yields its bootstrap address, always stops it."""
    bootstrap = f"127.0.0.1:{local.free_port()}"
    jars = local.ensure_jars(JARS_CACHE)
    say(f"starting a Kafka broker on {bootstrap} (state in {state_dir})")
    try:
        local.start(state_dir, bootstrap, jars_dir=jars, timeout=120, heap_mb=heap_mb)
        yield bootstrap
    finally:
        local.stop(state_dir)
        say("Kafka broker stopped")


def create_topics(
    bootstrap: str, topics: Mapping[str, int], *, config: Mapping[str, str] | None = None
) -> None:
    """Create topics (name -> partitions) and wait until every partition has a leader."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"max.message.bytes": str(4 * 1024 * 1024), **(config or {})}
    new = [
        NewTopic(name, num_partitions=n, replication_factor=1, config=config)
        for name, n in topics.items()
    ]
    for future in admin.create_topics(new, request_timeout=30).values():
        future.result(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        meta = admin.list_topics(timeout=10).topics
        if all(
            name in meta
            and len(meta[name].partitions) == n
            and all(p.leader >= 0 for p in meta[name].partitions.values())
            for name, n in topics.items()
        ):
            return
        time.sleep(0.1)
    raise RuntimeError(f"topics {sorted(topics)} did not get leaders within 30 s")


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Partition -> high watermark (one past the last message)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "anpr-bench-watermarks"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in sorted(partitions)
        }
    finally:
        consumer.close()


# --- child processes --------------------------------------------------------------------------


@dataclass
class Child:
    """A child process whose output goes to a log file; :meth:`running` samples its peak RSS."""

    proc: subprocess.Popen[bytes]
    started: float  # time.time() just before the spawn
    log: Path
    peak_rss_mb: float | None = None

    @classmethod
    def spawn(cls, argv: Sequence[str | Path], *, env: Mapping[str, str], log: Path) -> Child:
        """Run ``argv`` in the log's folder, with ``env`` and none of the caller's ANPR_*
        variables: neither those nor an ``anpr.toml`` in the caller's folder may leak in."""
        with log.open("wb") as out:
            started = time.time()
            proc = subprocess.Popen(
                [str(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**_inherited_env(), "PYTHONPATH": str(REPO), **env},
                cwd=log.parent,
            )
        return cls(proc, started, log)

    def running(self) -> bool:
        """Whether the child still runs; each call also samples its peak RSS."""
        if self.proc.returncode is not None:
            return False
        self._sample_peak_rss()
        pid, status = os.waitpid(self.proc.pid, os.WNOHANG)
        if pid == 0:
            return True
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        return False

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; reaps the process."""
        if not self.running():
            return
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.running():
            if time.monotonic() >= deadline:
                self.proc.kill()
                _, status = os.waitpid(self.proc.pid, 0)
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                return
            time.sleep(0.05)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def _sample_peak_rss(self) -> None:
        # VmHWM of /proc, not ru_maxrss: Linux carries the parent's high-water mark into a
        # child's ru_maxrss at exec, and this benchmark's parent holds 2M messages in memory.
        # VmHWM is itself a high-water mark, so only growth after the last sample is missed.
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_mb = int(line.split()[1]) / 1024


def _inherited_env() -> dict[str, str]:
    # ANPR_* variables of the caller's shell (a manual test's broker, say) must not leak in.
    return {k: v for k, v in os.environ.items() if not k.startswith("ANPR_")}


# --- commit records and rates -----------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    """After a lake commit at ``t`` (Unix time), ``consumed`` messages had been handled."""

    t: float
    consumed: int


class ProgressFile:
    """JSON lines written by a baseline child after every lake commit; see :class:`Commit`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out: TextIO | None = None

    def write(self, consumed: int, **counts: int) -> None:
        if self._out is None:
            self._out = self.path.open("a", buffering=1)
        self._out.write(json.dumps({"t": time.time(), "consumed": consumed, **counts}) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text().splitlines()
        # The last line may be half written while the child runs.
        records = []
        for line in lines:
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
        return records

    def commits(self) -> list[Commit]:
        return [Commit(r["t"], r["consumed"]) for r in self.read()]


@dataclass
class Result:
    """One method's run. ``steady`` excludes start-up and group join: first to last commit."""

    method: str
    label: str
    events: int  # consumed by the last commit measured
    wall_s: float  # process start (or loop start) -> last commit
    steady_events: int  # consumed between the first and the last commit
    steady_s: float
    peak_rss_mb: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    note: str = ""
    # The 1-minute load average when the result was taken: 2 cores shared with other work.
    load_avg: float = field(default_factory=lambda: os.getloadavg()[0])

    @property
    def wall_rate(self) -> float:
        return self.events / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def steady_rate(self) -> float:
        return self.steady_events / self.steady_s if self.steady_s > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "wall_rate": self.wall_rate, "steady_rate": self.steady_rate}


def result_from_commits(
    method: str, label: str, started: float, commits: Sequence[Commit], **extra: Any
) -> Result:
    """Rates from commit records: wall from ``started``, steady from the first commit on."""
    if len(commits) < 2:
        raise RuntimeError(f"{label}: fewer than two lake commits observed, no rate")
    first, last = commits[0], commits[-1]
    return Result(
        method,
        label,
        events=last.consumed,
        wall_s=last.t - started,
        steady_events=last.consumed - first.consumed,
        steady_s=last.t - first.t,
        **extra,
    )


# --- Prometheus scraping ----------------------------------------------------------------------


def scrape(port: int, timeout: float = 2.0) -> dict[str, float] | None:
    """Samples of ``http://127.0.0.1:port/metrics`` as ``name{labels}`` -> value; None if down."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
            text = r.read().decode()
    except OSError:
        return None
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def metric_sum(samples: Mapping[str, float], name: str) -> float:
    """Sum of a metric over all its label sets."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def histogram_buckets(samples: Mapping[str, float], name: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of a histogram, in bound order (+Inf last)."""
    prefix = f'{name}_bucket{{le="'
    buckets = [
        (float(key[len(prefix) : -2]), value)
        for key, value in samples.items()
        if key.startswith(prefix)
    ]
    return sorted(buckets)


def bucket_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float:
    """Quantile from cumulative bucket counts, linear within a bucket (bucket resolution).

    Like Prometheus' ``histogram_quantile``: the first bucket starts at 0, and a quantile in
    the +Inf bucket is reported as the largest finite bound.
    """
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return float("nan")
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = bound, cumulative
    return lower


def bucket_delta(
    before: Sequence[tuple[float, float]], after: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Buckets counting only what was observed between two scrapes."""
    earlier = dict(before)
    return [(bound, count - earlier.get(bound, 0.0)) for bound, count in after]


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1
) -> None:
    """Poll ``condition()`` until true; raise with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
