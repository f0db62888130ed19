import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.access.audit import (
    GENESIS,
    ActivityLog,
    AuditLogError,
    Head,
    chain,
    encode,
    summarise,
    verify_lines,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _lines(n: int) -> tuple[list[str], Head]:
    prev, lines = GENESIS, []
    for seq in range(n):
        entry = chain({"kind": "query.begin", "at": (T0 + timedelta(days=seq)).isoformat()},
                      seq=seq, prev=prev)  # fmt: skip
        lines.append(encode(entry))
        prev = entry["hash"]
    return lines, Head(n, prev)


def test_intact_chain_verifies() -> None:
    lines, head = _lines(5)
    assert verify_lines(lines, head).ok
    assert verify_lines([], None).ok


def test_one_byte_edit_is_the_first_bad_entry() -> None:
    lines, head = _lines(5)
    lines[2] = lines[2].replace("query.begin", "query.begun")
    verdict = verify_lines(lines, head)
    assert (verdict.ok, verdict.line, verdict.seq) == (False, 3, 2)
    spaced = list(_lines(5)[0])
    spaced[1] = spaced[1].replace(",", ", ", 1)  # same JSON, different bytes
    assert verify_lines(spaced, head).line == 2


def test_deleted_swapped_and_truncated_entries_are_named() -> None:
    lines, head = _lines(6)
    deleted = lines[:3] + lines[4:]
    assert verify_lines(deleted, head).line == 4
    swapped = [*lines[:1], lines[2], lines[1], *lines[3:]]
    assert verify_lines(swapped, head).line == 2
    truncated = verify_lines(lines[:4], head)
    assert (truncated.ok, truncated.line, truncated.seq) == (False, 5, 4)
    assert "removed from the end" in truncated.problem
    assert not verify_lines(lines, None).ok  # head deleted


def test_append_persists_head_and_counts(tmp_path: Path) -> None:
    log = ActivityLog(tmp_path / "a.jsonl")
    log.append({"kind": "query.refused", "at": T0.isoformat(), "role": "analyst",
                "reason": "control", "outcome": "refused"})  # fmt: skip
    log.append({"kind": "subject.end", "at": T0.isoformat(), "request": "erase"})
    head = log.head()
    assert head is not None
    assert head.next_seq == 2
    assert head.counts == {"queries|analyst|control|refused": 1, "subject|erase": 1}
    assert log.verify().ok
    assert oct(log.path.stat().st_mode)[-3:] == "600"


def test_retention_drops_old_entries_and_the_rest_still_verifies(tmp_path: Path) -> None:
    log = ActivityLog(tmp_path / "a.jsonl")
    for day in range(0, 400, 40):
        log.append({"kind": "query.begin", "at": (T0 + timedelta(days=day)).isoformat()})
    dropped = log.apply_retention(T0 + timedelta(days=400), months=6)
    kept = list(log.entries())
    assert dropped == 6  # days 0..200 are older than 6 months before day 400
    assert kept[0]["seq"] == 6
    assert kept[-1]["kind"] == "audit.retention"
    assert log.verify().ok
    lines = list(log.lines())
    path = log.path
    path.write_text("\n".join(lines[1:]) + "\n")  # cutting the new head of the log is caught
    assert not log.verify().ok


def test_retention_refuses_a_tampered_log(tmp_path: Path) -> None:
    log = ActivityLog(tmp_path / "a.jsonl")
    for day in range(3):
        log.append({"kind": "query.begin", "at": (T0 + timedelta(days=day)).isoformat()})
    text = log.path.read_text().replace("query.begin", "query.BEGIN", 1)
    log.path.write_text(text)
    with pytest.raises(AuditLogError):
        log.apply_retention(T0 + timedelta(days=900), months=24)


def test_summary_by_user_reason_and_case() -> None:
    entries = [
        {"seq": 0, "kind": "query.begin", "at": T0.isoformat(), "user": "ann",
         "role": "analyst", "reason": "control", "case": None},
        {"seq": 1, "kind": "query.end", "begin": 0, "outcome": "ok", "rows": 7},
        {"seq": 2, "kind": "query.refused", "at": T0.isoformat(), "user": "ann",
         "role": "analyst", "reason": "control", "case": None},
        {"seq": 3, "kind": "query.begin", "at": (T0 - timedelta(days=1)).isoformat(),
         "user": "ann", "role": "analyst", "reason": "control", "case": None},
    ]  # fmt: skip
    rows = summarise(entries, T0, T0 + timedelta(days=1))
    assert [(r.user, r.queries, r.refused, r.rows) for r in rows] == [("ann", 1, 1, 7)]
    assert json.loads(encode({"b": 1, "a": 2})) == {"a": 2, "b": 1}
