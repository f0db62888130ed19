"""The demo's child processes (``anpr live``, ``anpr ingest ...``) and what it reads of them:
their logs, their ``/metrics`` pages, their consumer groups' committed offsets, and the
topics they write (DLQ, hits) read back from the offsets this run began at."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from pipeline.config import Settings
from pipeline.demo.state import Demo
from pipeline.errors import PipelineError
from pipeline.kafka import local
from pipeline.localproc import tail

POLL_S: Final = 0.5
_NO_LEADER_YET: Final = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)


def start_child(
    demo: Demo, name: str, args: Sequence[str], env: dict[str, str]
) -> subprocess.Popen[bytes]:
    demo.state_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pipeline"]
    if demo.options.config is not None:
        argv += ["--config", str(demo.options.config)]
    argv += ["--log-level", "WARNING", *args]
    log = (demo.state_dir / f"{name}.log").open("wb")
    try:
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            # Its own session: Ctrl-C in the terminal reaches the demo, which stops it cleanly.
            start_new_session=True,
        )
    finally:
        log.close()


def log_tail(demo: Demo, name: str, lines: int = 15) -> str:
    return tail(demo.state_dir / f"{name}.log", lines)


def scrape_metric(port: int, name: str) -> float | None:
    """Sum of a metric's samples on a local /metrics page; None if it does not answer yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    total: float | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                total = (total or 0.0) + sample.value
    return total


class Offsets:
    """Committed offsets of consumer groups and end offsets of topics, summed over partitions."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._consumers: dict[str, Any] = {}

    def _consumer(self, group: str) -> Any:
        if group not in self._consumers:
            self._consumers[group] = Consumer(
                {
                    **self._settings.kafka.client_config(),
                    "group.id": group,
                    "enable.auto.commit": False,
                }
            )
        return self._consumers[group]

    def partitions(self, topic: str) -> list[int]:
        meta = self._consumer("anpr-demo-probe").list_topics(topic, timeout=10)
        return sorted(meta.topics[topic].partitions)

    def ends(self, topic: str) -> dict[int, int]:
        consumer = self._consumer("anpr-demo-probe")
        out = {}
        for p in self.partitions(topic):
            deadline = time.monotonic() + 30
            while True:
                try:
                    _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                    break
                except KafkaException as e:
                    # A topic created a moment ago may have no partition leader yet.
                    if e.args[0].code() not in _NO_LEADER_YET or time.monotonic() > deadline:
                        raise
                    time.sleep(POLL_S)
            out[p] = int(high)
        return out

    def committed(self, group: str, topic: str, begin: dict[int, int]) -> int:
        """Messages after ``begin`` that the group has committed."""
        tps = [TopicPartition(topic, p) for p in begin]
        done = 0
        for tp in self._consumer(group).committed(tps, timeout=10):
            done += max(int(tp.offset) - begin[tp.partition], 0) if tp.offset >= 0 else 0
        return done

    def close(self) -> None:
        for consumer in self._consumers.values():
            consumer.close()
        self._consumers.clear()


_INGEST_LINE: Final = re.compile(
    r"consumed (?P<consumed>\d+): stored (?P<stored>\d+), rejected (?P<rejected>\d+), "
    r"expired on arrival (?P<expired>\d+), duplicates (?P<duplicates>\d+)"
)


def parse_ingest_line(line: str) -> dict[str, int]:
    """The counts of an ``anpr ingest`` closing line (empty if it is not there).

    For ``ingest passengers`` consumed and rejected count lists, stored and duplicates people.
    """
    found = _INGEST_LINE.search(line)
    return {k: int(v) for k, v in found.groupdict().items()} if found else {}


def check_alive(demo: Demo) -> None:
    children = [
        ("live", demo.live),
        ("ingest-plates", demo.ingest),
        ("ingest-passengers", demo.ingest_passengers),
        ("serve", demo.serve),
    ]
    for name, child in children:
        if child is not None and child.poll() is not None and child.returncode != 0:
            raise PipelineError(f"anpr {name} exited ({child.returncode}):\n{log_tail(demo, name)}")


def stop_child(child: subprocess.Popen[bytes] | None, what: str, timeout: float = 30.0) -> None:
    """SIGTERM (the process finishes its batch and commits), SIGKILL after ``timeout``."""
    if child is None or child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(10)
        raise PipelineError(f"{what} did not stop within {timeout:.0f} s; killed") from None


def shutdown(demo: Demo) -> None:
    """Stop what the demo started, unless asked to keep it running (then say how to stop)."""
    stop_child(demo.ingest, "anpr ingest plates")
    stop_child(demo.ingest_passengers, "anpr ingest passengers")
    if demo.options.keep_running:
        console = demo.console
        console.rule("[bold]Left running")
        if demo.live is not None and demo.live.poll() is None:
            console.print(
                f"anpr live: pid {demo.live.pid}, metrics http://127.0.0.1:{demo.live_port}"
                f"/metrics; stop it with: kill {demo.live.pid}",
                highlight=False,
            )
        if demo.serve is not None and demo.serve.poll() is None:
            console.print(
                f"anpr serve: pid {demo.serve.pid}; stop it with: kill {demo.serve.pid}",
                highlight=False,
            )
        console.print(
            f"Kafka at {demo.settings.kafka.bootstrap_servers}; stop it with: anpr kafka stop",
            highlight=False,
        )
        return
    stop_child(demo.live, "anpr live")
    stop_child(demo.serve, "anpr serve")
    if demo.started_broker:
        local.stop(demo.settings.state.dir)
        demo.console.print("stopped the demo's Kafka broker (--keep-running keeps it up)")


def read_topic(settings: Settings, topic: str, begin: dict[int, int]) -> Iterator[Any]:
    """Every message of ``topic`` from ``begin`` (partition -> offset) to the current end."""
    probe = Offsets(settings)
    try:
        ends = probe.ends(topic)
    finally:
        probe.close()
    todo = {p: end for p, end in ends.items() if end > begin.get(p, 0)}
    if not todo:
        return
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": "anpr-demo-reader",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, begin.get(p, 0)) for p in todo])
        deadline = time.monotonic() + 120
        while todo and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=1.0):
                if message.error() is not None:
                    continue
                part, offset = int(message.partition() or 0), int(message.offset() or 0)
                if part in todo and offset < todo[part]:
                    yield message
                if part in todo and offset >= todo[part] - 1:
                    del todo[part]
    finally:
        consumer.close()
