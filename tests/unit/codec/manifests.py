"""One invented departure for the passenger-list tests; the people differ per test module."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.codec.paxlst import Manifest, Person


def departure(*people: Person) -> Manifest:
    """Ferry FJL0412 from Larvik to Hirtshals, 2026-11-22 08:00 UTC, with ``people``."""
    return Manifest(
        carrier="FJL",
        vessel="MS TESTFJORD",
        voyage_id="FJL0412",
        departure_port="NOLAR",
        departure_at=datetime(2026, 11, 22, 8, 0, tzinfo=UTC),
        arrival_port="DKHIR",
        arrival_at=datetime(2026, 11, 22, 11, 45, tzinfo=UTC),
        direction="exit",
        people=people,
    )
