"""Watchlist hits: which decoded reads hit, their deterministic ids, and their wire format.

Pure. A hit's id is a hash of (event id, read plate, list): the same read, however often it is
delivered, has the same hit id, so :func:`unseen` (against the app's table of recent hit ids)
drops the repeats and a consumer of ``anpr.watchlist-hits`` can drop any that still slip
through (the id is also the message key). The id carries no plate in clear text.

Hit value (UTF-8 JSON, schema ``watchlist_hit/1``)::

    {"schema": "watchlist_hit/1", "hit_id": "…32 hex…", "list": "stolen", "reason": "R12",
     "match": "exact", "site_id": "NO-SVINESUND", "camera_id": "SVI-L2-F",
     "direction": "entry", "captured_at": "2026-11-22T04:31:14.123000+00:00",
     "event_id": "cam17-000000123"}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Container, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from pipeline.live.watchlist import MatchKind, WatchlistIndex

HIT_SCHEMA = "watchlist_hit/1"


def hit_id(event_id: str, plate: str, list_name: str) -> str:
    """Deterministic id of the hit of one read on one list: 128 bits of SHA-256."""
    material = "\x1f".join((event_id, plate, list_name)).encode()
    return hashlib.sha256(material).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Hit:
    hit_id: str
    list_name: str
    reason: str
    match: MatchKind
    site_id: str
    camera_id: str
    direction: str
    captured_at: datetime
    event_id: str

    def key(self) -> bytes:
        return self.hit_id.encode()

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "schema": HIT_SCHEMA,
                "hit_id": self.hit_id,
                "list": self.list_name,
                "reason": self.reason,
                "match": self.match,
                "site_id": self.site_id,
                "camera_id": self.camera_id,
                "direction": self.direction,
                "captured_at": self.captured_at.isoformat(),
                "event_id": self.event_id,
            },
            separators=(",", ":"),
        ).encode()


def find_hits(index: WatchlistIndex, reads: pa.Table, *, now: datetime) -> list[Hit]:
    """Hits of decoded reads (columns ``plate``, ``event_id``, ``site_id``, ``camera_id``,
    ``direction``, ``captured_at``), in row order.

    Only the plate column is walked for every read; the other columns are read for the rows
    that hit (a handful per batch).
    """
    if len(index) == 0 or len(reads) == 0:
        return []
    # Entries whose capture time is later than the clock still expire by the clock: an entry
    # is live for a read while both instants are before its expiry. Comparing the whole
    # batch against ``now`` first, and the capture time only for rows that match, keeps the
    # per-row work to one lookup.
    plates = reads["plate"].to_pylist()
    matches = [(row, index.match(plate, at=now)) for row, plate in enumerate(plates)]
    matched = [(row, found) for row, found in matches if found]
    if not matched:
        return []
    rows = pa.array([row for row, _ in matched], pa.int64())
    picked = reads.select(["event_id", "site_id", "camera_id", "direction", "captured_at"]).take(
        rows
    )
    columns = {name: picked[name].to_pylist() for name in picked.column_names}
    hits: list[Hit] = []
    for i, (row, found) in enumerate(matched):
        captured = _utc(columns["captured_at"][i])
        for entry, kind in found:
            if not entry.live_at(captured):
                continue
            event_id = columns["event_id"][i]
            hits.append(
                Hit(
                    hit_id(event_id, plates[row], entry.list_name),
                    entry.list_name,
                    entry.reason,
                    kind,
                    columns["site_id"][i],
                    columns["camera_id"][i],
                    columns["direction"][i],
                    captured,
                    event_id,
                )
            )
    return hits


def unseen(hits: Iterable[Hit], seen: Container[str]) -> list[Hit]:
    """``hits`` without those whose id is in ``seen`` or earlier in ``hits`` itself."""
    fresh: list[Hit] = []
    ids: set[str] = set()
    for hit in hits:
        if hit.hit_id in seen or hit.hit_id in ids:
            continue
        ids.add(hit.hit_id)
        fresh.append(hit)
    return fresh


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
