"""The watchlist: entries from the compacted topic ``anpr.watchlist``, and the index reads hit.

Pure: no Kafka, no faust. :mod:`pipeline.live.app` feeds it the topic's records and the faust
table's contents.

**Records.** Key = the plate (normalised here again, so ``"AB 12345"`` and ``"AB12345"`` are one
entry); value = UTF-8 JSON ``{"list": "stolen", "reason": "R12", "added_by": "officer-17",
"expires_at": "2026-12-24T00:00:00Z"}``; a tombstone (null value) removes the plate. Every
entry must expire: ``expires_at`` is required, must lie in the future and at most
``watchlist_max_days`` ahead. A record that breaks a rule is a :class:`Rejection` (counted by
reason, logged without the plate) and also removes any earlier entry for its plate: the topic
is compacted, so the newest record *is* the plate's state, and an invalid newest record must
not leave a stale one in force.

**Matching** (:class:`WatchlistIndex`), for a 100,000-entry list at O(1) per read:

- *exact*: a dict from plate to entry;
- *possible*: every plate is also filed under its *confusion class*, the plate with each
  character replaced by the first of its OCR-confusion group (``0OQD``, ``1I``, ``8B``, ``5S``,
  ``2Z``, ``6G``): ``"AB1234O"`` and ``"A81234D"`` are both ``"A812340"``. A read matches
  *possibly* the listed plates of its class other than itself; one translate and one dict
  lookup per read, whatever the list's size. Exact wins: a read that is listed exactly gets
  only the exact hit.

An entry never hits once it has expired: it is live for a read only while both the read's
capture time and the clock are before ``expires_at``; expired entries are also removed from
the index (and the app's table) by :meth:`WatchlistIndex.pop_expired`.

Example::

    index = WatchlistIndex()
    index.put(Entry("AB12345", "stolen", "R12", "officer-17", expires_at))
    index.match("AB1234S", at=now)   # [(entry, "possible")]
"""

from __future__ import annotations

import enum
import heapq
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from pipeline.reference.plates import normalise_plate

MatchKind = Literal["exact", "possible"]

# Groups of characters that OCR confuses; each maps to its first character.
CONFUSION_GROUPS: Final = ("0OQD", "1I", "8B", "5S", "2Z", "6G")
_CLASS_TABLE: Final = str.maketrans({c: group[0] for group in CONFUSION_GROUPS for c in group})

# The ASCII separators that :func:`pipeline.reference.plates.normalise_plate` removes.
_ASCII_SEPARATORS: Final = " \t\n\r\f\v-._"
_DELETE_SEPARATORS: Final = str.maketrans("", "", _ASCII_SEPARATORS)

PLATE_PATTERN: Final = re.compile(r"[A-Z0-9]{2,10}")
# The list name is a metric label (anpr_watchlist_hits_total{list}): a short fixed vocabulary.
LIST_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
REASON_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_MAX_ADDED_BY = 64
_MAX_VALUE_BYTES = 4096


def normalise_fast(raw: str) -> str:
    """:func:`~pipeline.reference.plates.normalise_plate`, ~100x faster on the ASCII plates that
    make up nearly every record; anything else takes the full Unicode path.

    For ASCII text that path is: upper-case, remove the separators; a result that is not all
    letters and digits falls back too, so the two functions agree on every input (a property
    test checks it).
    """
    if raw.isascii():
        text = raw.upper().translate(_DELETE_SEPARATORS)
        if not text or text.isalnum():
            return text
    return normalise_plate(raw)


def confusion_class(plate: str) -> str:
    """The plate with every OCR-confusable character replaced by its group's representative."""
    return plate.translate(_CLASS_TABLE)


class RejectReason(enum.StrEnum):
    """Why a watchlist record was refused (the label of ``anpr_watchlist_rejected_total``)."""

    INVALID_KEY = "invalid_key"  # missing, not UTF-8, or not a plate once normalised
    MALFORMED = "malformed"  # not a JSON object, or too large
    INVALID_FIELD = "invalid_field"  # list, reason or added_by missing or badly formed
    NO_EXPIRY = "no_expiry"  # expires_at missing or null
    BAD_EXPIRY = "bad_expiry"  # expires_at not an ISO 8601 time with a UTC offset
    EXPIRED = "expired"  # expires_at already past
    EXPIRY_TOO_FAR = "expiry_too_far"  # beyond live.watchlist_max_days


@dataclass(frozen=True, slots=True)
class Entry:
    """One listed plate. ``added_by`` is kept for the audit trail, never logged."""

    plate: str
    list_name: str
    reason: str
    added_by: str
    expires_at: datetime

    def live_at(self, at: datetime) -> bool:
        return at < self.expires_at

    def to_record(self) -> dict[str, str]:
        """The JSON-able value stored in the faust table (same shape as the topic's)."""
        return {
            "list": self.list_name,
            "reason": self.reason,
            "added_by": self.added_by,
            "expires_at": self.expires_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Upsert:
    entry: Entry


@dataclass(frozen=True, slots=True)
class Removal:
    plate: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused record; ``plate`` (None if the key itself is bad) loses any earlier entry."""

    plate: str | None
    reason: RejectReason


Change = Upsert | Removal | Rejection


def parse_change(key: bytes | None, value: bytes | None, *, now: datetime, max_days: int) -> Change:
    """What one ``anpr.watchlist`` record means; see the module docstring for the rules."""
    plate = _plate(key)
    if plate is None:
        return Rejection(None, RejectReason.INVALID_KEY)
    if value is None:
        return Removal(plate)
    if len(value) > _MAX_VALUE_BYTES:
        return Rejection(plate, RejectReason.MALFORMED)
    try:
        document = json.loads(value)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return Rejection(plate, RejectReason.MALFORMED)
    if not isinstance(document, dict):
        return Rejection(plate, RejectReason.MALFORMED)
    return parse_record(plate, document, now=now, max_days=max_days)


def parse_record(
    plate: str, record: dict[str, object], *, now: datetime, max_days: int
) -> Upsert | Rejection:
    """Validate one decoded value from the topic."""
    built = _build(plate, record)
    if isinstance(built, RejectReason):
        return Rejection(plate, built)
    if built.expires_at <= now:
        return Rejection(plate, RejectReason.EXPIRED)
    if built.expires_at > now + timedelta(days=max_days):
        return Rejection(plate, RejectReason.EXPIRY_TOO_FAR)
    return Upsert(built)


def entry_from_record(plate: object, record: object) -> Entry | None:
    """An entry back from the faust table after a restart (it was validated on the way in;
    one that has expired since is returned too, and expires at the next check)."""
    if not isinstance(plate, str) or not isinstance(record, dict):
        return None
    built = _build(plate, record)
    return None if isinstance(built, RejectReason) else built


def _build(plate: str, record: dict[str, object]) -> Entry | RejectReason:
    list_name, reason, added_by = record.get("list"), record.get("reason"), record.get("added_by")
    if not (
        isinstance(list_name, str)
        and LIST_PATTERN.fullmatch(list_name)
        and isinstance(reason, str)
        and REASON_PATTERN.fullmatch(reason)
        and isinstance(added_by, str)
        and 0 < len(added_by) <= _MAX_ADDED_BY
    ):
        return RejectReason.INVALID_FIELD
    raw_expiry = record.get("expires_at")
    if raw_expiry is None:
        return RejectReason.NO_EXPIRY
    expires_at = _parse_time(raw_expiry)
    if expires_at is None:
        return RejectReason.BAD_EXPIRY
    return Entry(plate, list_name, reason, added_by, expires_at)


def _plate(key: bytes | None) -> str | None:
    if not key or len(key) > 64:
        return None
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return None
    plate = normalise_fast(text)
    return plate if PLATE_PATTERN.fullmatch(plate) else None


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # A time without an offset is ambiguous (local? UTC?): an expiry must not be guessed.
    return parsed if parsed.tzinfo is not None else None


class WatchlistIndex:
    """Listed plates by exact text and by confusion class; see the module docstring."""

    def __init__(self) -> None:
        self._exact: dict[str, Entry] = {}
        self._classes: dict[str, set[str]] = {}
        self._expiries: list[tuple[datetime, str]] = []  # heap; stale items skipped on pop

    def __len__(self) -> int:
        return len(self._exact)

    def __contains__(self, plate: object) -> bool:
        return plate in self._exact

    def put(self, entry: Entry) -> None:
        """Add or replace the entry for ``entry.plate``."""
        plate = entry.plate
        if plate not in self._exact:
            self._classes.setdefault(confusion_class(plate), set()).add(plate)
        self._exact[plate] = entry
        heapq.heappush(self._expiries, (entry.expires_at, plate))

    def remove(self, plate: str) -> bool:
        """Forget ``plate``; False if it was not listed."""
        if self._exact.pop(plate, None) is None:
            return False
        key = confusion_class(plate)
        similar = self._classes[key]
        similar.discard(plate)
        if not similar:
            del self._classes[key]
        return True

    def match(self, plate: str, *, at: datetime) -> list[tuple[Entry, MatchKind]]:
        """The entries ``plate`` hits at ``at`` (the later of capture time and clock)."""
        entry = self._exact.get(plate)
        if entry is not None and entry.live_at(at):
            return [(entry, "exact")]
        similar = self._classes.get(plate.translate(_CLASS_TABLE))
        if not similar:
            return []
        return [
            (self._exact[other], "possible")
            for other in sorted(similar)
            if other != plate and self._exact[other].live_at(at)
        ]

    def pop_expired(self, now: datetime) -> list[str]:
        """Remove and return every plate whose entry has expired at ``now``."""
        expired: list[str] = []
        while self._expiries and self._expiries[0][0] <= now:
            expires_at, plate = heapq.heappop(self._expiries)
            entry = self._exact.get(plate)
            # The heap keeps superseded expiries too: only the entry's current one counts.
            if entry is not None and entry.expires_at == expires_at:
                self.remove(plate)
                expired.append(plate)
        if len(self._expiries) > 2 * len(self._exact) + 1024:
            self._compact_heap()
        return expired

    def _compact_heap(self) -> None:
        self._expiries = [(e.expires_at, p) for p, e in self._exact.items()]
        heapq.heapify(self._expiries)
