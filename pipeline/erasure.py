"""The erasure ledger: keyed pseudonyms of erased plates, so Kafka never brings one back.

``anpr subject erase`` deletes a plate from the lake, but its reads and passenger lists stay in
the personal-data topics until their retention (``topics.personal_retention_ms``) deletes them.
A worker replaying those topics (a new consumer group, a lake rebuilt from Kafka) would store
the plate again. So erasure also records the plate's keyed pseudonym (HMAC under the pseudonym
key, :mod:`pipeline.pseudonym`) here, and every ingest worker drops rows whose plate is in the
ledger before they reach the lake. An entry is kept until the longest personal-data topic
retention plus :data:`MARGIN` has passed since the erasure (by then Kafka has deleted every
message that could hold the plate), then ``anpr maintain`` deletes it.

The ledger is one JSON file under the state folder (mode 0600, replaced atomically, writers
take ``<ledger>.lock``); workers re-read it when it changes.

    ledger = ErasureLedger.from_settings(settings)
    ledger.record("AB12345", now=now)
    ledger.erased(pa.array(["AB12345", "CD678"]))   # [true, false]
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import Settings, TopicSettings
from pipeline.files import write_atomic
from pipeline.pseudonym import Pseudonymiser

# Kafka deletes a segment only once its newest message is past retention and the segment is
# closed (segment.ms, 7 days by default, or segment.bytes): a day on top covers a segment that
# rolled late and a broker clock that runs behind.
MARGIN = timedelta(days=1)


def keep_until(erased_at: datetime, topics: TopicSettings) -> datetime:
    """When an erasure's ledger entry may go: no topic can still hold the plate by then."""
    longest_ms = max(topics.personal_retention_ms, topics.hits_retention_ms)
    # A segment closes at most segment.ms after its first message; the broker default
    # (7 days) is what the topic plan leaves, so a message may live retention + 7 days.
    segment = timedelta(days=7)
    return erased_at + timedelta(milliseconds=longest_ms) + segment + MARGIN


@dataclass(frozen=True)
class Erasure:
    pseudonym: str
    erased_at: datetime
    keep_until: datetime


class ErasureLedger:
    """The ledger file at ``path``; entries kept for the retention of ``topics``.

    ``pseudonymiser`` gives the keyed pseudonyms; it is called (the key read) only when a
    plate must be pseudonymised, so pruning and an empty ledger never need the key.
    """

    def __init__(
        self, path: Path, pseudonymiser: Callable[[], Pseudonymiser], topics: TopicSettings
    ) -> None:
        self.path = path
        self._pseudonymiser = pseudonymiser
        self._topics = topics
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read
        self._pseudonyms: frozenset[str] = frozenset()
        self._loaded: Pseudonymiser | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ErasureLedger:
        return cls(
            settings.state.dir / "access" / "erasure-ledger.json",
            functools.partial(Pseudonymiser.from_settings, settings),
            settings.topics,
        )

    def _pseudo(self) -> Pseudonymiser:
        with self._lock:
            if self._loaded is None:
                self._loaded = self._pseudonymiser()
            return self._loaded

    def entries(self) -> list[Erasure]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        return [
            Erasure(
                str(e["pseudonym"]),
                datetime.fromisoformat(e["erased_at"]),
                datetime.fromisoformat(e["keep_until"]),
            )
            for e in data["erased"]
        ]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, entries: list[Erasure]) -> None:
        body = {
            "erased": [
                {
                    "pseudonym": e.pseudonym,
                    "erased_at": e.erased_at.astimezone(UTC).isoformat(),
                    "keep_until": e.keep_until.astimezone(UTC).isoformat(),
                }
                for e in sorted(entries, key=lambda e: (e.erased_at, e.pseudonym))
            ]
        }
        write_atomic(self.path, json.dumps(body, indent=1) + "\n", sync_dir=True)

    def record(self, plate: str, *, now: datetime) -> Erasure:
        """Add (or renew) the erasure of ``plate`` (normalised); durable when it returns."""
        erasure = Erasure(self._pseudo().one(plate), now, keep_until(now, self._topics))
        with self._locked():
            kept = [e for e in self.entries() if e.pseudonym != erasure.pseudonym]
            self._write([*kept, erasure])
        return erasure

    def prune(self, now: datetime) -> int:
        """Delete the entries whose time is up; return how many."""
        with self._locked():
            entries = self.entries()
            kept = [e for e in entries if e.keep_until > now]
            if len(kept) != len(entries):
                self._write(kept)
        return len(entries) - len(kept)

    def pseudonyms(self) -> frozenset[str]:
        """The erased pseudonyms, re-read only when the file changed (one ``stat`` a call)."""
        try:
            stat = self.path.stat()
            seen: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            seen = None
        with self._lock:
            if seen != self._seen:
                self._pseudonyms = frozenset(e.pseudonym for e in self.entries())
                self._seen = seen
            return self._pseudonyms

    def erased(self, plates: pa.Array | pa.ChunkedArray) -> pa.BooleanArray | None:
        """True where a plate is erased (null plates: false); None if nothing is erased."""
        erased = self.pseudonyms()
        if not erased:
            return None  # the common case costs no HMAC at all
        names = self._pseudo().many(plates)
        hit = pc.is_in(names, value_set=pa.array(sorted(erased), pa.string()))
        return pc.fill_null(hit, False)
