"""After retention, nothing under the state folder holds a plate read's personal data too long.

What lives under ``state.dir`` and what is checked of each (ADR 0007):

- the activity log (``access.activity_log``, wherever it is; its ``.head.json`` and ``.lock``
  beside it; on a PostgreSQL lake its entries in the catalog database instead): no entry older
  than ``access.log_retention_months``; stored SQL is a template (re-tokenised, it holds no
  literal but the ``?`` placeholders); no plate-shaped word (upper case, letters and digits)
  in any other text of an entry;
- the erasure ledger (``access/erasure-ledger.json`` and its ``.lock``): keyed pseudonyms only,
  none kept past its ``keep_until``;
- the reports folder (``access.reports_dir``): empty, since the service keeps no subject-access
  report (the dpo's client writes it);
- the query sessions' temporary folders (``access/query-tmp``): DuckDB's spills of a running
  query, each session's own folder removed when it closes; a file older than a day is one a
  stopped service left (personal data of any age) and fails;
- the keys (pseudonym and audit key) and ``metrics/*.prom`` (counts; labels never name anyone);
- folders whose data other checks own, not read here: the local brokers (``kafka``,
  ``kafka-cluster``: topic retention, the topics check), the local cluster's catalog and
  objects (``postgres``, ``s3``: the lake's verification), and ``cache`` (jars), ``cluster``
  (settings), ``live`` (the live app's tables are in memory), ``demo`` (the demo's logs).

Anything else is reported as unknown and fails: what it holds cannot be told. A finding names
the file and the problem, never the content.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from pipeline.access.audit import store_for
from pipeline.access.identity import access_paths
from pipeline.access.logstore import FileStore, StoreError
from pipeline.access.redact import holds_literal
from pipeline.config import Settings
from pipeline.erasure import ErasureLedger
from pipeline.pseudonym import PSEUDONYM
from pipeline.retention import log_cutoff

OWNED_ELSEWHERE: Final = frozenset(
    {"kafka", "kafka-cluster", "postgres", "s3", "cache", "cluster", "live", "demo"}
)
# A word of 2-10 upper-case letters and digits holding both, as plates are stored; not the
# code point in the service's own "control character U+001B" refusals.
_PLATE_SHAPED: Final = re.compile(
    r"(?<![A-Za-z0-9+])(?=[A-Z0-9]*[0-9])(?=[A-Z0-9]*[A-Z])[A-Z0-9]{2,10}(?![A-Za-z0-9])"
)
_LEDGER_FIELDS: Final = frozenset({"pseudonym", "erased_at", "keep_until"})
# No query runs this long (sessions are rebuilt within minutes): an older spill was left behind.
SPILL_MAX_AGE: Final = timedelta(days=1)


@dataclass(frozen=True)
class Finding:
    path: str  # relative to the state folder when under it
    problem: str


@dataclass(frozen=True)
class StateCheck:
    files: int  # files checked (not counting the folders owned elsewhere)
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return not self.findings


def verify_state(settings: Settings, as_of: datetime) -> StateCheck:
    """Every file under the state folder (and the activity log, reports folder and keys
    wherever configured) checked by its kind; see the module doc."""
    state = settings.state.dir.absolute()  # compared as paths: all of them absolute
    paths = access_paths(settings)
    ledger = ErasureLedger.from_settings(settings).path.absolute()
    log = paths.activity_log.absolute()
    reports, metrics = paths.reports_dir.absolute(), paths.metrics_file.parent.absolute()
    spills = paths.query_temp.absolute()
    audit_key = paths.audit_key.absolute()
    cutoff = log_cutoff(as_of, settings.access.log_retention_months)
    known = {
        log: "log",
        log.with_name(log.name + ".head.json"): "plain",
        log.with_name(log.name + ".lock"): "plain",
        ledger: "ledger",
        ledger.with_name(ledger.name + ".lock"): "plain",
        paths.key_file.absolute(): "plain",
        audit_key: "plain",
    }
    findings: list[Finding] = []
    files = 0

    def name(path: Path) -> str:
        return str(path.relative_to(state)) if path.is_relative_to(state) else str(path)

    def check(path: Path) -> None:
        nonlocal files
        files += 1
        kind = known.get(path)
        if kind is None and path.parent == metrics and path.suffix == ".prom":
            kind = "plain"
        if kind is None and path.is_relative_to(reports):
            problems = ["a subject-access report: the service keeps none"]
        elif kind is None and path.is_relative_to(spills):
            problems = spill_problems(path, as_of)
        elif kind == "log":
            problems = log_problems(path, cutoff)
        elif kind == "ledger":
            problems = ledger_problems(ledger, as_of)
        elif kind is None:
            problems = ["unknown file: what it holds cannot be told; remove it"]
        else:
            problems = []
        findings.extend(Finding(name(path), p) for p in problems)

    outside = [p for p in (log, reports) if not p.is_relative_to(state)]
    for root in (state, *outside):
        for path in _files(root, skip=OWNED_ELSEWHERE if root == state else frozenset()):
            check(path)
    where, problems = catalog_log_problems(settings, cutoff)
    findings.extend(Finding(where, p) for p in problems)
    return StateCheck(files, findings)


def _files(root: Path, *, skip: frozenset[str]) -> list[Path]:
    """Files (and anything else that is not a folder) under ``root``, symlinks not followed,
    leaving out the top-level folders in ``skip``."""
    if not root.is_dir():
        return [root] if root.exists() or root.is_symlink() else []
    out = []
    for folder, dirs, names in os.walk(root):
        if Path(folder) == root:
            dirs[:] = [d for d in dirs if d not in skip]
        out += [Path(folder) / n for n in names]
        # os.walk lists a symlink to a folder among the folders and does not enter it.
        out += [Path(folder) / d for d in dirs if (Path(folder) / d).is_symlink()]
    return sorted(out)


def spill_problems(path: Path, as_of: datetime) -> list[str]:
    """A query session's spill is fine while its query may still run, not after."""
    try:
        changed = datetime.fromtimestamp(path.lstat().st_mtime, as_of.tzinfo)
    except OSError as exc:
        return [f"unreadable ({type(exc).__name__})"]
    if as_of - changed > SPILL_MAX_AGE:
        return ["a query session's spilled rows left by a stopped service: remove it"]
    return []


def log_problems(path: Path, cutoff: datetime) -> list[str]:
    """What in the activity log at ``path`` is past ``cutoff`` or holds clear text."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return [f"unreadable ({type(exc).__name__})"]
    return entry_problems(lines, cutoff)


def catalog_log_problems(settings: Settings, cutoff: datetime) -> tuple[str, list[str]]:
    """Where the log is and :func:`entry_problems` of it, if it is in the catalog database
    (a PostgreSQL lake); ``("", [])`` if it is a file (checked with the state folder)."""
    store = store_for(settings)
    if isinstance(store, FileStore):
        return "", []
    with contextlib.closing(store):
        try:
            return store.name, entry_problems(store.lines(), cutoff)
        except StoreError as exc:
            return store.name, [f"unreadable ({type(exc).__name__})"]


def entry_problems(lines: Iterable[str], cutoff: datetime) -> list[str]:
    """What in the log's ``lines`` is past ``cutoff`` or holds clear text."""
    old, literal, shaped, unreadable = [], [], [], []
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
            at = datetime.fromisoformat(entry["at"])
        except (ValueError, KeyError, TypeError):
            unreadable.append(number)
            continue
        if at < cutoff:
            old.append(number)
        sql = entry.get("sql")
        if isinstance(sql, str) and holds_literal(sql):
            literal.append(number)
        if any(_PLATE_SHAPED.search(text) for text in _texts(entry)):
            shaped.append(number)
    return [
        f"{what}: lines {_lines(numbers)}"
        for what, numbers in (
            (f"entries older than {cutoff:%Y-%m-%d} (its retention)", old),
            ("SQL holding a literal (not a redacted template)", literal),
            ("a plate-shaped word in clear", shaped),
            ("not a log entry", unreadable),
        )
        if numbers
    ]


def _texts(value: Any) -> list[str]:
    """Every string in a JSON value, times left out (``07T06`` is no plate), and the event id
    a rectification names (a camera's id such as ``E1`` is part of it)."""
    if isinstance(value, dict):
        return [t for k, v in value.items() if k != "event_id" for t in _texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return [value]
    return []


def _lines(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:5]))
    return f"{shown} and {len(numbers) - 5} more" if len(numbers) > 5 else shown


def ledger_problems(path: Path, as_of: datetime) -> list[str]:
    """What in the erasure ledger is not a keyed pseudonym or is kept past its time."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = list(data["erased"])
        due = sum(1 for e in entries if datetime.fromisoformat(e["keep_until"]) <= as_of)
        clear = sum(
            1
            for e in entries
            if set(e) != _LEDGER_FIELDS or not PSEUDONYM.fullmatch(e["pseudonym"])
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"unreadable ({type(exc).__name__})"]
    problems = []
    if due:
        problems.append(f"{due} erasures kept past their time")
    if clear:
        problems.append(f"{clear} entries that are not a keyed pseudonym and two times")
    return problems
