"""The activity log: append-only JSON lines, hash-chained, with a separate head record.

Every line is one entry, written in canonical JSON (sorted keys, no spaces) and carrying

- ``seq``: its number (0, 1, 2, ... for the life of the log; retention does not renumber),
- ``prev``: the ``hash`` of the entry before it (:data:`GENESIS` for the first ever),
- ``hash``: SHA-256 of the entry's canonical JSON without ``hash``.

The head record (``<log>.head.json``, replaced atomically after every append) holds the next
``seq``, the last ``hash``, where the kept log starts after retention, and cumulative counters
for the metrics. An edited byte breaks the canonical form or a hash; a deleted, inserted or
swapped line breaks ``seq`` and ``prev``; a cut tail disagrees with the head.

Entries never hold result values: a query's entry keeps the keyed pseudonyms of the plates
it returned (:mod:`pipeline.access.pseudonym`), so "who looked at this plate" can be answered.

Appending takes an exclusive ``flock`` on ``<log>.lock``: several ``anpr`` processes on one host
may log at once. (A multi-host deployment ships each host's log, or uses one log host.)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import Terminal
from pipeline.files import write_atomic
from pipeline.retention import log_cutoff

GENESIS = "0" * 64
QUERY_KINDS = ("query.end", "query.refused")


class AuditLogError(Terminal):
    """The log cannot be written or does not verify: nothing that needs it may run."""


@dataclass(frozen=True)
class Head:
    next_seq: int = 0
    last_hash: str = GENESIS
    first_seq: int = 0  # the oldest entry kept after retention
    first_prev: str = GENESIS  # and the hash it chains to
    counts: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return _canonical(
            {
                "next_seq": self.next_seq,
                "last_hash": self.last_hash,
                "first_seq": self.first_seq,
                "first_prev": self.first_prev,
                "counts": dict(self.counts),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Head:
        data = json.loads(text)
        return cls(
            int(data["next_seq"]),
            str(data["last_hash"]),
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

    def describe(self) -> str:
        if self.ok:
            return f"activity log intact: {self.entries} entries"
        return f"first bad entry: line {self.line} (seq {self.seq}): {self.problem}"


def _canonical(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of ``entry`` without its ``hash`` field, in canonical JSON."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


def chain(record: Mapping[str, Any], *, seq: int, prev: str) -> dict[str, Any]:
    """``record`` as the entry ``seq`` chained to ``prev``: with ``seq``, ``prev`` and ``hash``."""
    entry = {**record, "seq": seq, "prev": prev}
    entry["hash"] = entry_hash(entry)
    return entry


def encode(entry: Mapping[str, Any]) -> str:
    """The exact line (without newline) an entry is stored as."""
    return _canonical(entry)


def verify_lines(lines: Iterable[str], head: Head | None) -> Verdict:
    """Check every line, in order, against the chain and ``head`` (pure)."""
    start = head or Head()
    seq, prev, count = start.first_seq, start.first_prev, 0
    for number, line in enumerate(lines, start=1):
        problem = _line_problem(line, seq, prev)
        if problem:
            return Verdict(False, count, number, seq, problem)
        prev = json.loads(line)["hash"]
        seq, count = seq + 1, count + 1
    if head is None:
        if count:
            return Verdict(False, count, count, seq - 1, "the head record is missing")
        return Verdict(True, 0)
    if head.next_seq != seq or head.last_hash != prev:
        return Verdict(
            False,
            count,
            count + 1,
            seq,
            f"log ends at seq {seq - 1} but the head record says {head.next_seq - 1}: "
            "entries were removed from the end (or the head was altered)",
        )
    return Verdict(True, count)


def _line_problem(line: str, seq: int, prev: str) -> str:
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
    if entry.get("hash") != entry_hash(entry):
        return "content does not match its hash (edited)"
    return ""


def _count_keys(entry: Mapping[str, Any]) -> list[str]:
    """Counter names an entry adds to (the metrics textfile reads them from the head)."""
    kind = entry.get("kind")
    if kind in QUERY_KINDS:
        return [f"queries|{entry.get('role')}|{entry.get('reason')}|{entry.get('outcome')}"]
    if kind == "subject.end":
        return [f"subject|{entry.get('request')}"]
    return []


class ActivityLog:
    """The log at ``path`` (head beside it). ``append`` is durable when it returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.head_path = path.with_name(path.name + ".head.json")
        self.lock_path = path.with_name(path.name + ".lock")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def head(self) -> Head | None:
        try:
            return Head.from_json(self.head_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditLogError(
                f"activity log head {self.head_path} is unreadable: {exc}"
            ) from None

    def append(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Chain ``record`` to the log, fsync it, then move the head; return the entry."""
        with self._locked():
            head = self.head()
            if head is None:
                if self.path.exists() and self.path.stat().st_size:
                    raise AuditLogError(
                        "the activity log has no head record: run `anpr audit verify`"
                    )
                head = Head()
            entry = chain(record, seq=head.next_seq, prev=head.last_hash)
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, (encode(entry) + "\n").encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise AuditLogError(f"cannot write the activity log {self.path}: {exc}") from exc
            counts = Counter(dict(head.counts))
            counts.update(_count_keys(entry))
            self._write_head(
                Head(entry["seq"] + 1, entry["hash"], head.first_seq, head.first_prev, counts)
            )
            return entry

    def lines(self) -> Iterator[str]:
        try:
            with self.path.open(encoding="utf-8", errors="replace", newline="\n") as handle:
                for line in handle:
                    yield line.removesuffix("\n")
        except FileNotFoundError:
            return

    def entries(self) -> Iterator[dict[str, Any]]:
        for line in self.lines():
            if line:
                yield json.loads(line)

    def verify(self) -> Verdict:
        return verify_lines(self.lines(), self.head())

    def _write_head(self, head: Head) -> None:
        write_atomic(self.head_path, head.to_json() + "\n", sync_dir=True)  # mode 0600

    def apply_retention(self, now: datetime, months: int) -> int:
        """Drop entries older than ``months`` before ``now``; return how many were dropped.

        Refuses (AuditLogError) on a log that does not verify: evidence is not thrown away.
        The kept entries keep their seq and hashes; the head records where the log now
        starts, and an ``audit.retention`` entry records that it happened.
        """
        cutoff = log_cutoff(now, months)
        with self._locked():
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
            first_seq, first_prev = head.next_seq, head.last_hash
            if kept:
                first = json.loads(kept[0])
                first_seq, first_prev = int(first["seq"]), str(first["prev"])
            write_atomic(self.path, "".join(f"{line}\n" for line in kept), sync_dir=True)
            self._write_head(
                Head(head.next_seq, head.last_hash, first_seq, first_prev, head.counts)
            )
        self.append(
            {
                "kind": "audit.retention",
                "at": now.astimezone(UTC).isoformat(),
                "dropped": keep_from,
                "cutoff": cutoff.isoformat(),
            }
        )
        return keep_from


def apply_retention(log_path: Path, now: datetime, months: int) -> int:
    """For ``anpr maintain``: drop activity-log entries older than ``months`` before ``now``."""
    return ActivityLog(log_path).apply_retention(now, months)


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
