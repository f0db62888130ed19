"""Steps 7-9 of the demo: what landed (tables of counts that must reconcile), the HTML report
(statistics only) with ``summary.json`` beside it, and the queries to paste."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from rich.table import Table

from pipeline.config import add_months
from pipeline.demo.children import read_topic
from pipeline.demo.report import ReportInputs, write_report
from pipeline.demo.state import Demo, Example, Findings, Voyage
from pipeline.files import write_atomic
from pipeline.kafka.clients import header_dict
from pipeline.lake.catalog import CATALOG, Lake
from pipeline.lake.tables import DATA_TABLES
from pipeline.maintain.stats import DURATION_BUCKETS, NO_RETURN
from pipeline.simulate.passengers import PassengerSummary

DEMO_CASE: Final = "DEMO-1"


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


SUMMARY_JSON: Final = "summary.json"


# -- 7. what landed --------------------------------------------------------------------------


def _findings(demo: Demo) -> Findings:
    found = Findings()
    exact = sorted({e.plate for e in demo.watchlist})
    with Lake.from_settings(demo.settings.lake, read_only=True) as lake:
        present = lake.columns()
        for table in ("plate_reads", "passengers", "traffic_stats", "trip_stats"):
            if table in present:
                row = lake.execute(f"SELECT count(*) FROM {CATALOG}.{table}").fetchone()
                found.tables[table] = int(row[0]) if row else 0
        for spec in DATA_TABLES.values():  # the collection time, as retention reads it
            if spec.name in found.tables and spec.collected_column:
                row = lake.execute(
                    f"SELECT min({spec.collected_column}) FROM {CATALOG}.{spec.name}"
                ).fetchone()
                found.oldest[spec.name] = row[0] if row else None
        placeholders = ", ".join("?" for _ in exact)
        row = lake.execute(
            f"SELECT count(*) FROM {CATALOG}.plate_reads WHERE plate IN ({placeholders})", exact
        ).fetchone()
        found.listed_reads = int(row[0]) if row else 0
        if "traffic_stats" in found.tables:
            found.passages_per_hour = [
                (hour, site, int(n))
                for hour, site, n in lake.execute(
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
            row = lake.execute(
                f"SELECT count(DISTINCT day), avg(suppressed::INT) FROM {CATALOG}.traffic_stats"
            ).fetchone()
            if row:
                found.stats_days, found.suppressed_share = int(row[0]), float(row[1] or 0.0)
        if "trip_stats" in found.tables:
            got = dict(
                lake.execute(
                    f"SELECT duration, sum(trips) FROM {CATALOG}.trip_stats "
                    "WHERE entry_site = '*' AND duration <> '*' AND NOT suppressed GROUP BY 1"
                ).fetchall()
            )
            found.trip_durations = [(b, int(got.get(b) or 0)) for b in DURATION_BUCKETS]
            found.no_return = int(got.get(NO_RETURN) or 0)
        if "passengers" in found.tables:
            found.people = [
                (str(role), str(fmt), int(n))
                for role, fmt, n in lake.execute(
                    f"SELECT role, source_format, count(*) FROM {CATALOG}.passengers "
                    "GROUP BY ALL ORDER BY 1, 2"
                ).fetchall()
            ]
            found.voyage = _busiest_voyage(lake, demo.start, demo.end)
    return found


def _busiest_voyage(lake: Lake, start: datetime, end: datetime) -> Voyage | None:
    """This run's departure whose vehicles the terminal's cameras read most often: the
    README's ferry join, over every departure of the run's days at once."""
    row = lake.execute(
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


def what_landed(demo: Demo) -> None:
    settings, console = demo.settings, demo.console
    feeds = {settings.topics.plate_reads: "plate reads", settings.topics.passengers: "lists"}
    begin = {p: o for (t, p), o in demo.begin.items() if t == settings.topics.dlq}
    for message in read_topic(settings, settings.topics.dlq, begin):
        headers = header_dict(message.headers())
        reason = headers.get("anpr-reason", b"?").decode()
        source = headers.get("anpr-source-topic", b"?").decode()
        demo.rejects[(feeds.get(source, source), reason)] += 1
    begin = {p: o for (t, p), o in demo.begin.items() if t == settings.topics.watchlist_hits}
    for message in read_topic(settings, settings.topics.watchlist_hits, begin):
        hit = json.loads(message.value())
        demo.hits[(str(hit["list"]), str(hit["match"]))] += 1
    found = _findings(demo)
    demo.findings = found
    demo.tables = found.tables
    demo.queries = example_queries(found.voyage)
    if demo.service is not None:
        demo.queries = [replace(q, setup=demo.service.setup(q.role)) for q in demo.queries]

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


def write_demo_report(demo: Demo) -> None:
    found = demo.findings
    assert found is not None  # set by what_landed
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
    "analyst": "Every read of the lake goes through the query service, which knows who you are "
    "(your OS user here, your client certificate remotely) and logs who, why and what. Act as "
    "the demo's analyst (plates only as keyed pseudonyms, 90 days back) with its certificate:",
    "investigator": "Passenger lists are for investigators only (role investigator, or the "
    "dpo): they see names and clear plates, and must always name a case (--case). Switch "
    "to the investigator's certificate:",
}


def _report_queries(queries: Sequence[Example]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    role = ""
    for q in queries:
        if q.role != role:
            role = q.role
            out.append((f"Act as the demo's {role}", q.setup))
        out.append((q.what, q.command))
    return out


def try_it(demo: Demo) -> None:
    console = demo.console
    console.print("  . .venv/bin/activate    # puts anpr on PATH (make setup made .venv)")
    if demo.service is not None and not demo.options.keep_running:
        console.print(
            "The query service answers every query; the demo stopped it. Start it again:",
            highlight=False,
        )
        console.print(f"  {demo.service.start_command}", highlight=False, soft_wrap=True)
    role = ""
    for q in demo.queries:
        if q.role != role:
            role = q.role
            console.print(_ROLE_INTRO.get(role, f"As {role}:"), highlight=False)
            console.print(f"  {q.setup}", highlight=False, soft_wrap=True)
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
