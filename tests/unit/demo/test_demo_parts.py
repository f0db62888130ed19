"""The demo's pure parts: the watchlist it picks, the clock it steps, the lines it reads."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.codec.vendors import VENDOR_RULES, VENDORS
from pipeline.demo.children import parse_ingest_line
from pipeline.demo.state import Voyage
from pipeline.demo.steps import (
    confusable,
    demo_steps,
    describe_steps,
    maintenance_times,
    pick_watchlist,
    trips_publish_time,
)
from pipeline.demo.summary import example_queries, passenger_reconciliation
from pipeline.live.watchlist import confusion_class
from pipeline.reference.plates import normalise_plate
from pipeline.reference.sites import DEFAULT_REGISTRY, load_registry
from pipeline.simulate.passengers import PassengerSummary
from pipeline.simulate.traffic import TrafficModel

START = datetime(2026, 11, 2, 5, tzinfo=UTC)
NOW = datetime(2026, 11, 6, 5, tzinfo=UTC)


def test_the_watchlist_holds_passing_plates_variants_and_absent_ones() -> None:
    registry = load_registry(DEFAULT_REGISTRY, VENDOR_RULES)
    entries = pick_watchlist(registry, seed=5, start=START, passages_per_hour=500, now=NOW)
    model = TrafficModel(registry, seed=5, passages_per_hour=500, formats=VENDORS)
    reads = model.reads(START)
    passing = {normalise_plate(str(next(reads)["plate"])) for _ in range(20_000)}
    listed = [e.plate for e in entries]
    assert len(set(listed)) == len(listed)
    exact = [p for p in listed if p in passing]
    assert len(exact) == 8
    variants = [p for p in listed if p not in passing and confusion_class(p) in
                {confusion_class(q) for q in passing}]  # fmt: skip
    assert 1 <= len(variants) <= 2
    assert all(e.expires_at == NOW + timedelta(days=7) for e in entries)
    # The same seed picks the same list (the demo and the traffic agree).
    again = pick_watchlist(registry, seed=5, start=START, passages_per_hour=500, now=NOW)
    assert [e.plate for e in again] == listed


def test_confusable_swaps_one_character_within_its_group() -> None:
    variant = confusable("AB12345")
    assert variant is not None
    assert variant != "AB12345"
    assert confusion_class(variant) == confusion_class("AB12345")
    assert sum(a != b for a, b in zip(variant, "AB12345", strict=True)) == 1
    assert confusable("XYWX") is None


def test_maintenance_steps_just_after_each_day_closed() -> None:
    grace = timedelta(hours=2)
    times = maintenance_times(START, START + timedelta(days=2, hours=3), grace)
    assert times == [
        datetime(2026, 11, d, 2, 1, tzinfo=UTC) for d in (3, 4, 5)
    ]  # days 2, 3 and 4 Nov


def test_trips_are_published_after_the_weeks_thirty_day_window() -> None:
    # 4 Nov 2026 is a Wednesday: its ISO week starts on Monday 2 Nov.
    when = trips_publish_time(datetime(2026, 11, 4, 12, tzinfo=UTC), timedelta(hours=2))
    assert when == datetime(2026, 11, 9, tzinfo=UTC) + timedelta(days=30, hours=2, minutes=1)


def test_ingest_line_is_read_back() -> None:
    line = (
        "consumed 17377: stored 17187, rejected 159, expired on arrival 0, duplicates 31 "
        "in 2 batches"
    )
    assert parse_ingest_line(line) == {
        "consumed": 17377, "stored": 17187, "rejected": 159, "expired": 0, "duplicates": 31,
    }  # fmt: skip
    assert parse_ingest_line("Traceback ...") == {}


def test_a_maintenance_run_is_one_line_of_counts() -> None:
    line = describe_steps(
        {
            "stats": {"ok": True, "traffic_days": 1, "trip_weeks": 0},
            "compact": {"ok": True, "days": 1, "files_before": 4, "files_after": 1},
            "retention": {"plate_reads": {"deleted_per_day": {"2026-05-01": 10, "2026-05-02": 5}}},
            "verify": {"ok": True},
            "topics": {"ok": False},
        }
    )
    assert line == (
        "statistics: 1 day(s), 0 trip week(s); compacted 1 day(s), 4->1 files; "
        "retention: 15 rows deleted; verified; topics FAILED"
    )


def test_the_steps_run_in_the_order_the_data_flows() -> None:
    titles = [title for title, _ in demo_steps()]
    assert titles[0].startswith("Kafka")
    flow = ("Kafka", "Watchlist", "Live", "Ferries", "Cameras", "Maintain", "What landed",
            "Report")  # fmt: skip
    order = [next(i for i, t in enumerate(titles) if t.startswith(w)) for w in flow]
    assert order == sorted(order)


def test_the_third_query_is_the_ferry_join_of_a_departure_run_as_investigator() -> None:
    queries = example_queries(Voyage("NFX", "NFX2612051730LAR", "NO-LARVIK", 171))
    assert [q.role for q in queries] == ["analyst", "analyst", "investigator"]
    join = queries[-1].command
    left, right = join.split(" | ")
    assert shlex.split(right) == ["anpr", "sql", "--reason", "investigation", "--case", "DEMO-1"]
    sql = shlex.split(left)[1]
    assert "FROM passengers AS p JOIN plate_reads AS r ON r.plate = p.vehicle_plate" in sql
    assert "p.voyage_id = 'NFX2612051730LAR'" in sql
    assert "r.site_id = 'NO-LARVIK'" in sql
    assert sql.endswith(";")
    # Without ferry traffic: three analyst queries.
    assert {q.role for q in example_queries(None)} == {"analyst"}


def test_only_plain_codes_go_into_the_printed_sql() -> None:
    with pytest.raises(ValueError, match="voyage_id"):
        example_queries(Voyage("NFX", "X' OR '1'='1", "NO-LARVIK", 1))


def test_passenger_counts_reconcile_or_say_mismatch() -> None:
    sim = PassengerSummary(departures=10, messages=10, people=500, hostile=1, hostile_people=40)
    counts = {"consumed": 10, "stored": 455, "rejected": 1, "expired": 0, "duplicates": 5}
    lines = passenger_reconciliation(sim, counts)
    assert lines == [
        "lists: sent 10 = consumed 10 = accepted 9 + rejected 1 (broken on purpose 1): ok",
        "people: listed 500 = stored 455 + on rejected lists 40 + repeats 5: ok",
    ]
    counts["stored"] = 454
    assert passenger_reconciliation(sim, counts)[1].endswith("MISMATCH")
    assert passenger_reconciliation(sim, {}) == [
        "passenger lists: no counts from anpr ingest passengers"
    ]
