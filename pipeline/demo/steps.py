"""The demo's steps in order (:func:`demo_steps`) and :func:`run_demo`, which runs them.

Steps 1-6 live here (Kafka, watchlist, live app, ferries, traffic and ingest, maintenance);
the summary, report and queries are in :mod:`pipeline.demo.summary`. See the package
docstring for what each step does."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.codec.vendors import VENDORS
from pipeline.config import Settings
from pipeline.demo.children import (
    POLL_S,
    Offsets,
    check_alive,
    log_tail,
    parse_ingest_line,
    scrape_metric,
    shutdown,
    start_child,
    stop_child,
)
from pipeline.demo.service import start_service
from pipeline.demo.state import Demo, DemoOptions
from pipeline.demo.summary import try_it, what_landed, write_demo_report
from pipeline.errors import PipelineError
from pipeline.kafka import local
from pipeline.kafka.admin import create_topics
from pipeline.kafka.clients import make_producer
from pipeline.live.watchlist import CONFUSION_GROUPS, Entry
from pipeline.localproc import free_port
from pipeline.maintain.run import MaintainOptions, maintain
from pipeline.maintain.stats import TRIP_WINDOW, week_of
from pipeline.reference.plates import normalise_plate
from pipeline.reference.sites import SiteRegistry
from pipeline.simulate.passengers import simulate_passengers
from pipeline.simulate.produce import simulate_plates
from pipeline.simulate.traffic import TrafficModel

_WATCH_EXACT: Final = 8  # plates listed that the traffic contains
_WATCH_CONFUSED: Final = 2  # OCR-confusable variants of passing plates: "possible" hits
_WATCH_ABSENT: Final = 2  # plates that never pass
_SAMPLE_READS: Final = 5_000  # reads generated (again, purely) to pick listed plates from
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
        ("Query service: anpr serve", start_service),
        ("What landed", what_landed),
        ("Report", write_demo_report),
        ("Try it yourself", try_it),
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
        shutdown(demo)
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


def _start_live(demo: Demo) -> None:
    demo.live_port = free_port()
    # The replayed days must count as current for the watchlist (live.max_read_age_s).
    max_age = (datetime.now(UTC) - demo.start).total_seconds() + 3600
    demo.live = start_child(
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
                                    f"{log_tail(demo, 'live')}")  # fmt: skip
            entries = scrape_metric(demo.live_port, "anpr_watchlist_entries")
            if entries is not None and entries >= wanted:
                break
            if time.monotonic() > deadline:
                raise PipelineError(
                    f"anpr live did not load the watchlist in 120 s:\n{log_tail(demo, 'live')}"
                )
            time.sleep(POLL_S)
    demo.console.print(
        f"anpr live (pid {demo.live.pid}) holds {wanted} watchlist entries; "
        f"metrics at http://127.0.0.1:{demo.live_port}/metrics",
        highlight=False,
    )


# -- 4. ferries -----------------------------------------------------------------------------


def _ferries(demo: Demo) -> None:
    """Every departure's lists, before the cameras send: ingest finds them waiting."""
    settings = demo.settings
    # What this run adds to the topics it reads back is after their ends now.
    offsets = Offsets(settings)
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


def _traffic(demo: Demo) -> None:
    """Ingest and the live app consume while the cameras send; then both catch up."""
    settings = demo.settings
    topic, lists = settings.topics.plate_reads, settings.topics.passengers
    offsets = Offsets(settings)
    try:
        begin = {p: end for (t, p), end in demo.begin.items() if t == topic}
        lists_begin = {p: end for (t, p), end in demo.begin.items() if t == lists}
        lists_sent = sum(offsets.ends(lists).values()) - sum(lists_begin.values())
        idle = str(demo.options.until_idle_s)
        demo.ingest = start_child(
            demo,
            "ingest-plates",
            ["ingest", "plates", "--until-idle", idle, "--metrics-port", str(free_port())],
            {},
        )
        demo.ingest_passengers = start_child(
            demo,
            "ingest-passengers",
            ["ingest", "passengers", "--until-idle", idle,
             "--metrics-port", str(free_port())],
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
                check_alive(demo)
                if time.monotonic() - polled[0] >= POLL_S:
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
                check_alive(demo)  # a worker that exited with an error stops the demo
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
                time.sleep(POLL_S)
    finally:
        offsets.close()
    summary = demo.simulated
    demo.ingest_line = log_tail(demo, "ingest-plates", 1).strip()
    demo.ingest_counts = parse_ingest_line(demo.ingest_line)
    demo.passengers_line = log_tail(demo, "ingest-passengers", 1).strip()
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
        stop_child(demo.live, "anpr live")
        demo.live = None


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
