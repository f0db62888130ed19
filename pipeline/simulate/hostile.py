"""Hostile and broken input, made from a valid read: what a faulty camera or an attacker sends.

Each variant is a small function ``(read, rng) -> bytes``. The simulator mixes them in with
``--bad-ratio``; tests use :data:`VARIANTS` as a corpus. None of them may stop a worker.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Read = dict[str, object]
Variant = Callable[[Read, random.Random], bytes]


def _dump(read: object) -> bytes:
    return json.dumps(read, separators=(",", ":")).encode()


def _with(read: Read, **changes: object) -> bytes:
    return _dump({**read, **changes})


def _without(read: Read, name: str) -> bytes:
    return _dump({k: v for k, v in read.items() if k != name})


VARIANTS: dict[str, Variant] = {
    "truncated": lambda r, rng: _dump(r)[: rng.randint(1, len(_dump(r)) - 1)],
    "array": lambda r, rng: _dump([r]),
    "scalar": lambda r, rng: b"42",
    "two_documents": lambda r, rng: _dump(r) + _dump(r),
    "trailing_bytes": lambda r, rng: _dump(r) + b" garbage",
    "deep_nesting": lambda r, rng: b"[" * 100_000 + b"]" * 100_000,
    "nul_bytes": lambda r, rng: _dump(r).replace(b'"plate":"', b'"plate":"\x00', 1),
    "bom": lambda r, rng: b"\xef\xbb\xbf" + _dump(r),
    "binary": lambda r, rng: bytes(rng.randrange(256) for _ in range(200)),
    "empty": lambda r, rng: b"",
    "lane_as_string": lambda r, rng: _with(r, lane=str(r["lane"])),
    "lane_as_bool": lambda r, rng: _with(r, lane=True),
    "confidence_nan": lambda r, rng: _dump(r).replace(
        f'"confidence":{r["confidence"]}'.encode(), b'"confidence":NaN'
    ),
    "confidence_infinity": lambda r, rng: _dump(r).replace(
        f'"confidence":{r["confidence"]}'.encode(), b'"confidence":Infinity'
    ),
    "missing_event_id": lambda r, rng: _without(r, "event_id"),
    "missing_plate": lambda r, rng: _without(r, "plate"),
    "no_zone": lambda r, rng: _with(r, captured_at=str(r["captured_at"]).rstrip("Z")),
    "year_3000": lambda r, rng: _with(r, captured_at="3000-01-01T00:00:00Z"),
    "future": lambda r, rng: _with(
        r, captured_at=(datetime.now(UTC) + timedelta(days=2)).isoformat()
    ),
    "path_in_site": lambda r, rng: _with(r, site_id="../../etc/passwd"),
    "unknown_site": lambda r, rng: _with(r, site_id="NO-NOWHERE"),
    "unknown_camera": lambda r, rng: _with(r, camera_id="CAM-UNKNOWN-9"),
    "sql_in_plate": lambda r, rng: _with(r, plate="'; DROP TABLE plate_reads;--"),
    "lookalike_garbage": lambda r, rng: _with(r, plate="ЖЖ 12345"),
    "bad_direction": lambda r, rng: _with(r, direction="sideways"),
    "huge_string": lambda r, rng: _with(r, camera_id="C" * 10_000),
    "unknown_schema": lambda r, rng: _with(r, schema="plate_read/9"),
    "oversized": lambda r, rng: _with(r, padding="x" * 70_000),
}


def corrupt(read: Read, rng: random.Random) -> tuple[str, bytes]:
    """One randomly chosen hostile variant of ``read``: (variant name, bytes)."""
    name = rng.choice(sorted(VARIANTS))
    return name, VARIANTS[name](read, rng)
