"""The activity log: append-only JSON lines, chained with a keyed MAC, anchored outside.

Every line is one entry, written in canonical JSON (sorted keys, no spaces) and carrying

- ``seq``: its number (0, 1, 2, ... for the life of the log; retention does not renumber),
- ``prev``: the ``mac`` of the entry before it (:data:`GENESIS` for the first ever),
- ``mac``: HMAC-SHA256, under the audit key, of the entry's canonical JSON without ``mac``.

The audit key (``access.audit_key_file``) is held by the service account alone: whoever can
write the log's folder but not read the key cannot re-chain an edited, shortened or reordered
log. The head record (``<log>.head.json``, carrying its own MAC) holds the next ``seq``, the
last ``mac``, where the kept log starts after retention, and counters for the metrics.

Because the key and the log live on one host, the service also publishes the head (``seq`` and
``mac`` of the last entry) to the compacted topic ``anpr.audit-anchors``
(:mod:`pipeline.access.anchors`), every ``access.anchor_every_entries`` entries and every
``access.anchor_interval_s``. An anchored MAC covers every entry up to it, so cutting, editing,
re-chaining, reordering or deleting anything anchored is found by :func:`verify_lines`, even by
someone who holds the key. Entries after the last anchor are protected by the key only.

Entries never hold result values: a query's entry keeps the keyed pseudonyms of the plates
it returned (:mod:`pipeline.pseudonym`), and its SQL with literals replaced
(:mod:`pipeline.access.redact`).

Where the lines and the head are kept is the store's business (:mod:`pipeline.access.logstore`):
a local file, appended under ``flock`` (several ``anpr`` processes on one host), or, on a
PostgreSQL catalog, tables of the catalog database, appended under a row lock (several
``anpr serve`` on several hosts, one chain). Entries, head record and MACs are the same in both.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.access.identity import access_paths
from pipeline.access.logstore import CatalogStore, FileStore, LogStore, StoreError
from pipeline.access.redact import redact_sql, scrub
from pipeline.config import Settings
from pipeline.errors import Terminal
from pipeline.lake.backend import Storage
from pipeline.pseudonym import Pseudonymiser, read_key
from pipeline.retention import log_cutoff

GENESIS = "0" * 64
QUERY_KINDS = ("query.end", "query.refused")
RETENTION_KIND = "audit.retention"


class AuditLogError(Terminal):
    """The log cannot be written or does not verify: nothing that needs it may run."""


@dataclass(frozen=True)
class Anchor:
    """The log's head as published outside the host: entry ``seq`` had ``mac``."""

    seq: int
    mac: str


@dataclass(frozen=True)
class Head:
    next_seq: int = 0
    last_mac: str = GENESIS
    first_seq: int = 0  # the oldest entry kept after retention
    first_prev: str = GENESIS  # and the MAC it chains to
    counts: Mapping[str, int] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {
            "next_seq": self.next_seq,
            "last_mac": self.last_mac,
            "first_seq": self.first_seq,
            "first_prev": self.first_prev,
            "counts": dict(self.counts),
        }

    @classmethod
    def from_body(cls, data: Mapping[str, Any]) -> Head:
        return cls(
            int(data["next_seq"]),
            str(data["last_mac"]),
            int(data["first_seq"]),
            str(data["first_prev"]),
            {str(k): int(v) for k, v in dict(data.get("counts", {})).items()},
        )


@dataclass(frozen=True)
class Verdict:
    """The result of :func:`verify_lines`: ``ok``, else the first bad entry and why."""

    ok: bool
    entries: int
    line: int | None = None  # 1-based line number of the first bad entry
    seq: int | None = None  # the seq that belongs there
    problem: str = ""
    anchored: int | None = None  # the newest anchored seq checked

    def describe(self) -> str:
        if self.ok:
            anchored = (
                f", anchored up to seq {self.anchored}"
                if self.anchored is not None
                else ", nothing anchored yet"
            )
            return f"activity log intact: {self.entries} entries{anchored}"
        if self.line is None:
            return f"activity log does not verify: {self.problem}"
        return f"first bad entry: line {self.line} (seq {self.seq}): {self.problem}"


def _canonical(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_mac(entry: Mapping[str, Any], key: bytes) -> str:
    """HMAC-SHA256 (hex) under ``key`` of ``entry`` without its ``mac`` field, canonical JSON."""
    body = {k: v for k, v in entry.items() if k != "mac"}
    return hmac.new(key, _canonical(body).encode(), hashlib.sha256).hexdigest()


def chain(record: Mapping[str, Any], *, seq: int, prev: str, key: bytes) -> dict[str, Any]:
    """``record`` as the entry ``seq`` chained to ``prev``: with ``seq``, ``prev`` and ``mac``."""
    entry = {**record, "seq": seq, "prev": prev}
    entry["mac"] = entry_mac(entry, key)
    return entry


def encode(entry: Mapping[str, Any]) -> str:
    """The exact line (without newline) an entry is stored as."""
    return _canonical(entry)


def verify_lines(
    lines: Iterable[str], head: Head | None, key: bytes, anchors: Sequence[Anchor] = ()
) -> Verdict:
    """Check every line, in order, against the keyed chain, ``head`` and ``anchors`` (pure).

    In order: each entry's form, seq, link and MAC; that the log starts where the last
    ``audit.retention`` entry says it was cut (a dropped prefix is not retention); the head;
    then every anchor: its entry must be in the log with the anchored MAC, unless retention
    dropped it.
    """
    start = head or Head()
    seq, prev, count = start.first_seq, start.first_prev, 0
    wanted = {a.seq for a in anchors}
    seen: dict[int, str] = {}
    kept_from = 0
    for number, line in enumerate(lines, start=1):
        problem = _line_problem(line, seq, prev, key)
        if problem:
            return Verdict(False, count, number, seq, problem)
        entry = json.loads(line)
        prev = entry["mac"]
        if seq in wanted:
            seen[seq] = prev
        if entry.get("kind") == RETENTION_KIND:
            kept_from = int(entry.get("kept_from", 0))
        seq, count = seq + 1, count + 1
    if count and start.first_seq != kept_from:
        return Verdict(
            False, count, 1, start.first_seq,
            f"the log starts at seq {start.first_seq} but retention kept it from seq "
            f"{kept_from}: entries {kept_from}..{start.first_seq - 1} are missing",
        )  # fmt: skip
    if head is None and count:
        return Verdict(False, count, count, seq - 1, "the head record is missing")
    if head is not None and (head.next_seq != seq or head.last_mac != prev):
        return Verdict(
            False, count, count + 1, seq,
            f"log ends at seq {seq - 1} but the head record says {head.next_seq - 1}: "
            "entries were removed from the end (or the head was altered)",
        )  # fmt: skip
    return _check_anchors(anchors, seen, first=start.first_seq, end=seq, count=count)


def _check_anchors(
    anchors: Sequence[Anchor], seen: Mapping[int, str], *, first: int, end: int, count: int
) -> Verdict:
    newest = max(anchors, key=lambda a: a.seq, default=None)
    if newest is not None and newest.seq >= end:
        return Verdict(
            False, count, count + 1, end,
            f"entries seq {end}..{newest.seq} are missing: anchored at seq {newest.seq} in "
            f"anpr.audit-anchors but the log ends at seq {end - 1} (cut, or the log replaced)",
        )  # fmt: skip
    for anchor in sorted(anchors, key=lambda a: a.seq):
        if anchor.seq < first:
            continue  # dropped by retention, which the chain itself records
        if seen.get(anchor.seq) != anchor.mac:
            return Verdict(
                False, count, anchor.seq - first + 1, anchor.seq,
                f"entry seq {anchor.seq} is not the one anchored: entries up to it were "
                "edited, removed, reordered or re-chained",
            )  # fmt: skip
    return Verdict(True, count, anchored=newest.seq if newest else None)


def _line_problem(line: str, seq: int, prev: str, key: bytes) -> str:
    try:
        entry = json.loads(line)
    except ValueError:
        return "not valid JSON (edited)"
    if not isinstance(entry, dict) or encode(entry) != line:
        return "not in canonical form (edited)"
    if entry.get("seq") != seq:
        return f"has seq {entry.get('seq')}: entries are missing or out of order"
    if entry.get("prev") != prev:
        return "does not chain to the entry before it (removed, inserted or reordered)"
    if not hmac.compare_digest(str(entry.get("mac")), entry_mac(entry, key)):
        return "content does not match its MAC (edited, or chained without the audit key)"
    return ""


def mentions(entry: Mapping[str, Any], pseudonym: str) -> bool:
    """Did this entry touch the subject with ``pseudonym``: a request about it, a result
    holding it, or a statement naming it (a literal)?"""
    return (
        entry.get("subject") == pseudonym
        or pseudonym in (entry.get("pseudonyms") or ())
        or pseudonym in (entry.get("literals") or ())
    )


def _count_keys(entry: Mapping[str, Any]) -> list[str]:
    """Counter names an entry adds to (the metrics textfile reads them from the head)."""
    kind = entry.get("kind")
    if kind in QUERY_KINDS:
        return [f"queries|{entry.get('role')}|{entry.get('reason')}|{entry.get('outcome')}"]
    if kind == "subject.end":
        return [f"subject|{entry.get('request')}"]
    return []


class ActivityLog:
    """The log in ``store`` (a file at ``path``, head beside it, unless given), chained under
    ``key``.

    ``append`` is durable when it returns, then hands the new head to ``on_append`` (the
    service's anchor publisher).
    """

    def __init__(
        self,
        path: Path,
        key: bytes,
        *,
        on_append: Callable[[Head], None] | None = None,
        pseudo: Pseudonymiser | None = None,
        store: LogStore | None = None,
    ) -> None:
        """``pseudo``: SQL in a record is stored redacted (:mod:`pipeline.access.redact`)."""
        if len(key) < 16:
            raise ValueError("an audit key needs at least 16 bytes")
        self.path = path
        self.store: LogStore = store or FileStore(path)
        self._key = key
        self._on_append = on_append
        self._pseudo = pseudo

    def __repr__(self) -> str:
        return f"ActivityLog({self.store.name!r}, key=********)"

    @property
    def head_path(self) -> Path:
        """Where the file log at :attr:`path` keeps its head record."""
        return FileStore(self.path).head_path

    def close(self) -> None:
        self.store.close()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        path: Path | None = None,
        *,
        on_append: Callable[[Head], None] | None = None,
        store: LogStore | None = None,
    ) -> ActivityLog:
        """The configured log under the service's audit key: in the catalog database on a
        PostgreSQL catalog, else the file ``access.activity_log``; ``path``: that file;
        ``store``: the configured store, already opened."""
        paths = access_paths(settings)
        return cls(
            path or paths.activity_log,
            read_key(paths.audit_key, "access.audit_key_file"),
            on_append=on_append,
            pseudo=Pseudonymiser.from_settings(settings),
            store=None if path is not None else store or store_for(settings),
        )

    def head(self) -> Head | None:
        """The head record; AuditLogError if it is unreadable or its MAC is wrong."""
        try:
            text = self.store.read_head()
            if text is None:
                return None
            data = json.loads(text)
            head = Head.from_body(data)
        except StoreError as exc:
            raise AuditLogError(str(exc)) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditLogError(
                f"activity log head in {self.store.name} is unreadable: {exc}"
            ) from None
        if not hmac.compare_digest(str(data.get("mac")), self._head_mac(head)):
            raise AuditLogError(
                f"activity log head in {self.store.name} does not match its MAC (altered, or "
                "chained under another audit key: every query service of a lake needs the same "
                "access.audit_key_file)"
            )
        return head

    def _head_mac(self, head: Head) -> str:
        return hmac.new(self._key, _canonical(head.body()).encode(), hashlib.sha256).hexdigest()

    def append(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Chain ``record`` to the log, fsync it, then move the head; return the entry.

        A record's ``sql`` is stored as its template, literals as keyed pseudonyms.
        """
        sql = record.get("sql")
        if self._pseudo is not None and isinstance(sql, str):
            why = record.get("why")
            record = {**record, **redact_sql(sql, self._pseudo, self._key)}
            if isinstance(why, str):
                record["why"] = scrub(why, sql)
        try:
            with self.store.exclusive():
                entry, head = self._append_locked(record)
        except StoreError as exc:
            raise AuditLogError(str(exc)) from exc
        if self._on_append is not None:
            self._on_append(head)
        return entry

    def _append_locked(self, record: Mapping[str, Any]) -> tuple[dict[str, Any], Head]:
        """Append with the lock held (the caller holds it)."""
        head = self.head()
        if head is None:
            if self.store.has_lines():
                raise AuditLogError("the activity log has no head record: run `anpr audit verify`")
            head = Head()
        entry = chain(record, seq=head.next_seq, prev=head.last_mac, key=self._key)
        self.store.append(entry["seq"], entry["mac"], encode(entry))
        counts = Counter(dict(head.counts))
        counts.update(_count_keys(entry))
        head = Head(entry["seq"] + 1, entry["mac"], head.first_seq, head.first_prev, counts)
        self._write_head(head)
        return entry, head

    def lines(self) -> Iterator[str]:
        return self.store.lines()

    def exists(self) -> bool:
        """Was anything ever logged here (a log, or its head)?"""
        return self.store.exists()

    def head_record(self) -> str | None:
        """The head record as stored (to copy a log elsewhere, with :meth:`lines`)."""
        return self.store.read_head()

    def entries(self) -> Iterator[dict[str, Any]]:
        for line in self.lines():
            if line:
                yield json.loads(line)

    def verify(self, anchors: Sequence[Anchor] = ()) -> Verdict:
        """Check the log against its key, head and ``anchors``; a missing log never passes."""
        try:
            with self.store.snapshot():
                if not self.store.exists():
                    newest = max((a.seq for a in anchors), default=None)
                    since = f": entries 0..{newest} were anchored" if newest is not None else ""
                    return Verdict(False, 0, problem=f"no activity log at {self.store.name}{since}")
                try:
                    head = self.head()
                except AuditLogError as exc:
                    return Verdict(False, 0, problem=str(exc))
                return verify_lines(self.lines(), head, self._key, anchors)
        except StoreError as exc:
            return Verdict(False, 0, problem=str(exc))

    def _write_head(self, head: Head) -> None:
        body = {**head.body(), "mac": self._head_mac(head)}
        self.store.write_head(_canonical(body))

    def apply_retention(self, now: datetime, months: int) -> int:
        """Drop entries older than ``months`` before ``now``; return how many were dropped.

        Refuses (AuditLogError) on a log that does not verify: evidence is not thrown away.
        The kept entries keep their seq and MACs; the head records where the log now
        starts, and an ``audit.retention`` entry records that it happened and where the kept
        log starts (``kept_from``), so a prefix dropped later by anyone else is found.
        """
        cutoff = log_cutoff(now, months)
        with self.store.exclusive():
            verdict = self.verify()
            if not verdict.ok:
                raise AuditLogError(f"activity log does not verify: {verdict.describe()}")
            head = self.head() or Head()
            lines = list(self.lines())
            keep_from = 0
            for index, line in enumerate(lines):
                if datetime.fromisoformat(json.loads(line)["at"]) >= cutoff:
                    break
                keep_from = index + 1
            if keep_from == 0:
                return 0
            kept = lines[keep_from:]
            first_seq, first_prev = head.next_seq, head.last_mac
            if kept:
                first = json.loads(kept[0])
                first_seq, first_prev = int(first["seq"]), str(first["prev"])
            self.store.cut(first_seq, kept)
            self._write_head(replace(head, first_seq=first_seq, first_prev=first_prev))
            # Under the same lock: nobody sees the cut log without the entry that explains it.
            _, head = self._append_locked(
                {
                    "kind": RETENTION_KIND,
                    "at": now.astimezone(UTC).isoformat(),
                    "dropped": keep_from,
                    "kept_from": first_seq,
                    "cutoff": cutoff.isoformat(),
                }
            )
        if self._on_append is not None:
            self._on_append(head)
        return keep_from


def store_for(settings: Settings) -> LogStore:
    """Where the configured log is kept: the catalog database on PostgreSQL (every query
    service of the lake appends to one chain), else the file ``access.activity_log``."""
    storage = Storage.from_settings(settings.lake)
    if storage.kind == "postgres":
        return CatalogStore(storage)
    return FileStore(access_paths(settings).activity_log)


@dataclass(frozen=True)
class ReportRow:
    user: str
    role: str
    reason: str
    case: str
    queries: int
    refused: int
    failed: int
    rows: int


def summarise(
    entries: Iterable[Mapping[str, Any]], since: datetime, until: datetime
) -> list[ReportRow]:
    """Queries and subject requests started in ``[since, until)`` by user, reason and case."""
    totals: dict[tuple[str, str, str, str], Counter[str]] = {}
    begun: dict[int, tuple[str, str, str, str]] = {}
    for entry in entries:
        kind = entry.get("kind", "")
        if kind in ("query.begin", "subject.begin", "query.refused"):
            at = datetime.fromisoformat(str(entry["at"]))
            if not since <= at < until:
                continue
            key = (
                str(entry.get("user")),
                str(entry.get("role")),
                str(entry.get("reason")),
                str(entry.get("case") or ""),
            )
            counter = totals.setdefault(key, Counter())
            if kind == "query.refused":
                counter["refused"] += 1
            else:
                counter["queries"] += 1
                begun[int(entry["seq"])] = key
        elif kind in ("query.end", "subject.end") and entry.get("begin") in begun:
            counter = totals[begun[int(entry["begin"])]]
            counter["rows"] += int(entry.get("rows") or 0)
            if entry.get("outcome") != "ok":
                counter["failed"] += 1
    return [
        ReportRow(*key, c["queries"], c["refused"], c["failed"], c["rows"])
        for key, c in sorted(totals.items())
    ]
