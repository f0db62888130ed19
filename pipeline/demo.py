"""``anpr demo``: the main job in a few minutes, on one machine, from nothing.

It starts the local Kafka broker (unless a remote cluster is configured), creates the topics,
simulates a few days of border traffic with about 1 % hostile input, drains it into the lake
with the real ingest worker, and prints what landed and how to query it. Running it again adds
another batch of traffic; nothing is duplicated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.config import Settings
from pipeline.ingest.loop import IngestTotals, PlateIngestor, RunLimits
from pipeline.ingest.sites import VENDORS, SiteRegistry
from pipeline.kafka import local
from pipeline.kafka.admin import create_topics
from pipeline.kafka.clients import make_producer
from pipeline.lake.catalog import Lake
from pipeline.metrics import IngestMetrics
from pipeline.simulate.produce import simulate_plates

EXAMPLE_QUERIES = (
    (
        "Reads per crossing and direction",
        "SELECT site_id, direction, count(*) AS reads FROM plate_reads "
        "GROUP BY ALL ORDER BY 3 DESC",
    ),
    (
        "Busiest hours at Svinesund (UTC)",
        "SELECT date_trunc('hour', captured_at) AS hour, count(*) AS reads FROM plate_reads "
        "WHERE site_id = 'NO-SVINESUND' GROUP BY 1 ORDER BY 2 DESC LIMIT 5",
    ),
    (
        "Foreign vehicles by plate country",
        "SELECT plate_country, count(DISTINCT plate_pseudonym) AS vehicles FROM plate_reads "
        "WHERE plate_country <> 'NO' GROUP BY 1 ORDER BY 2 DESC",
    ),
)


@dataclass(frozen=True)
class DemoOptions:
    reads: int = 200_000
    bad_ratio: float = 0.01
    keep_running: bool = False


def run_demo(
    settings: Settings,
    registry: SiteRegistry,
    options: DemoOptions,
    *,
    jars_dir: Callable[[], Path],
    console: Console,
) -> int:
    """Run the demo; return the exit code."""
    started_broker = False
    endpoints = local.parse_bootstrap(settings.kafka.bootstrap_servers)
    if len(endpoints) == 1 and local.is_loopback(endpoints[0].host):
        console.rule("[bold]1. Kafka (local broker)")
        already = local.status(settings.kafka.bootstrap_servers)
        pid = local.start(settings.state.dir, settings.kafka.bootstrap_servers, jars_dir=jars_dir())
        started_broker = not already
        console.print(f"broker at {settings.kafka.bootstrap_servers} (pid {pid})")
    else:
        console.rule("[bold]1. Kafka (configured cluster)")
    try:
        for name, state in sorted(create_topics(settings).items()):
            console.print(f"topic {name}: {state}")
        _simulate(settings, registry, options, console)
        totals = _ingest(settings, registry, options, console)
        _summary(settings, totals, console)
    finally:
        if started_broker and not options.keep_running:
            local.stop(settings.state.dir)
            console.print("stopped the demo's Kafka broker (use --keep-running to keep it)")
    return 0


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _simulate(
    settings: Settings, registry: SiteRegistry, options: DemoOptions, console: Console
) -> None:
    console.rule("[bold]2. Cameras: simulated traffic of the last days, in five formats")
    with _progress(console) as progress:
        task = progress.add_task("camera reads sent", total=options.reads)
        summary = simulate_plates(
            make_producer(settings, **{"linger.ms": 20}),
            settings.topics.plate_reads,
            registry,
            count=options.reads,
            bad_ratio=options.bad_ratio,
            seed=int(datetime.now(UTC).timestamp()),
            formats=VENDORS,  # every camera sends what its own software sends
            progress=lambda done: progress.update(task, completed=done),
        )
    console.print(
        f"{summary.produced} reads ({summary.hostile} hostile) captured "
        f"{summary.first_captured_at} .. {summary.last_captured_at}"
    )


def _ingest(
    settings: Settings, registry: SiteRegistry, options: DemoOptions, console: Console
) -> IngestTotals:
    console.rule("[bold]3. Ingest: validate, deduplicate, write the lake")
    with Lake.open(settings.lake.path) as lake, _progress(console) as progress:
        task = progress.add_task("messages ingested", total=options.reads)
        ingestor = PlateIngestor.connect(
            settings, lake=lake, registry=registry, metrics=IngestMetrics(CollectorRegistry())
        )
        return ingestor.run(
            RunLimits(until_idle_s=5.0),
            on_batch=lambda t: progress.update(task, completed=min(t.consumed, options.reads)),
        )


def _summary(settings: Settings, totals: IngestTotals, console: Console) -> None:
    console.rule("[bold]4. What landed")
    counts = Table("consumed", "stored", "rejected (DLQ)", "duplicates", "expired on arrival")
    counts.add_row(
        *(
            str(v)
            for v in (
                totals.consumed,
                totals.written,
                totals.rejected,
                totals.duplicates,
                totals.expired,
            )
        )
    )
    console.print(counts)
    if totals.rejected_by_reason:
        reasons = Table("reject reason", "messages", title="sent to anpr.dlq with the reason")
        for reason, n in sorted(totals.rejected_by_reason.items(), key=lambda kv: -kv[1]):
            reasons.add_row(reason, str(n))
        console.print(reasons)
    with Lake.open(settings.lake.path, read_only=True) as lake:
        per_site = lake.query_arrow(
            "SELECT site_id, count(*) FILTER (direction = 'entry') AS entries, "
            "count(*) FILTER (direction = 'exit') AS exits, count(*) AS reads, "
            "min(captured_at) AS first, max(captured_at) AS last "
            "FROM plate_reads GROUP BY site_id ORDER BY reads DESC"
        )
    table = Table(*per_site.column_names, title=f"plate_reads in {settings.lake.path}")
    for row in per_site.to_pylist():
        table.add_row(*(str(v)[:19] for v in row.values()))
    console.print(table)
    console.rule("[bold]5. Try it yourself")
    console.print(
        "Every read is logged. Give yourself a role first (an analyst sees plates only as keyed "
        'pseudonyms, 90 days back):  export ANPR_ACCESS_USERS="$USER=analyst"',
        soft_wrap=True,
        highlight=False,
    )
    for title, sql in EXAMPLE_QUERIES:
        console.print(f"[bold]{title}[/bold]")
        console.print(
            f'  .venv/bin/anpr query --reason control "{sql}"', soft_wrap=True, highlight=False
        )
    console.print("Then: .venv/bin/anpr audit verify", highlight=False)
