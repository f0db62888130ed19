from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from pipeline.codec.vendors import VENDOR_RULES
from pipeline.config import Settings
from pipeline.live.process import STALE, LiveProcessor
from pipeline.live.watchlist import Entry, WatchlistIndex
from pipeline.reference.sites import DEFAULT_REGISTRY, load_registry
from pipeline.simulate.vendor_payloads import encode_vendor, mapped_event_id

REGISTRY = load_registry(DEFAULT_REGISTRY, VENDOR_RULES)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def canonical(event_id: str, plate: str, camera: str = "SVI-L1-F", *, lane: int = 1,
              direction: str = "entry", at: datetime = NOW) -> dict[str, object]:  # fmt: skip
    return {
        "schema": "plate_read/1",
        "event_id": event_id,
        "site_id": "NO-SVINESUND",
        "camera_id": camera,
        "lane": lane,
        "direction": direction,
        "captured_at": at.isoformat().replace("+00:00", "Z"),
        "plate": plate,
        "plate_country": "NO",
        "confidence": 0.9,
        "vehicle_class": "car",
    }


def encoded(*reads: dict[str, object]) -> list[bytes | None]:
    return [json.dumps(r).encode() for r in reads]


def processor(*plates: str) -> LiveProcessor:
    index = WatchlistIndex()
    for plate in plates:
        index.put(Entry(plate, "stolen", "R12", "officer-1", NOW + timedelta(days=1)))
    return LiveProcessor(Settings(), registry=REGISTRY, index=index)


def test_a_batch_gives_hits_passages_and_camera_times() -> None:
    values = encoded(
        canonical("e1", "AB 12345"),
        canonical("e2", "AB12345", "SVI-L1-R", at=NOW + timedelta(seconds=1)),  # same vehicle
        canonical("e3", "XY99999", "SVI-L5-F", lane=5, direction="exit"),
        canonical("e4", "A812345", at=NOW + timedelta(seconds=2)),
    )
    values.append(b"{not json")
    batch = processor("AB12345").process(values, [None] * len(values), NOW)
    assert batch.formats == {"canonical": 5}
    assert batch.skipped == {"malformed_json": 1}
    assert batch.reads == 4
    assert batch.passages == {("NO-SVINESUND", "entry"): 2, ("NO-SVINESUND", "exit"): 1}
    assert batch.newest == {
        ("SVI-L1-F", "NO-SVINESUND"): (NOW + timedelta(seconds=2)).timestamp(),
        ("SVI-L1-R", "NO-SVINESUND"): (NOW + timedelta(seconds=1)).timestamp(),
        ("SVI-L5-F", "NO-SVINESUND"): NOW.timestamp(),
    }
    assert [(h.event_id, h.match, h.camera_id) for h in batch.hits] == [
        ("e1", "exact", "SVI-L1-F"),
        ("e2", "exact", "SVI-L1-R"),
        ("e4", "possible", "SVI-L1-F"),
    ]


def test_a_passage_continues_across_batches_and_a_repeat_is_no_new_passage() -> None:
    live = processor()
    first = live.process(encoded(canonical("e1", "AB12345")), [None], NOW)
    again = live.process(encoded(canonical("e1", "AB12345")), [None], NOW)
    later = canonical("e2", "AB12345", "SVI-L1-R", at=NOW + timedelta(seconds=5))
    rear = live.process(encoded(later), [None], NOW)
    assert first.passages == {("NO-SVINESUND", "entry"): 1}
    assert again.passages == {}
    assert rear.passages == {}


def test_stale_reads_are_counted_and_never_matched() -> None:
    old = canonical("e1", "AB12345", at=NOW - timedelta(hours=2))
    batch = processor("AB12345").process(encoded(old), [None], NOW)
    assert batch.skipped == {STALE: 1}
    assert batch.hits == []
    assert batch.passages == {}


def test_vendor_payloads_go_through_the_same_decoder() -> None:
    camera = REGISTRY.camera("SVI-L4-F")  # OpenALPR
    read = canonical("v1", "AB12345", "SVI-L4-F", lane=4, direction="exit")
    payload, content_type = encode_vendor(read, camera, random.Random(1))
    batch = processor("AB12345").process([payload], [content_type], NOW)
    [(fmt, count)] = batch.formats.items()
    assert fmt.startswith("openalpr")
    assert count == 1
    assert [(h.event_id, h.match) for h in batch.hits] == [(mapped_event_id(read, camera), "exact")]
