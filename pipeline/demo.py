"""``anpr demo``: the main job in a few minutes, on one machine, from nothing.

The demo is a list of steps (:func:`demo_steps`) run in order over one :class:`Demo` that
collects what each step found:

 1. **Kafka**: start the local broker (reuse it if running; a configured remote cluster is
    used as is), create the topics.
 2. **Watchlist**: a few plates that the simulated traffic will contain (taken from the same
    seeded generator), a few OCR-confusable variants of them, and a few that never pass; sent
    to the compacted ``anpr.watchlist`` topic.
 3. **Live app**: ``anpr live`` as a child process; the demo waits until it has loaded the
    watchlist. Its ``live.max_read_age_s`` is stretched over the simulated days so that the
    replayed traffic counts as current for the watchlist.
 4. **Ferries**: the passenger and crew lists of every departure from a ferry terminal in
    those days, JSON and PAXLST mixed (``--bad-ratio`` of them broken on purpose), built from
    the vehicles the cameras will read leaving on board (the same seeded traffic model).
 5. **Cameras and ingest**: ``anpr ingest plates --until-idle`` and ``anpr ingest passengers
    --until-idle`` as child processes, beside the live app, while the cameras of every vendor
    format send ``--days`` of traffic (road and ferry, ~1 % hostile input) as fast as the
    broker takes it. Progress: reads sent, and each consumer group's committed offsets against
    its topic's end. Then wait for both workers to drain and exit, and for the live app's
    committed offsets to reach the end; then stop the live app (unless ``--keep-running``).
 6. **Maintain**: ``maintain`` once per simulated day, ``as_of`` stepping to the end of each
    day (plus the late-arrival grace), so that traffic statistics appear day by day as the
    nightly job would publish them; then one statistics-only run fast-forwarded past the
    30-day round-trip window so the weeks' trip statistics are published too.
 7. **Summary**, **report**, **queries**: rows per table, people by role and format, rejects
    by feed and reason (read back from the DLQ topic), watchlist hits (read back from the hits
    topic), statistics highlights, retention state; the HTML report (anonymous statistics
    only); three queries to paste, the last one the ferry join an investigator runs.

**Rerunning** continues cleanly on the same state: the broker, topics, lake and consumer
groups are kept, a new seed makes new traffic (new event ids), ingest and live pick up where
their committed offsets are, and statistics of days that changed are recomputed. Counts of
the run (sent, stored, rejected, hits) are measured over this run's offsets only; rows per
table are the lake's totals. ``make clean`` (or removing the lake and ``.anpr``) starts over.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.codec.vendors import VENDORS
from pipeline.config import Settings, add_months
from pipeline.errors import PipelineError
from pipeline.files import write_atomic
from pipeline.kafka import local
from pipeline.kafka.admin import create_topics
from pipeline.kafka.clients import header_dict, make_producer
from pipeline.lake.catalog import CATALOG, Lake
from pipeline.live.watchlist import CONFUSION_GROUPS, Entry
from pipeline.maintain.inventory import table_exists
from pipeline.maintain.run import MaintainOptions, maintain
from pipeline.maintain.stats import DURATION_BUCKETS, NO_RETURN, TRIP_WINDOW, week_of
from pipeline.reference.plates import normalise_plate
from pipeline.reference.sites import SiteRegistry
from pipeline.report import ReportInputs, write_report
from pipeline.simulate.passengers import PassengerSummary, simulate_passengers
from pipeline.simulate.produce import SimulationSummary, simulate_plates
from pipeline.simulate.traffic import TrafficModel


def role_setup(role: str) -> str:
    """The line that gives the OS user a role (``[access] users``), as printed."""
    return f'export ANPR_ACCESS_USERS="$(id -un)={role}"'


ANALYST_SETUP: Final = role_setup("analyst")
DEMO_CASE: Final = "DEMO-1"


@dataclass(frozen=True)
class Example:
    """A query to paste: what it shows, the role it is run as, the command (as printed)."""

    what: str
    role: str
    command: str


@dataclass(frozen=True)
class Voyage:
    """A departure of this run whose vehicles the cameras read at the terminal."""

    carrier: str
    voyage_id: str
    site_id: str
    rows: int  # what the join returns: reads of its vehicles x people listed with each


_ANALYST_QUERIES: Final = (
    Example(
        "Reads per crossing and direction (analyst: plates appear only as pseudonyms)",
        "analyst",
        'anpr query --reason control "SELECT site_id, direction, count(*) AS reads '
        'FROM plate_reads GROUP BY ALL ORDER BY reads DESC"',
    ),
    Example(
        "The busiest hours per crossing, from the anonymous statistics kept for ever",
        "analyst",
        'anpr query --reason control "SELECT hour, site_id, sum(passages) AS passages '
        "FROM traffic_stats WHERE vehicle_class = '*' AND plate_country = '*' "
        'GROUP BY ALL ORDER BY passages DESC LIMIT 5"',
    ),
)
# Without a departure to show (no ferry traffic in a tiny run): the analyst's SQL session.
_NO_FERRY_QUERY: Final = Example(
    "A SQL session on stdin: vehicles seen both leaving and entering, by plate country",
    "analyst",
    'echo "SELECT plate_country, count(*) AS vehicles FROM (SELECT plate_pseudonym, '
    "any_value(plate_country) AS plate_country FROM plate_reads GROUP BY 1 "
    'HAVING count(DISTINCT direction) = 2) GROUP BY 1 ORDER BY 2 DESC;" '
    "| anpr sql --reason control",
)
# The README's analyst join (section "Passenger lists"), with the departure's values inlined.
_FERRY_JOIN: Final = (
    "SELECT r.event_id, r.captured_at, r.camera_id, p.role, p.vehicle_plate "
    "FROM passengers AS p JOIN plate_reads AS r ON r.plate = p.vehicle_plate "
    "AND r.captured_at BETWEEN p.departure_at - INTERVAL 3 HOUR "
    "AND p.departure_at + INTERVAL 1 HOUR "
    "WHERE p.carrier = '{carrier}' AND p.voyage_id = '{voyage_id}' AND r.site_id = '{site_id}' "
    "ORDER BY r.captured_at, p.role"
)
# Values put into printed SQL: codes of our own simulator and registry, checked all the same.
_LITERAL: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")


def example_queries(voyage: Voyage | None) -> list[Example]:
    """The three queries the demo prints (tests/integration/test_demo.py runs them)."""
    if voyage is None:
        return [*_ANALYST_QUERIES, _NO_FERRY_QUERY]
    values = {"carrier": voyage.carrier, "voyage_id": voyage.voyage_id, "site_id": voyage.site_id}
    for name, value in values.items():
        if not _LITERAL.fullmatch(value):
            raise ValueError(f"{name} {value!r} is not a plain code")
    join = Example(
        f"The ferry join: reads at {voyage.site_id} of the vehicles on departure "
        f"{voyage.voyage_id}'s passenger list (a SQL session on stdin)",
        "investigator",
        f'echo "{_FERRY_JOIN.format(**values)};" '
        f"| anpr sql --reason investigation --case {DEMO_CASE}",
    )
    return [*_ANALYST_QUERIES, join]


_WATCH_EXACT: Final = 8  # plates listed that the traffic contains
_WATCH_CONFUSED: Final = 2  # OCR-confusable variants of passing plates: "possible" hits
_WATCH_ABSENT: Final = 2  # plates that never pass
_SAMPLE_READS: Final = 5_000  # reads generated (again, purely) to pick listed plates from
_POLL_S: Final = 0.5
_NO_LEADER_YET: Final = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)
SUMMARY_JSON: Final = "summary.json"


@dataclass(frozen=True)
class DemoOptions:
    days: int = 4
    passages_per_hour: float = 1200.0
    bad_ratio: float = 0.01
    keep_running: bool = False
    seed: int | None = None  # default: from the clock, so a rerun sends new traffic
    config: Path | None = None  # passed on to the child processes
    report_dir: Path | None = None  # default <state.dir>/demo/report
    until_idle_s: float = 10.0


@dataclass
class Demo:
    """What the steps share and find out."""

    settings: Settings
    registry: SiteRegistry
    options: DemoOptions
    console: Console
    jars_dir: Callable[[], Path]
    seed: int = 0
    start: datetime = field(default_factory=lambda: datetime.now(UTC))
    end: datetime = field(default_factory=lambda: datetime.now(UTC))
    expected_reads: int = 0
    started_broker: bool = False
    watchlist: list[Entry] = field(default_factory=list)
    live: subprocess.Popen[bytes] | None = None
    ingest: subprocess.Popen[bytes] | None = None
    ingest_passengers: subprocess.Popen[bytes] | None = None
    live_port: int = 0
    # (topic, partition) -> end offset before this run: what this run added is after it.
    begin: dict[tuple[str, int], int] = field(default_factory=dict)
    simulated: SimulationSummary | None = None
    ferries: PassengerSummary | None = None
    ingest_line: str = ""
    ingest_counts: dict[str, int] = field(default_factory=dict)
    passengers_line: str = ""
    passengers_counts: dict[str, int] = field(default_factory=dict)
    rejects: Counter[tuple[str, str]] = field(default_factory=Counter)  # (feed, reason)
    hits: Counter[tuple[str, str]] = field(default_factory=Counter)
    expected_exact_hits: int = 0
    maintained: list[tuple[str, str]] = field(default_factory=list)  # (as of, outcome)
    tables: dict[str, int] = field(default_factory=dict)
    findings: Findings | None = None
    queries: list[Example] = field(default_factory=list)
    report: Path | None = None
    timings: list[tuple[str, float]] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.settings.state.dir / "demo"


Step = tuple[str, Callable[[Demo], None]]


def demo_steps() -> list[Step]:
    """The demo, in order. Each step reads and fills the :class:`Demo`."""
    return [
        ("Kafka: broker and topics", _kafka),
        ("Watchlist: plates to look out for", _watchlist),
        ("Live app: anpr live", _start_live),
        ("Ferries: passenger and crew lists of the departures", _ferries),
        ("Cameras, ingest and live app at work", _traffic),
        ("Maintain: statistics day by day (anpr maintain --as-of)", _maintain),
        ("What landed", _summary),
        ("Report", _report),
        ("Try it yourself", _queries),
    ]


def run_demo(
    settings: Settings,
    registry: SiteRegistry,
    options: DemoOptions,
    *,
    jars_dir: Callable[[], Path],
    console: Console,
) -> Demo:
    """Run every step; return what was found (raises PipelineError on a failed step)."""
    demo = Demo(settings, registry, options, console, jars_dir)
    demo.seed = options.seed if options.seed is not None else int(time.time()) % 1_000_000
    began = time.monotonic()
    try:
        for number, (title, step) in enumerate(demo_steps(), start=1):
            console.rule(f"[bold]{number}. {title}")
            started = time.monotonic()
            step(demo)
            demo.timings.append((title, time.monotonic() - started))
    finally:
        _shutdown(demo)
    console.print(f"demo finished in {time.monotonic() - began:.0f} s", highlight=False)
    return demo


# -- 1. Kafka --------------------------------------------------------------------------------


def _kafka(demo: Demo) -> None:
    settings = demo.settings
    endpoints = local.parse_bootstrap(settings.kafka.bootstrap_servers)
    if local.status(settings.kafka.bootstrap_servers):
        demo.console.print(f"reusing the broker at {settings.kafka.bootstrap_servers}")
    elif len(endpoints) == 1 and local.is_loopback(endpoints[0].host):
        pid = local.start(
            settings.state.dir, settings.kafka.bootstrap_servers, jars_dir=demo.jars_dir()
        )
        demo.started_broker = True
        demo.console.print(
            f"local broker started at {settings.kafka.bootstrap_servers} (pid {pid})"
        )
    else:
        raise PipelineError(
            f"the Kafka cluster at {settings.kafka.bootstrap_servers} does not answer"
        )
    for name, state in sorted(create_topics(settings).items()):
        demo.console.print(f"topic {name}: {state}", highlight=False)


# -- 2. watchlist ----------------------------------------------------------------------------


def pick_watchlist(
    registry: SiteRegistry,
    *,
    seed: int,
    start: datetime,
    passages_per_hour: float,
    now: datetime,
) -> list[Entry]:
    """Watchlist entries for the demo: plates the seeded traffic contains, confusable
    variants of others, and plates that never pass. Pure (the traffic model is re-run)."""
    model = TrafficModel(registry, seed=seed, passages_per_hour=passages_per_hour, formats=VENDORS)
    reads = model.reads(start)
    seen: dict[str, None] = {}
    for _ in range(_SAMPLE_READS):
        plate = normalise_plate(str(next(reads)["plate"]))
        if plate:
            seen.setdefault(plate)
    plates = list(seen)
    step = max(len(plates) // (_WATCH_EXACT + _WATCH_CONFUSED + 1), 1)
    chosen = plates[::step][: _WATCH_EXACT + _WATCH_CONFUSED]
    expires = now + timedelta(days=7)
    entries = [
        Entry(p, "stolen" if i % 2 else "wanted", f"R{i + 1:02d}", "demo", expires)
        for i, p in enumerate(chosen[:_WATCH_EXACT])
    ]
    for i, plate in enumerate(chosen[_WATCH_EXACT:]):
        variant = confusable(plate)
        if variant is not None and variant not in seen:
            entries.append(Entry(variant, "wanted", f"C{i + 1:02d}", "demo", expires))
    entries += [
        Entry(f"ZZ{seed % 1000:03d}{n:02d}", "stolen", f"A{n + 1:02d}", "demo", expires)
        for n in range(_WATCH_ABSENT)
    ]
    return entries


def confusable(plate: str) -> str | None:
    """The plate with its last OCR-confusable character swapped within its group."""
    for pos in range(len(plate) - 1, -1, -1):
        for group in CONFUSION_GROUPS:
            if plate[pos] in group:
                other = group[(group.index(plate[pos]) + 1) % len(group)]
                return plate[:pos] + other + plate[pos + 1 :]
    return None


def _watchlist(demo: Demo) -> None:
    model = TrafficModel(
        demo.registry,
        seed=demo.seed,
        passages_per_hour=demo.options.passages_per_hour,
        formats=VENDORS,
    )
    # The simulated days end at the last full hour; the model's diurnal and weekend curve
    # decides where they start (about --days before) for the number of reads they need.
    demo.end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hours = demo.options.days * 24
    demo.expected_reads = int(hours * demo.options.passages_per_hour * model.reads_per_passage())
    demo.start = model.start_for(demo.expected_reads, demo.end)
    demo.watchlist = pick_watchlist(
        demo.registry,
        seed=demo.seed,
        start=demo.start,
        passages_per_hour=demo.options.passages_per_hour,
        now=datetime.now(UTC),
    )
    producer = make_producer(demo.settings, **{"log_level": 4})
    for entry in demo.watchlist:
        value = json.dumps(entry.to_record()).encode()
        producer.produce(demo.settings.topics.watchlist, value, entry.plate.encode())
    if producer.flush(30):
        raise PipelineError("the watchlist entries were not acknowledged by Kafka")
    lists = Counter(e.list_name for e in demo.watchlist)
    demo.console.print(
        f"{len(demo.watchlist)} entries sent to {demo.settings.topics.watchlist} "
        f"({', '.join(f'{n} {name}' for name, n in sorted(lists.items()))}), expiring in 7 days",
        highlight=False,
    )


# -- 3. live app -----------------------------------------------------------------------------


def _child(
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


def _log_tail(demo: Demo, name: str, lines: int = 15) -> str:
    return local.tail(demo.state_dir / f"{name}.log", lines)


def _start_live(demo: Demo) -> None:
    demo.live_port = local.free_port()
    # The replayed days must count as current for the watchlist (live.max_read_age_s).
    max_age = (datetime.now(UTC) - demo.start).total_seconds() + 3600
    demo.live = _child(
        demo,
        "live",
        ["live", "--metrics-port", str(demo.live_port)],
        {"ANPR_LIVE_MAX_READ_AGE_S": f"{max_age:.0f}"},
    )
    wanted = len(demo.watchlist)
    deadline = time.monotonic() + 120
    with _spinner(demo.console, "live app loading the watchlist"):
        while True:
            if demo.live.poll() is not None:
                raise PipelineError(f"anpr live exited ({demo.live.returncode}):\n"
                                    f"{_log_tail(demo, 'live')}")  # fmt: skip
            entries = _metric(demo.live_port, "anpr_watchlist_entries")
            if entries is not None and entries >= wanted:
                break
            if time.monotonic() > deadline:
                raise PipelineError(
                    f"anpr live did not load the watchlist in 120 s:\n{_log_tail(demo, 'live')}"
                )
            time.sleep(_POLL_S)
    demo.console.print(
        f"anpr live (pid {demo.live.pid}) holds {wanted} watchlist entries; "
        f"metrics at http://127.0.0.1:{demo.live_port}/metrics",
        highlight=False,
    )


def _metric(port: int, name: str) -> float | None:
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


# -- 4. ferries -----------------------------------------------------------------------------


def _ferries(demo: Demo) -> None:
    """Every departure's lists, before the cameras send: ingest finds them waiting."""
    settings = demo.settings
    # What this run adds to the topics it reads back is after their ends now.
    offsets = _Offsets(settings)
    try:
        topics = settings.topics
        for t in (topics.plate_reads, topics.passengers, topics.dlq, topics.watchlist_hits):
            for p, end in offsets.ends(t).items():
                demo.begin[(t, p)] = end
    finally:
        offsets.close()
    with _bars(demo.console) as bars:
        task = bars.add_task("passenger lists sent (one per departure)", total=None)
        demo.ferries = simulate_passengers(
            make_producer(settings, **{"linger.ms": 20, "log_level": 4}),
            settings.topics.passengers,
            demo.registry,
            count=1_000_000,  # every departure of the days: the traffic decides how many
            start=demo.start,
            seed=demo.seed,
            plate_reads=demo.expected_reads,
            passages_per_hour=demo.options.passages_per_hour,
            formats=VENDORS,  # the cameras of the plate run: the same traffic
            bad_ratio=demo.options.bad_ratio,
            progress=lambda n: bars.update(task, completed=n),
        )
        bars.update(task, total=demo.ferries.departures)
    f = demo.ferries
    demo.console.print(
        f"ferry operators: {f.messages} lists sent to {settings.topics.passengers} "
        f"({f.json_messages} JSON, {f.paxlst_messages} PAXLST; {f.hostile} broken on purpose), "
        f"{f.people:,} people listed",
        highlight=False,
    )


# -- 5. cameras, ingest, live app ----------------------------------------------------------


class _Offsets:
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
                    time.sleep(_POLL_S)
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


def _traffic(demo: Demo) -> None:
    """Ingest and the live app consume while the cameras send; then both catch up."""
    settings = demo.settings
    topic, lists = settings.topics.plate_reads, settings.topics.passengers
    offsets = _Offsets(settings)
    try:
        begin = {p: end for (t, p), end in demo.begin.items() if t == topic}
        lists_begin = {p: end for (t, p), end in demo.begin.items() if t == lists}
        lists_sent = sum(offsets.ends(lists).values()) - sum(lists_begin.values())
        idle = str(demo.options.until_idle_s)
        demo.ingest = _child(
            demo,
            "ingest-plates",
            ["ingest", "plates", "--until-idle", idle, "--metrics-port", str(local.free_port())],
            {},
        )
        demo.ingest_passengers = _child(
            demo,
            "ingest-passengers",
            ["ingest", "passengers", "--until-idle", idle,
             "--metrics-port", str(local.free_port())],
            {},
        )  # fmt: skip
        with _bars(demo.console) as bars:
            sent = bars.add_task("camera reads sent", total=demo.expected_reads)
            groups = {
                group: bars.add_task(f"{what} ({group})", total=demo.expected_reads)
                for what, group in (
                    ("anpr ingest plates", settings.ingest.consumer_group),
                    ("anpr live", settings.live.consumer_group),
                )
            }
            pax_group = settings.passengers.consumer_group
            pax_task = bars.add_task(f"anpr ingest passengers ({pax_group})", total=lists_sent)
            polled = [0.0]

            def poll(total: int) -> dict[str, int]:
                polled[0] = time.monotonic()
                done = {g: offsets.committed(g, topic, begin) for g in groups}
                for group, task in groups.items():
                    bars.update(task, completed=done[group], total=total)
                done[pax_group] = offsets.committed(pax_group, lists, lists_begin)
                bars.update(pax_task, completed=done[pax_group])
                return done

            def sending(n: int) -> None:
                bars.update(sent, completed=n)
                _check_alive(demo)
                if time.monotonic() - polled[0] >= _POLL_S:
                    poll(max(n, demo.expected_reads))

            demo.simulated = simulate_plates(
                make_producer(
                    settings, **{"linger.ms": 20, "batch.size": 1_000_000, "log_level": 4}
                ),
                topic,
                demo.registry,
                count=demo.expected_reads,
                start=demo.start,
                bad_ratio=demo.options.bad_ratio,
                seed=demo.seed,
                passages_per_hour=demo.options.passages_per_hour,
                formats=VENDORS,  # every camera sends what its own software sends
                progress=sending,
            )
            produced = sum(offsets.ends(topic).values()) - sum(begin.values())
            bars.update(sent, completed=produced, total=produced)
            deadline = time.monotonic() + 600
            workers = (demo.ingest, demo.ingest_passengers)
            while True:
                done = poll(produced)
                _check_alive(demo)  # a worker that exited with an error stops the demo
                exited = all(w.poll() is not None for w in workers)
                if exited and done[settings.live.consumer_group] >= produced:
                    wanted = {settings.ingest.consumer_group: produced, pax_group: lists_sent}
                    behind = [g for g, n in wanted.items() if done[g] < n]
                    if behind:  # idle for --until-idle seconds while messages were still due
                        raise PipelineError(
                            f"consumer group {', '.join(behind)} stopped before the end of its "
                            "topic; the summary would not add up (rerun the demo)"
                        )
                    break
                if time.monotonic() > deadline:
                    raise PipelineError("ingest or the live app did not catch up in 10 minutes")
                time.sleep(_POLL_S)
    finally:
        offsets.close()
    summary = demo.simulated
    demo.ingest_line = _log_tail(demo, "ingest-plates", 1).strip()
    demo.ingest_counts = parse_ingest_line(demo.ingest_line)
    demo.passengers_line = _log_tail(demo, "ingest-passengers", 1).strip()
    demo.passengers_counts = parse_ingest_line(demo.passengers_line)
    demo.console.print(
        f"cameras: {summary.produced} reads sent ({summary.hostile} hostile on purpose), "
        f"captured {summary.first_captured_at} .. {summary.last_captured_at}",
        highlight=False,
    )
    demo.console.print(f"anpr ingest plates: {demo.ingest_line}", highlight=False)
    demo.console.print(f"anpr ingest passengers: {demo.passengers_line}", highlight=False)
    demo.console.print("anpr live: committed up to the end of the topic", highlight=False)
    if not demo.options.keep_running:
        _stop(demo.live, "anpr live")
        demo.live = None


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


def _check_alive(demo: Demo) -> None:
    children = [
        ("live", demo.live),
        ("ingest-plates", demo.ingest),
        ("ingest-passengers", demo.ingest_passengers),
    ]
    for name, child in children:
        if child is not None and child.poll() is not None and child.returncode != 0:
            raise PipelineError(
                f"anpr {name} exited ({child.returncode}):\n{_log_tail(demo, name)}"
            )


def _stop(child: subprocess.Popen[bytes] | None, what: str, timeout: float = 30.0) -> None:
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


def _shutdown(demo: Demo) -> None:
    """Stop what the demo started, unless asked to keep it running (then say how to stop)."""
    _stop(demo.ingest, "anpr ingest plates")
    _stop(demo.ingest_passengers, "anpr ingest passengers")
    if demo.options.keep_running:
        console = demo.console
        console.rule("[bold]Left running")
        if demo.live is not None and demo.live.poll() is None:
            console.print(
                f"anpr live: pid {demo.live.pid}, metrics http://127.0.0.1:{demo.live_port}"
                f"/metrics; stop it with: kill {demo.live.pid}",
                highlight=False,
            )
        console.print(
            f"Kafka at {demo.settings.kafka.bootstrap_servers}; stop it with: anpr kafka stop",
            highlight=False,
        )
        return
    _stop(demo.live, "anpr live")
    if demo.started_broker:
        local.stop(demo.settings.state.dir)
        demo.console.print("stopped the demo's Kafka broker (--keep-running keeps it up)")


@contextmanager
def _bars(console: Console) -> Iterator[Progress]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        yield progress


@contextmanager
def _spinner(console: Console, what: str) -> Iterator[None]:
    with console.status(what):
        yield


def _read_topic(settings: Settings, topic: str, begin: dict[int, int]) -> Iterator[Any]:
    """Every message of ``topic`` from ``begin`` (partition -> offset) to the current end."""
    probe = _Offsets(settings)
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


# -- 6. maintain -----------------------------------------------------------------------------


def maintenance_times(start: datetime, end: datetime, grace: timedelta) -> list[datetime]:
    """One ``as_of`` per UTC day of [start, end): just after the day closed (end + grace)."""
    first, last = start.astimezone(UTC).date(), (end - timedelta(microseconds=1)).date()
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return [_day_end(d) + grace + timedelta(minutes=1) for d in days]


def trips_publish_time(end: datetime, grace: timedelta) -> datetime:
    """When the round trips of the week holding ``end`` are published (its 30-day window)."""
    week = week_of((end - timedelta(microseconds=1)).date())
    return _day_start(week) + timedelta(days=7) + TRIP_WINDOW + grace + timedelta(minutes=1)


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _day_end(day: date) -> datetime:
    return _day_start(day) + timedelta(days=1)


def _maintain(demo: Demo) -> None:
    settings = demo.settings
    grace = timedelta(hours=settings.maintain.late_grace_h)
    sim = demo.simulated
    first, last = demo.start, demo.end
    if sim and sim.first_captured_at and sim.last_captured_at:
        first = datetime.fromisoformat(sim.first_captured_at)
        last = datetime.fromisoformat(sim.last_captured_at) + timedelta(seconds=1)
    runs = [(t, MaintainOptions(as_of=t)) for t in maintenance_times(first, last, grace)]
    # Round trips are published once their 30-day window closed: fast-forward the clock for
    # the statistics step only (retention never runs on a future date here).
    ahead = trips_publish_time(last, grace)
    runs.append((ahead, MaintainOptions(as_of=ahead, only=frozenset({"stats"}))))
    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115 - closed below
    # maintain logs each step at INFO; the table below says the same in one line per run.
    maintain_log = logging.getLogger("pipeline.maintain")
    level = maintain_log.level
    maintain_log.setLevel(logging.WARNING)
    try:
        with _bars(demo.console) as bars:
            task = bars.add_task("anpr maintain --as-of ...", total=len(runs))
            for as_of, options in runs:
                report = maintain(settings, options, console=quiet)
                demo.maintained.append((f"{as_of:%Y-%m-%d %H:%M}", describe_steps(report.steps)))
                bars.advance(task)
    finally:
        maintain_log.setLevel(level)
        quiet.file.close()
    table = Table("as of (UTC)", "what each step did", title="anpr maintain, stepping the clock")
    for when, steps in demo.maintained:
        table.add_row(when, steps)
    demo.console.print(table)


def describe_steps(steps: dict[str, dict[str, Any]]) -> str:
    """One line for a maintenance run's report: counts only."""
    parts = []
    for name, result in steps.items():
        if not result.get("ok", True):
            parts.append(f"{name} FAILED")
        elif name == "stats":
            parts.append(
                f"statistics: {result.get('traffic_days', 0)} day(s), "
                f"{result.get('trip_weeks', 0)} trip week(s)"
            )
        elif name == "compact" and result.get("days"):
            parts.append(
                f"compacted {result['days']} day(s), "
                f"{result.get('files_before', 0)}->{result.get('files_after', 0)} files"
            )
        elif name == "retention":
            deleted = sum(
                sum(table.get("deleted_per_day", {}).values())
                for table in result.values()
                if isinstance(table, dict)
            )
            parts.append(f"retention: {deleted} rows deleted")
        elif name == "verify":
            parts.append("verified")
    return "; ".join(parts)


# -- 7. summary ------------------------------------------------------------------------------


@dataclass
class Findings:
    """Statistics for the summary and the report (no plate, no event id)."""

    tables: dict[str, int] = field(default_factory=dict)
    passages_per_hour: list[tuple[datetime, str, int]] = field(default_factory=list)
    trip_durations: list[tuple[str, int]] = field(default_factory=list)
    busiest: list[tuple[str, int]] = field(default_factory=list)  # site, passages
    peak: tuple[datetime, str, int] | None = None
    stats_days: int = 0
    suppressed_share: float = 0.0
    oldest: dict[str, datetime | None] = field(default_factory=dict)
    listed_reads: int = 0
    no_return: int = 0  # exits without an entry within 30 days (foreign vehicles, mostly)
    people: list[tuple[str, str, int]] = field(default_factory=list)  # role, format, rows
    voyage: Voyage | None = None  # for the printed ferry join (not in the report)


def _findings(demo: Demo) -> Findings:
    found = Findings()
    exact = sorted({e.plate for e in demo.watchlist})
    with Lake.open(demo.settings.lake.path, read_only=True) as lake:
        con = lake.con
        for table in ("plate_reads", "passengers", "traffic_stats", "trip_stats"):
            if table_exists(con, CATALOG, table):
                row = con.execute(f"SELECT count(*) FROM {CATALOG}.{table}").fetchone()
                found.tables[table] = int(row[0]) if row else 0
        for table, column in (("plate_reads", "captured_at"), ("passengers", "collected_at")):
            if table in found.tables:
                row = con.execute(f"SELECT min({column}) FROM {CATALOG}.{table}").fetchone()
                found.oldest[table] = row[0] if row else None
        placeholders = ", ".join("?" for _ in exact)
        row = con.execute(
            f"SELECT count(*) FROM {CATALOG}.plate_reads WHERE plate IN ({placeholders})", exact
        ).fetchone()
        found.listed_reads = int(row[0]) if row else 0
        if "traffic_stats" in found.tables:
            found.passages_per_hour = [
                (hour, site, int(n))
                for hour, site, n in con.execute(
                    f"SELECT hour, site_id, sum(passages) FROM {CATALOG}.traffic_stats "
                    "WHERE vehicle_class = '*' AND plate_country = '*' AND passages IS NOT NULL "
                    "GROUP BY ALL ORDER BY 1, 2"
                ).fetchall()
            ]
            by_site: Counter[str] = Counter()
            for _, site, n in found.passages_per_hour:
                by_site[site] += n
            found.busiest = by_site.most_common()
            found.peak = max(found.passages_per_hour, key=lambda r: r[2], default=None)
            row = con.execute(
                f"SELECT count(DISTINCT day), avg(suppressed::INT) FROM {CATALOG}.traffic_stats"
            ).fetchone()
            if row:
                found.stats_days, found.suppressed_share = int(row[0]), float(row[1] or 0.0)
        if "trip_stats" in found.tables:
            got = dict(
                con.execute(
                    f"SELECT duration, sum(trips) FROM {CATALOG}.trip_stats "
                    "WHERE entry_site = '*' AND duration <> '*' AND NOT suppressed GROUP BY 1"
                ).fetchall()
            )
            found.trip_durations = [(b, int(got.get(b) or 0)) for b in DURATION_BUCKETS]
            found.no_return = int(got.get(NO_RETURN) or 0)
        if "passengers" in found.tables:
            found.people = [
                (str(role), str(fmt), int(n))
                for role, fmt, n in con.execute(
                    f"SELECT role, source_format, count(*) FROM {CATALOG}.passengers "
                    "GROUP BY ALL ORDER BY 1, 2"
                ).fetchall()
            ]
            found.voyage = _busiest_voyage(con, demo.start, demo.end)
    return found


def _busiest_voyage(con: Any, start: datetime, end: datetime) -> Voyage | None:
    """This run's departure whose vehicles the terminal's cameras read most often: the
    README's ferry join, over every departure of the run's days at once."""
    row = con.execute(
        f"SELECT p.carrier, p.voyage_id, r.site_id, count(*) AS n "
        f"FROM {CATALOG}.passengers AS p JOIN {CATALOG}.plate_reads AS r "
        "ON r.plate = p.vehicle_plate "
        "AND r.captured_at BETWEEN p.departure_at - INTERVAL 3 HOUR "
        "AND p.departure_at + INTERVAL 1 HOUR "
        "WHERE p.departure_at BETWEEN ? AND ? "
        "GROUP BY ALL ORDER BY n DESC, p.voyage_id, r.site_id LIMIT 1",
        [start, end + timedelta(hours=2)],
    ).fetchone()
    return Voyage(str(row[0]), str(row[1]), str(row[2]), int(row[3])) if row else None


def _summary(demo: Demo) -> None:
    settings, console = demo.settings, demo.console
    feeds = {settings.topics.plate_reads: "plate reads", settings.topics.passengers: "lists"}
    begin = {p: o for (t, p), o in demo.begin.items() if t == settings.topics.dlq}
    for message in _read_topic(settings, settings.topics.dlq, begin):
        headers = header_dict(message.headers())
        reason = headers.get("anpr-reason", b"?").decode()
        source = headers.get("anpr-source-topic", b"?").decode()
        demo.rejects[(feeds.get(source, source), reason)] += 1
    begin = {p: o for (t, p), o in demo.begin.items() if t == settings.topics.watchlist_hits}
    for message in _read_topic(settings, settings.topics.watchlist_hits, begin):
        hit = json.loads(message.value())
        demo.hits[(str(hit["list"]), str(hit["match"]))] += 1
    found = _findings(demo)
    demo.findings = found
    demo.tables = found.tables
    demo.queries = example_queries(found.voyage)

    sim, counts = demo.simulated, demo.ingest_counts
    run = Table("this run", "messages", title="Cameras to lake: every message accounted for")
    produced = sim.produced if sim else 0
    run.add_row("sent by the cameras", f"{produced:,}")
    run.add_row("  of which hostile on purpose", f"{sim.hostile if sim else 0:,}")
    for key, label in (
        ("consumed", "consumed by anpr ingest plates"),
        ("stored", "stored in plate_reads"),
        ("rejected", "rejected to the DLQ with a reason"),
        ("duplicates", "camera retransmissions dropped"),
        ("expired", "expired on arrival"),
    ):
        run.add_row(label, f"{counts.get(key, 0):,}")
    run.add_row("DLQ records read back", f"{_dlq_count(demo, 'plate reads'):,}")
    console.print(run)
    console.print(_ferry_table(demo))
    for line in passenger_reconciliation(demo.ferries, demo.passengers_counts):
        console.print(line, highlight=False)
    if demo.rejects:
        reasons = Table(
            "feed", "reason", "messages", title="Rejects by reason (from the DLQ headers)"
        )
        for (feed, reason), n in sorted(demo.rejects.items()):
            reasons.add_row(feed, reason, f"{n:,}")
        console.print(reasons)
    if found.people:
        people = Table("role", "format", "rows", title="People in the passengers table")
        for role, fmt, n in found.people:
            people.add_row(role, fmt, f"{n:,}")
        console.print(people)

    hits = Table("list", "match", "hits", title="Watchlist hits (anpr.watchlist-hits)")
    for (list_name, match), n in sorted(demo.hits.items()):
        hits.add_row(list_name, match, f"{n:,}")
    console.print(hits)
    console.print(
        f"reads of exactly listed plates in the lake: {found.listed_reads:,}; exact hits sent "
        f"this run: {sum(n for (_, m), n in demo.hits.items() if m == 'exact'):,}",
        highlight=False,
    )

    tables = Table("table", "rows", title=f"Lake tables ({settings.lake.path})")
    for name, n in found.tables.items():
        tables.add_row(name, f"{n:,}")
    console.print(tables)

    stats = Table("statistic", "value", title="Statistics highlights (anonymous, k-suppressed)")
    stats.add_row("days with traffic statistics", str(found.stats_days))
    for site, n in found.busiest[:4]:
        stats.add_row(f"passages at {site}", f"{n:,}")
    if found.peak:
        hour, site, n = found.peak
        stats.add_row("busiest hour", f"{site} {hour:%a %d %b %H:00} UTC: {n:,} passages")
    stats.add_row("cells suppressed (count below k)", f"{found.suppressed_share:.1%}")
    returned = sum(n for _, n in found.trip_durations)
    short = sum(n for b, n in found.trip_durations if b in ("lt3h", "3-6h"))
    if returned:
        stats.add_row("round trips back within 6 h", f"{short / returned:.0%} of {returned:,}")
        stats.add_row("exits without a return within 30 days", f"{found.no_return:,}")
    console.print(stats)

    console.print(_retention_table(demo, found))


def _dlq_count(demo: Demo, feed: str) -> int:
    return sum(n for (f, _), n in demo.rejects.items() if f == feed)


def _ferry_table(demo: Demo) -> Table:
    f, counts = demo.ferries or PassengerSummary(), demo.passengers_counts
    table = Table("this run", "count", title="Ferry operators to lake: every list and person")
    table.add_row("lists sent (one per departure)", f"{f.messages:,}")
    table.add_row("  JSON / PAXLST", f"{f.json_messages:,} / {f.paxlst_messages:,}")
    table.add_row("  of which broken on purpose", f"{f.hostile:,}")
    table.add_row("lists consumed by anpr ingest passengers", f"{counts.get('consumed', 0):,}")
    table.add_row("lists rejected to the DLQ with a reason", f"{counts.get('rejected', 0):,}")
    table.add_row("DLQ records read back", f"{_dlq_count(demo, 'lists'):,}")
    table.add_row("people listed", f"{f.people:,}")
    table.add_row("people stored in passengers", f"{counts.get('stored', 0):,}")
    table.add_row("people on the rejected lists", f"{f.hostile_people:,}")
    table.add_row("people dropped as repeats", f"{counts.get('duplicates', 0):,}")
    return table


def passenger_reconciliation(sim: PassengerSummary | None, counts: dict[str, int]) -> list[str]:
    """Lines that check the passenger counts: lists sent = consumed = accepted + rejected,
    and people listed = stored + on rejected lists + repeats dropped."""
    if sim is None or not counts:
        return ["passenger lists: no counts from anpr ingest passengers"]
    consumed, rejected = counts["consumed"], counts["rejected"]
    accepted = consumed - rejected - counts["expired"]
    people = counts["stored"] + sim.hostile_people + counts["duplicates"]

    def mark(ok: bool) -> str:
        return "ok" if ok else "MISMATCH"

    return [
        f"lists: sent {sim.messages:,} = consumed {consumed:,} = accepted {accepted:,} + "
        f"rejected {rejected:,} (broken on purpose {sim.hostile:,}): "
        f"{mark(sim.messages == consumed and rejected == sim.hostile)}",
        f"people: listed {sim.people:,} = stored {counts['stored']:,} + on rejected lists "
        f"{sim.hostile_people:,} + repeats {counts['duplicates']:,}: "
        f"{mark(sim.people == people)}",
    ]


def _retention_table(demo: Demo, found: Findings) -> Table:
    now = datetime.now(UTC)
    table = Table(
        "table", "oldest row", "age", "limit", "deleted from", title="Retention (anpr maintain)"
    )
    for name, oldest in found.oldest.items():
        months = demo.settings.retention.months_for(name)
        if oldest is None:
            table.add_row(name, "-", "-", f"{months} months", "-")
            continue
        age = now - oldest
        table.add_row(
            name,
            f"{oldest:%Y-%m-%d %H:%M} UTC",
            f"{age.days} d {age.seconds // 3600} h",
            f"{months} months",
            f"{add_months(oldest.date(), months):%Y-%m-%d} (day by day)",
        )
    return table


# -- 8. report and queries -------------------------------------------------------------------


def _report(demo: Demo) -> None:
    found = demo.findings
    assert found is not None  # set by _summary
    sim, counts = demo.simulated, demo.ingest_counts
    summary: list[tuple[str, str, str]] = [
        ("This run", "days simulated", str(demo.options.days)),
        ("This run", "camera reads sent", f"{sim.produced if sim else 0:,}"),
        ("This run", "stored", f"{counts.get('stored', 0):,}"),
        ("This run", "rejected (DLQ)", f"{counts.get('rejected', 0):,}"),
        ("This run", "passenger lists sent", f"{demo.ferries.messages if demo.ferries else 0:,}"),
        ("This run", "passenger lists rejected (DLQ)", f"{_dlq_count(demo, 'lists'):,}"),
        ("This run", "retransmissions dropped", f"{counts.get('duplicates', 0):,}"),
        ("This run", "watchlist hits", f"{sum(demo.hits.values()):,}"),
    ]
    summary += [("Lake tables (rows)", name, f"{n:,}") for name, n in found.tables.items()]
    summary += [("Passages per crossing", site, f"{n:,}") for site, n in found.busiest]
    summary += [
        ("Retention", f"{name}: oldest row", f"{oldest:%Y-%m-%d %H:%M} UTC" if oldest else "-")
        for name, oldest in found.oldest.items()
    ]
    summary += [
        ("Retention", f"{name}: limit", f"{demo.settings.retention.months_for(name)} months")
        for name in found.oldest
    ]
    out = demo.options.report_dir or demo.state_dir / "report"
    demo.report = write_report(
        ReportInputs(
            title="ANPR border-passage pipeline: demo report",
            generated_at=datetime.now(UTC),
            passages_per_hour=found.passages_per_hour,
            trip_durations=found.trip_durations,
            rejects=[
                (reason if feed == "plate reads" else f"{reason} ({feed})", n)
                for (feed, reason), n in demo.rejects.most_common()
            ],
            summary=summary,
            queries=_report_queries(demo.queries),
            notes=[
                "Passages per hour come from traffic_stats (published by anpr maintain for "
                "each closed day; cells below k are suppressed). Round trips come from "
                "trip_stats, published once a week's 30-day return window has closed: the "
                "demo fast-forwards the statistics step's clock to publish them. Exits "
                f"without a return within 30 days ({found.no_return:,}) are not in the chart.",
                "Rejects are read back from the dead-letter topic's reason headers; "
                "'(lists)' marks passenger lists. Passenger data stays out of this report.",
            ],
        ),
        out,
    )
    write_atomic(out / SUMMARY_JSON, json.dumps(summary_record(demo), indent=2).encode())
    demo.console.print(f"report: {demo.report}", highlight=False, soft_wrap=True)


def summary_record(demo: Demo) -> dict[str, Any]:
    """The run's numbers for scripts and tests (``summary.json`` beside the report)."""
    found = demo.findings
    sim = demo.simulated
    return {
        "seed": demo.seed,
        "days": demo.options.days,
        "sent": sim.produced if sim else 0,
        "hostile": sim.hostile if sim else 0,
        "ingest": demo.ingest_counts,
        "dlq_by_reason": _by_feed(demo.rejects, "plate reads"),
        "passengers": {
            "sent": demo.ferries.messages if demo.ferries else 0,
            "hostile": demo.ferries.hostile if demo.ferries else 0,
            "people": demo.ferries.people if demo.ferries else 0,
            "hostile_people": demo.ferries.hostile_people if demo.ferries else 0,
            "ingest": demo.passengers_counts,
            "dlq_by_reason": _by_feed(demo.rejects, "lists"),
        },
        "queries": [q.__dict__ for q in demo.queries],
        "hits": [{"list": ls, "match": m, "hits": n} for (ls, m), n in sorted(demo.hits.items())],
        "listed_reads_in_lake": found.listed_reads if found else 0,
        "tables": demo.tables,
        "maintain": [{"as_of": a, "did": d} for a, d in demo.maintained],
        "report": str(demo.report),
    }


def _by_feed(rejects: Counter[tuple[str, str]], feed: str) -> dict[str, int]:
    return {reason: n for (f, reason), n in sorted(rejects.items()) if f == feed}


_ROLE_INTRO: Final = {
    "analyst": "Every read of the lake is logged with who, why and what. Give yourself a role "
    "first (an analyst sees plates only as keyed pseudonyms, 90 days back):",
    "investigator": "Passenger lists are for investigators only (role investigator, or the "
    "dpo): they see names and clear plates, and must always name a case (--case). Switch "
    "role:",
}


def _report_queries(queries: Sequence[Example]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    role = ""
    for q in queries:
        if q.role != role:
            role = q.role
            out.append((f"Give yourself the role {role}", role_setup(role)))
        out.append((q.what, q.command))
    return out


def _queries(demo: Demo) -> None:
    console = demo.console
    console.print("  . .venv/bin/activate    # puts anpr on PATH (make setup made .venv)")
    role = ""
    for q in demo.queries:
        if q.role != role:
            role = q.role
            console.print(_ROLE_INTRO.get(role, f"As {role}:"), highlight=False)
            console.print(f"  {role_setup(role)}", highlight=False, soft_wrap=True)
        console.print(f"[bold]{q.what}[/bold]")
        console.print(f"  {q.command}", highlight=False, soft_wrap=True)
    voyage = demo.findings.voyage if demo.findings else None
    if voyage is not None:
        console.print(
            f"(it lists {voyage.rows} rows: each read of a vehicle on board, once per person "
            "listed with that vehicle; any departure of this run works, see SELECT DISTINCT "
            "carrier, voyage_id FROM passengers)",
            highlight=False,
        )
    console.print("Then check the activity log: anpr audit verify", highlight=False)
