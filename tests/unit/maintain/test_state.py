"""The state folder's verification: each kind of file by its own rule, unknown files fail."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.access.audit import ActivityLog
from pipeline.config import Settings, load_settings
from pipeline.erasure import ErasureLedger
from pipeline.maintain.state import verify_state
from pipeline.pseudonym import Pseudonymiser, key_file, read_key

AS_OF = datetime(2026, 12, 1, 3, tzinfo=UTC)
PLATE = "QXS40417"


def _settings(tmp_path: Path) -> Settings:
    return load_settings(None, env={}, overrides={"state.dir": tmp_path / "state"})


def _log(settings: Settings, *, redacted: bool = True) -> ActivityLog:
    state = settings.state.dir
    key = read_key(state / "access" / "audit.key", "access.audit_key_file")
    pseudo = Pseudonymiser.from_settings(settings) if redacted else None
    return ActivityLog(state / "access" / "activity.jsonl", key, pseudo=pseudo)


def _query(at: datetime, sql: str) -> dict[str, object]:
    return {"kind": "query.refused", "at": at.isoformat(), "user": "ivan", "role": "dpo",
            "reason": "dsar", "case": "DSR-1", "sql": sql,
            "why": "control character U+001B"}  # fmt: skip


@pytest.fixture
def clean(tmp_path: Path) -> Settings:
    """A state folder as the pipeline leaves it: every kind of file, nothing past a limit."""
    settings = _settings(tmp_path)
    state = settings.state.dir
    _log(settings).append(_query(AS_OF - timedelta(days=3), f"SELECT * FROM t WHERE p = '{PLATE}'"))
    ErasureLedger.from_settings(settings).record(PLATE, now=AS_OF - timedelta(days=1))
    read_key(key_file(settings), "access.pseudonym_key_file")
    (state / "metrics").mkdir()
    (state / "metrics" / "maintain.prom").write_text("anpr_x 1\n")
    (state / "access" / "reports").mkdir()
    # Folders owned by other checks are not read: a broker's log segment holds plates.
    (state / "kafka" / "data").mkdir(parents=True)
    (state / "kafka" / "data" / "00000.log").write_text(PLATE)
    return settings


def test_a_clean_state_folder_passes(clean: Settings) -> None:
    check = verify_state(clean, AS_OF)
    assert check.findings == []
    assert check.files == 8  # log, head, lock, ledger, its lock, two keys, metrics; no kafka
    assert check.ok


def test_each_kind_of_leftover_is_found_by_file_never_by_content(clean: Settings) -> None:
    state = clean.state.dir
    (state / "access" / "reports" / "subject-access-1.json").write_text(PLATE)
    (state / "notes.txt").write_text("nothing personal")
    (state / "access" / "link").symlink_to(state / "kafka")
    _log(clean, redacted=False).append(_query(AS_OF, f"SELECT '{PLATE}'"))
    _log(clean).append({"kind": "subject.begin", "at": AS_OF.isoformat(), "note": PLATE})
    ledger = state / "access" / "erasure-ledger.json"
    body = json.loads(ledger.read_text())
    body["erased"].append({**body["erased"][0], "pseudonym": PLATE})
    body["erased"].append({**body["erased"][0], "keep_until": AS_OF.isoformat()})
    ledger.write_text(json.dumps(body))

    check = verify_state(clean, AS_OF)

    assert not check.ok
    assert sorted((f.path, f.problem) for f in check.findings) == [
        ("access/activity.jsonl", "SQL holding a literal (not a redacted template): lines 2"),
        ("access/activity.jsonl", "a plate-shaped word in clear: lines 2, 3"),
        ("access/erasure-ledger.json", "1 entries that are not a keyed pseudonym and two times"),
        ("access/erasure-ledger.json", "1 erasures kept past their time"),
        ("access/link", "unknown file: what it holds cannot be told; remove it"),
        ("access/reports/subject-access-1.json", "a subject-access report: the service keeps none"),
        ("notes.txt", "unknown file: what it holds cannot be told; remove it"),
    ]
    assert not any(PLATE in f.path + f.problem for f in check.findings)


def test_log_entries_past_its_retention_are_found(clean: Settings) -> None:
    months = clean.access.log_retention_months
    old = AS_OF - timedelta(days=31 * months + 1)
    log = clean.state.dir / "access" / "activity.jsonl"
    first = log.read_text()
    log.write_text(first.replace(json.loads(first)["at"], old.isoformat()))
    (finding,) = verify_state(clean, AS_OF).findings
    assert finding.path == "access/activity.jsonl"
    assert finding.problem.startswith("entries older than ")
    assert finding.problem.endswith("(its retention): lines 1")


def test_a_log_and_reports_configured_outside_the_state_folder_are_checked(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "elsewhere"
    settings = load_settings(None, env={}, overrides={
        "state.dir": tmp_path / "state",
        "access.activity_log": outside / "log.jsonl",
        "access.reports_dir": outside / "reports",
    })  # fmt: skip
    key = read_key(tmp_path / "state" / "access" / "audit.key", "access.audit_key_file")
    ActivityLog(outside / "log.jsonl", key).append(_query(AS_OF, f"SELECT '{PLATE}'"))
    (outside / "reports").mkdir()
    (outside / "reports" / "r.json").write_text("{}")
    found = {(f.path, f.problem.split(":")[0]) for f in verify_state(settings, AS_OF).findings}
    assert found == {
        (str(outside / "log.jsonl"), "SQL holding a literal (not a redacted template)"),
        (str(outside / "log.jsonl"), "a plate-shaped word in clear"),
        (str(outside / "reports" / "r.json"), "a subject-access report"),
    }


def test_a_running_querys_spill_passes_one_left_behind_fails(clean: Settings) -> None:
    session = clean.state.dir / "access" / "query-tmp" / "anpr-query-x1"
    session.mkdir(parents=True)
    running, left = session / "duckdb_temp_storage-1.tmp", session / "duckdb_temp_block-2.block"
    running.write_bytes(PLATE.encode())
    left.write_bytes(PLATE.encode())
    for path, age in ((running, timedelta(hours=1)), (left, timedelta(days=1, minutes=1))):
        stamp = (AS_OF - age).timestamp()
        os.utime(path, (stamp, stamp))
    (finding,) = verify_state(clean, AS_OF).findings
    assert finding.path == "access/query-tmp/anpr-query-x1/duckdb_temp_block-2.block"
    assert finding.problem.startswith("a query session's spilled rows left by a stopped service")
