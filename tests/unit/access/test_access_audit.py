import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.access.audit import (
    GENESIS,
    ActivityLog,
    Anchor,
    AuditLogError,
    Head,
    chain,
    encode,
    summarise,
    verify_lines,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def _entries(n: int, key: bytes = KEY, users: tuple[str, ...] = ("ann",)) -> list[dict[str, Any]]:
    prev, out = GENESIS, []
    for seq in range(n):
        record = {"kind": "query.begin", "at": (T0 + timedelta(days=seq)).isoformat(),
                  "user": users[seq % len(users)]}  # fmt: skip
        entry = chain(record, seq=seq, prev=prev, key=key)
        out.append(entry)
        prev = entry["mac"]
    return out


def _lines(n: int) -> tuple[list[str], Head]:
    entries = _entries(n)
    return [encode(e) for e in entries], Head(n, entries[-1]["mac"])


def _rechain(records: list[dict[str, Any]], key: bytes) -> tuple[list[str], Head]:
    """What a forger does after editing: renumber and re-chain every entry under ``key``."""
    prev, lines = GENESIS, []
    for seq, record in enumerate(records):
        body = {k: v for k, v in record.items() if k not in ("seq", "prev", "mac")}
        entry = chain(body, seq=seq, prev=prev, key=key)
        lines.append(encode(entry))
        prev = entry["mac"]
    return lines, Head(len(lines), prev)


def test_intact_chain_verifies() -> None:
    lines, head = _lines(5)
    assert verify_lines(lines, head, KEY).ok
    assert verify_lines([], None, KEY).ok
    anchored = verify_lines(lines, head, KEY, [Anchor(4, json.loads(lines[4])["mac"])])
    assert (anchored.ok, anchored.anchored) == (True, 4)


def test_one_byte_edit_is_the_first_bad_entry() -> None:
    lines, head = _lines(5)
    lines[2] = lines[2].replace("query.begin", "query.begun")
    verdict = verify_lines(lines, head, KEY)
    assert (verdict.ok, verdict.line, verdict.seq) == (False, 3, 2)
    spaced = list(_lines(5)[0])
    spaced[1] = spaced[1].replace(",", ", ", 1)  # same JSON, different bytes
    assert verify_lines(spaced, head, KEY).line == 2


def test_deleted_swapped_and_truncated_entries_are_named() -> None:
    lines, head = _lines(6)
    deleted = lines[:3] + lines[4:]
    assert verify_lines(deleted, head, KEY).line == 4
    swapped = [*lines[:1], lines[2], lines[1], *lines[3:]]
    assert verify_lines(swapped, head, KEY).line == 2
    truncated = verify_lines(lines[:4], head, KEY)
    assert (truncated.ok, truncated.line, truncated.seq) == (False, 5, 4)
    assert "removed from the end" in truncated.problem
    assert not verify_lines(lines, None, KEY).ok  # head deleted


def test_a_chain_made_without_the_key_does_not_verify() -> None:
    """Edit, then re-chain the whole log (SHA-256 was enough to forge before the key)."""
    records = _entries(5)
    records[2]["user"] = "someone-else"
    forged, head = _rechain(records, OTHER_KEY)
    verdict = verify_lines(forged, head, KEY)
    assert (verdict.ok, verdict.line) == (False, 1)
    assert "audit key" in verdict.problem


def _anchor_at(entries: list[dict[str, Any]], seq: int) -> list[Anchor]:
    return [Anchor(seq, entries[seq]["mac"])]


def test_tamper_truncate_last_n_is_caught_by_the_anchor_even_with_a_rewritten_head() -> None:
    entries = _entries(10)
    anchors = _anchor_at(entries, 9)
    kept = entries[:7]  # the last 3 dropped, the head rewritten to match (key holder)
    verdict = verify_lines([encode(e) for e in kept], Head(7, kept[-1]["mac"]), KEY, anchors)
    assert not verdict.ok
    assert "entries seq 7..9 are missing" in verdict.problem


def test_tamper_drop_one_users_entries_and_rechain_with_the_key() -> None:
    entries = _entries(10, users=("ann", "ivan"))
    anchors = _anchor_at(entries, 9)
    without_ivan = [e for e in entries if e["user"] != "ivan"]
    lines, head = _rechain(without_ivan, KEY)
    verdict = verify_lines(lines, head, KEY, anchors)
    assert not verdict.ok
    assert "entries seq 5..9 are missing" in verdict.problem
    # Padding back to the anchored length does not help: the anchored MAC differs.
    padded, head = _rechain(without_ivan * 2, KEY)
    verdict = verify_lines(padded, head, KEY, anchors)
    assert (verdict.ok, verdict.seq) == (False, 9)
    assert "not the one anchored" in verdict.problem


def test_tamper_edit_and_rechain_with_the_key() -> None:
    entries = _entries(6)
    anchors = _anchor_at(entries, 5)
    entries[1]["user"] = "nobody"
    lines, head = _rechain(entries, KEY)
    assert verify_lines(lines, head, KEY).ok  # the key alone cannot tell...
    verdict = verify_lines(lines, head, KEY, anchors)  # ...the anchor can
    assert (verdict.ok, verdict.seq) == (False, 5)


def test_tamper_reorder_and_rechain_with_the_key() -> None:
    entries = _entries(6)
    anchors = _anchor_at(entries, 5)
    lines, head = _rechain([entries[0], entries[2], entries[1], *entries[3:]], KEY)
    assert not verify_lines(lines, head, KEY, anchors).ok


def test_tamper_prefix_dropped_and_head_moved_is_not_retention() -> None:
    entries = _entries(6)
    kept = entries[2:]
    head = Head(6, entries[-1]["mac"], first_seq=2, first_prev=entries[1]["mac"])
    verdict = verify_lines([encode(e) for e in kept], head, KEY)
    assert not verdict.ok
    assert "entries 0..1 are missing" in verdict.problem


def test_tamper_whole_log_deleted_or_elsewhere(tmp_path: Path) -> None:
    log = ActivityLog(tmp_path / "a.jsonl", KEY)
    for day in range(3):
        log.append({"kind": "query.begin", "at": (T0 + timedelta(days=day)).isoformat()})
    head = log.head()
    assert head is not None
    anchors = [Anchor(head.next_seq - 1, head.last_mac)]
    assert log.verify(anchors).ok
    log.path.unlink()
    log.head_path.unlink()
    gone = log.verify(anchors)
    assert not gone.ok
    assert "no activity log at" in gone.describe()
    assert "entries 0..2 were anchored" in gone.describe()
    nowhere = ActivityLog(tmp_path / "nonexistent.jsonl", KEY).verify()
    assert not nowhere.ok  # a missing log is never "intact: 0 entries"
    elsewhere = ActivityLog(tmp_path / "b.jsonl", KEY)
    elsewhere.append({"kind": "query.begin", "at": T0.isoformat()})
    replaced = elsewhere.verify(anchors)
    assert not replaced.ok
    assert "entries seq 1..2 are missing" in replaced.problem


def test_altered_head_is_refused(tmp_path: Path) -> None:
    log = ActivityLog(tmp_path / "a.jsonl", KEY)
    log.append({"kind": "query.begin", "at": T0.isoformat()})
    text = log.head_path.read_text().replace('"next_seq":1', '"next_seq":7')
    log.head_path.write_text(text)
    verdict = log.verify()
    assert not verdict.ok
    assert "does not match its MAC" in verdict.problem
    with pytest.raises(AuditLogError):
        log.append({"kind": "query.begin", "at": T0.isoformat()})


def test_on_append_sees_every_new_head(tmp_path: Path) -> None:
    heads: list[Head] = []
    log = ActivityLog(tmp_path / "a.jsonl", KEY, on_append=heads.append)
    for day in range(3):
        log.append({"kind": "query.begin", "at": (T0 + timedelta(days=day)).isoformat()})
    assert [h.next_seq for h in heads] == [1, 2, 3]
    assert repr(log).endswith("key=********)")


def test_append_persists_head_and_counts(tmp_path: Path) -> None:
    log = ActivityLog(tmp_path / "a.jsonl", KEY)
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
    log = ActivityLog(tmp_path / "a.jsonl", KEY)
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
    log = ActivityLog(tmp_path / "a.jsonl", KEY)
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
