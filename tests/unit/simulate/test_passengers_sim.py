"""The passenger simulator: departures match the plate simulator's ferry reads; lists decode."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from pipeline.codec.passenger_lists import decode_passenger_lists
from pipeline.codec.vendors import VENDOR_RULES
from pipeline.reference.plates import normalise_plate
from pipeline.reference.sites import DEFAULT_REGISTRY, load_registry
from pipeline.simulate.passengers import (
    HOSTILE_VARIANTS,
    crew_list,
    departures,
    encode,
    hostile_list,
    spoiled,
)
from pipeline.simulate.traffic import TrafficModel

START = datetime(2026, 11, 20, tzinfo=UTC)


def test_every_vehicle_on_a_departure_was_read_leaving_at_that_terminal_before_it() -> None:
    registry = load_registry(DEFAULT_REGISTRY, VENDOR_RULES)
    found = list(departures(registry, seed=4, start=START, plate_reads=15_000))
    assert len(found) > 5
    reads = TrafficModel(registry, seed=4).reads(START)
    by_id = {str(r["event_id"]): r for r in (next(reads) for _ in range(15_000))}
    for d in found:
        m = d.manifest
        assert m.departure_at is not None
        plates = {normalise_plate(p.vehicle_plate) for p in m.people if p.vehicle_plate}
        assert plates == {normalise_plate(raw) for _, raw in d.reads}
        for event_id, _ in d.reads:
            read = by_id[event_id]
            at = datetime.fromisoformat(str(read["captured_at"]))
            assert (read["site_id"], read["direction"]) == (d.site_id, "exit")
            assert m.departure_at - timedelta(hours=2) <= at < m.departure_at


def test_simulated_lists_decode_without_rejections_in_both_formats() -> None:
    registry = load_registry(DEFAULT_REGISTRY, VENDOR_RULES)
    rng = random.Random(2)
    values = []
    for n, d in enumerate(departures(registry, seed=4, start=START, plate_reads=15_000)):
        values.append(encode(rng, [d.manifest, crew_list(rng, d.manifest)][: 1 + n % 2], 0.5))
    batch = decode_passenger_lists(
        values, [1_800_000_000_000] * len(values), retention_cutoff=START - timedelta(days=1)
    )
    assert batch.rejected == []
    assert set(batch.formats) == {"json", "paxlst"}
    assert set(batch.table["role"].to_pylist()) == {"passenger", "driver", "crew"}


def test_each_hostile_list_is_rejected_with_its_reason() -> None:
    registry = load_registry(DEFAULT_REGISTRY, VENDOR_RULES)
    manifest = next(departures(registry, seed=4, start=START, plate_reads=15_000)).manifest
    values = [hostile_list(variant, manifest) for variant, _ in HOSTILE_VARIANTS]
    batch = decode_passenger_lists(
        values, [1_800_000_000_000] * len(values), retention_cutoff=START - timedelta(days=1)
    )
    assert len(batch.table) == 0
    got = {r.index: r.reason.value for r in batch.rejected}
    assert got == {n: reason for n, (_, reason) in enumerate(HOSTILE_VARIANTS)}


def test_broken_lists_are_spread_at_the_ratio() -> None:
    assert sum(spoiled(n, 0.01) for n in range(700)) == 7
    assert sum(spoiled(n, 0.01) for n in range(60)) == 1  # one early, not only after 100
    assert not any(spoiled(n, 0.0) for n in range(1000))
    assert all(spoiled(n, 1.0) for n in range(10))
