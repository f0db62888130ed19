"""`anpr live` on the real broker: the real CLI as a subprocess, our zstd producer, no mocks.

Each test starts the app with its own topics and consumer group, waits on conditions it can
observe (its /metrics endpoint, the hits topic) with deadlines, and stops it with SIGTERM,
expecting a clean exit. Reads of a test share one site, so they share one partition and are
processed in order: when the hit of a final "sentinel" read arrives, every read before it
has been processed, which is how a test proves that a read gave *no* hit without sleeping.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from pipeline.config import load_settings
from pipeline.kafka.clients import make_producer
from pipeline.kafka.local import free_port

SITE, CAMERA = "NO-SVINESUND", "SVI-L1-F"  # per-site silence thresholds: 300 s / 1800 s
QUIET_SITE, QUIET_CAMERA = "NO-ORJE", "ORJ-L2-F"  # live.silence_*_s defaults apply
DEADLINE_S = 60.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def scrape(port: int) -> dict[str, float] | None:
    """``name{labels}`` -> value from the app's /metrics; None while it is not up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read(event_id: str, plate: str, *, site: str = SITE, camera: str = CAMERA,
         captured: datetime | None = None) -> dict[str, object]:  # fmt: skip
    return {
        "schema": "plate_read/1",
        "event_id": event_id,
        "site_id": site,
        "camera_id": camera,
        "lane": 1 if camera == CAMERA else 2,
        "direction": "entry" if camera == CAMERA else "exit",
        "captured_at": iso(captured or datetime.now(UTC)),
        "plate": plate,
        "plate_country": "NO",
        "confidence": 0.95,
        "vehicle_class": "car",
    }


class LiveRun:
    """One ``anpr live`` subprocess with its metrics port and log file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = int(env["ANPR_LIVE_METRICS_PORT"])
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline", "live"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        samples = scrape(self.port)
        if samples is None:
            return None
        if labels is None:
            return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))
        text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        return samples.get(f"{name}{{{text}}}")

    def wait_metric(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        wait_until(lambda: self._alive() and self.metric(name, labels) == value, f"{name}={value}")

    def _alive(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"anpr live exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        return True

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"anpr live ignored SIGTERM:\n{self.log.read_text()[-3000:]}")


class Harness:
    """Topics, settings, a producer and a hits reader for one test."""

    def __init__(self, bootstrap: str, make_topic: Callable[..., str], tmp: Path) -> None:
        self.bootstrap = bootstrap
        self.tmp = tmp
        self.reads = make_topic(partitions=4)
        self.watchlist = make_topic(partitions=1, config={"cleanup.policy": "compact"})
        self.hits = make_topic(partitions=4)
        self.group = f"anpr-live-test-{uuid.uuid4().hex[:8]}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ANPR_")},
            "ANPR_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "ANPR_TOPICS_PLATE_READS": self.reads,
            "ANPR_TOPICS_WATCHLIST": self.watchlist,
            "ANPR_TOPICS_WATCHLIST_HITS": self.hits,
            "ANPR_TOPICS_PARTITIONS": "4",
            "ANPR_STATE_DIR": str(tmp / "state"),
            "ANPR_LIVE_CONSUMER_GROUP": self.group,
            "ANPR_LIVE_METRICS_PORT": str(free_port()),
            "ANPR_LIVE_SILENCE_DAY_S": "3",
            "ANPR_LIVE_SILENCE_NIGHT_S": "3",
            "ANPR_LIVE_CHECK_INTERVAL_S": "0.2",
            "ANPR_LIVE_BATCH_WITHIN_S": "0.05",
        }
        settings = load_settings(None, env=self.env)
        self.producer = make_producer(settings)  # zstd, like every producer of ours
        self.hits_consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"hits-reader-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self.hits_consumer.subscribe([self.hits])
        self.received: list[dict[str, Any]] = []

    def start(self) -> LiveRun:
        return LiveRun(self.env, self.tmp / "live.log")

    def list_plate(self, plate: str, list_name: str, expires_at: datetime | None) -> None:
        value: dict[str, object] = {"list": list_name, "reason": "R12", "added_by": "tester-1"}
        if expires_at is not None:
            value["expires_at"] = iso(expires_at)
        self._send(self.watchlist, plate.encode(), json.dumps(value).encode())

    def unlist(self, plate: str) -> None:
        self._send(self.watchlist, plate.encode(), None)

    def send_read(self, message: dict[str, object]) -> None:
        self._send(self.reads, str(message["site_id"]).encode(), json.dumps(message).encode())

    def _send(self, topic: str, key: bytes, value: bytes | None) -> None:
        self.producer.produce(topic, value, key)
        assert self.producer.flush(30) == 0

    def hit_for(self, event_id: str, live: LiveRun) -> dict[str, Any]:
        """Wait until the hit of ``event_id`` is on the hits topic; return it."""
        found: list[dict[str, Any]] = []

        def arrived() -> bool:
            live._alive()
            for message in self.hits_consumer.consume(100, timeout=0.2):
                if message.error() is None:
                    hit = json.loads(message.value())
                    assert message.key().decode() == hit["hit_id"]
                    self.received.append(hit)
            found[:] = [h for h in self.received if h["event_id"] == event_id]
            return bool(found)

        wait_until(arrived, f"the hit of {event_id}")
        return found[0]

    def hits_of(self, event_id: str) -> list[dict[str, Any]]:
        return [h for h in self.received if h["event_id"] == event_id]

    def close(self) -> None:
        self.hits_consumer.close()


@pytest.fixture
def harness(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path
) -> Iterator[Harness]:
    h = Harness(kafka_bootstrap, make_topic, tmp_path)
    yield h
    h.close()


def test_exact_and_possible_hits_removal_and_expiry(harness: Harness) -> None:
    now = datetime.now(UTC)
    soon = now + timedelta(seconds=6)
    harness.list_plate("AB 12345", "stolen", now + timedelta(days=1))  # key normalised
    harness.list_plate("SN10000", "sentinel", now + timedelta(days=1))
    harness.list_plate("CD56789", "wanted", soon)
    harness.list_plate("EF11111", "wanted", None)  # refused: every entry must expire
    harness.list_plate("EF22222", "wanted", now + timedelta(days=400))  # refused: too far
    live = harness.start()
    try:
        live.wait_metric("anpr_watchlist_entries", 3)
        live.wait_metric("anpr_watchlist_rejected_total", 1, {"reason": "no_expiry"})
        live.wait_metric("anpr_watchlist_rejected_total", 1, {"reason": "expiry_too_far"})

        exact = read("e-exact", "AB 12345")
        harness.send_read(exact)
        harness.send_read(exact)  # the same read twice (a camera retransmitting)
        harness.send_read(read("e-possible", "A8I2345"))  # B→8, 1→I: OCR confusions only
        harness.send_read(read("e-other", "XY99999"))
        # Captured after the entry's expiry (cameras may be a little ahead): never a hit.
        harness.send_read(read("e-after-expiry", "CD56789", captured=soon + timedelta(seconds=1)))
        harness.send_read(read("e-sentinel-1", "SN10000"))
        harness.hit_for("e-sentinel-1", live)

        [hit] = harness.hits_of("e-exact")
        assert hit["match"] == "exact"
        assert hit["list"] == "stolen"
        assert hit["reason"] == "R12"
        assert (hit["site_id"], hit["camera_id"], hit["direction"]) == (SITE, CAMERA, "entry")
        assert datetime.fromisoformat(hit["captured_at"]) == datetime.fromisoformat(
            str(exact["captured_at"]).replace("Z", "+00:00")
        )
        assert "plate" not in hit
        [possible] = harness.hits_of("e-possible")
        assert (possible["match"], possible["list"]) == ("possible", "stolen")
        assert harness.hits_of("e-other") == []
        assert harness.hits_of("e-after-expiry") == []
        assert live.metric("anpr_watchlist_hits_total", {"list": "stolen", "match": "exact"}) == 1
        assert live.metric("anpr_watchlist_duplicate_hits_total") == 1
        # Live traffic counts vehicles: 6 reads, the repeated one is the same passage.
        passages = live.metric("anpr_live_passages_total", {"site": SITE, "direction": "entry"})
        assert passages == 5

        # Removal by tombstone, and expiry by the clock: both leave the table.
        harness.unlist("AB12345")
        live.wait_metric("anpr_watchlist_expired_total", 1)
        live.wait_metric("anpr_watchlist_entries", 1)
        harness.send_read(read("e-removed", "AB12345"))
        harness.send_read(read("e-removed-possible", "A812345"))
        harness.send_read(read("e-expired", "CD56789"))
        harness.send_read(read("e-sentinel-2", "SN10000"))
        harness.hit_for("e-sentinel-2", live)
        assert harness.hits_of("e-removed") == []
        assert harness.hits_of("e-removed-possible") == []
        assert harness.hits_of("e-expired") == []
    finally:
        code = live.stop()
    assert code == 0
    assert "AB12345" not in harness.tmp.joinpath("live.log").read_text()


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in tps]
    finally:
        consumer.close()


def test_restart_keeps_the_watchlist_and_a_redelivered_read_gives_no_second_hit(
    harness: Harness,
) -> None:
    harness.list_plate("RS12345", "stolen", datetime.now(UTC) + timedelta(days=1))
    first = read("e-first", "RS12345")
    live = harness.start()
    try:
        live.wait_metric("anpr_watchlist_entries", 1)
        harness.send_read(first)
        harness.hit_for("e-first", live)
    finally:
        code = live.stop()
    assert code == 0
    # The app had read the watchlist topic to its end: after the restart, the entry can
    # only come back from the table's changelog.
    assert committed(harness.bootstrap, harness.group, harness.watchlist, 1) == [1]

    live = harness.start()
    try:
        live.wait_metric("anpr_watchlist_entries", 1)
        # The same read delivered again after the restart: the hit ids already sent came
        # back from their changelog too, so it gives no second hit.
        harness.send_read(first)
        harness.send_read(read("e-second", "RS12345"))
        harness.hit_for("e-second", live)
        assert live.metric("anpr_watchlist_duplicate_hits_total") == 1
        assert live.metric("anpr_live_reads_total") == 2
        assert len(harness.hits_of("e-first")) == 1
    finally:
        code = live.stop()
    assert code == 0


def test_a_camera_that_stops_reading_is_reported_silent(harness: Harness) -> None:
    harness.list_plate("SN10000", "sentinel", datetime.now(UTC) + timedelta(days=1))
    live = harness.start()
    try:
        live.wait_metric("anpr_watchlist_entries", 1)
        captured = datetime.now(UTC)
        harness.send_read(read("e-quiet", "QT12345", site=QUIET_SITE, camera=QUIET_CAMERA,
                               captured=captured))  # fmt: skip
        harness.send_read(read("e-busy", "SN10000"))
        harness.hit_for("e-busy", live)
        quiet = {"camera": QUIET_CAMERA, "site": QUIET_SITE}
        busy = {"camera": CAMERA, "site": SITE}
        last = int(captured.timestamp() * 1000) / 1000  # the read carries milliseconds
        wait_until(
            lambda: (
                live.metric("anpr_camera_last_read_timestamp_seconds", quiet)
                == pytest.approx(last, abs=1e-6)
            ),
            "the quiet camera's last read",
        )
        assert live.metric("anpr_camera_silence_threshold_seconds", quiet) == 3.0  # [live]
        # The busy camera's read may have been noted after the check that showed the quiet
        # one's (checks are periodic): wait for the next.
        wait_until(
            lambda: live.metric("anpr_camera_silence_threshold_seconds", busy) in (300.0, 1800.0),
            "the busy camera's threshold",
        )
        # No more reads from it: silent once its 3 s threshold has passed, while the
        # Svinesund camera, with its site's 300 s threshold, is not.
        live.wait_metric("anpr_camera_silent", 1, quiet)
        assert live.metric("anpr_camera_silent", busy) == 0
    finally:
        code = live.stop()
    assert code == 0
