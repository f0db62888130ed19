from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from pipeline.live.hits import Hit, find_hits, hit_id, unseen
from pipeline.live.watchlist import Entry, WatchlistIndex

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def reads(*rows: tuple[str, str, datetime]) -> pa.Table:
    return pa.table(
        {
            "event_id": [r[0] for r in rows],
            "site_id": ["NO-SVINESUND"] * len(rows),
            "camera_id": ["SVI-L1-F"] * len(rows),
            "direction": ["entry"] * len(rows),
            "captured_at": pa.array([r[2] for r in rows], pa.timestamp("ms", tz="UTC")),
            "plate": [r[1] for r in rows],
        }
    )


def index(*entries: Entry) -> WatchlistIndex:
    built = WatchlistIndex()
    for e in entries:
        built.put(e)
    return built


STOLEN = Entry("AB12345", "stolen", "R12", "officer-1", NOW + timedelta(days=1))


def test_hit_ids_are_deterministic_and_distinguish_event_plate_and_list() -> None:
    assert hit_id("e1", "AB12345", "stolen") == hit_id("e1", "AB12345", "stolen")
    ids = {
        hit_id("e1", "AB12345", "stolen"),
        hit_id("e2", "AB12345", "stolen"),
        hit_id("e1", "A812345", "stolen"),
        hit_id("e1", "AB12345", "wanted"),
        hit_id("e1A", "B12345", "stolen"),  # no ambiguity from joining the parts
    }
    assert len(ids) == 5
    assert all(len(i) == 32 and "AB12345" not in i for i in ids)


def test_find_hits_exact_and_possible_with_the_read_context() -> None:
    table = reads(("e1", "AB12345", NOW), ("e2", "XY11111", NOW), ("e3", "A812345", NOW))
    hits = find_hits(index(STOLEN), table, now=NOW)
    assert [(h.event_id, h.match, h.list_name, h.reason) for h in hits] == [
        ("e1", "exact", "stolen", "R12"),
        ("e3", "possible", "stolen", "R12"),
    ]
    assert hits[0].hit_id == hit_id("e1", "AB12345", "stolen")
    assert (hits[0].site_id, hits[0].camera_id, hits[0].direction) == (
        "NO-SVINESUND",
        "SVI-L1-F",
        "entry",
    )
    assert hits[0].captured_at == NOW


def test_a_read_captured_after_the_expiry_gives_no_hit() -> None:
    soon = Entry("AB12345", "stolen", "R12", "officer-1", NOW + timedelta(seconds=5))
    table = reads(("e1", "AB12345", NOW + timedelta(seconds=5)), ("e2", "AB12345", NOW))
    assert [h.event_id for h in find_hits(index(soon), table, now=NOW)] == ["e2"]
    # And none at all once the clock has passed it, whatever the capture time.
    assert find_hits(index(soon), table, now=NOW + timedelta(seconds=5)) == []


def test_unseen_drops_known_ids_and_repeats_within_the_batch() -> None:
    table = reads(("e1", "AB12345", NOW), ("e1", "AB12345", NOW), ("e2", "AB12345", NOW))
    hits = find_hits(index(STOLEN), table, now=NOW)
    assert len(hits) == 3
    assert [h.event_id for h in unseen(hits, set())] == ["e1", "e2"]
    assert [h.event_id for h in unseen(hits, {hits[0].hit_id})] == ["e2"]


def test_the_hit_message_carries_the_fields_and_no_plate() -> None:
    hit = Hit("f" * 32, "stolen", "R12", "possible", "NO-ORJE", "ORJ-L2-F", "exit", NOW, "e9")
    document = json.loads(hit.to_json())
    assert document == {
        "schema": "watchlist_hit/1",
        "hit_id": "f" * 32,
        "list": "stolen",
        "reason": "R12",
        "match": "possible",
        "site_id": "NO-ORJE",
        "camera_id": "ORJ-L2-F",
        "direction": "exit",
        "captured_at": "2026-11-22T12:00:00+00:00",
        "event_id": "e9",
    }
    assert hit.key() == b"f" * 32
