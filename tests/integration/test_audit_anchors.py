"""`anpr audit verify` against anchors the service published to a real Kafka topic.

Every tamper here is done the strongest way: with the audit key in hand (a forger who owns the
host), re-chaining and rewriting the head after the edit. Only the anchors outside the host
can tell, and `anpr audit verify` must exit 1 naming what is missing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeTopic, RunAnpr

from pipeline.access.anchors import AnchorPublisher, read_anchors
from pipeline.access.audit import GENESIS, ActivityLog, Head, chain, encode
from pipeline.config import Settings, load_settings

T0 = datetime(2026, 11, 1, tzinfo=UTC)
COMPACTED = {"cleanup.policy": "compact", "retention.ms": "-1"}
Logged = tuple[Settings, dict[str, str]]


@pytest.fixture
def logged(
    tmp_path: Path, kafka_bootstrap: str, make_topic: MakeTopic
) -> tuple[Settings, dict[str, str]]:
    """A log of 12 entries by two users, anchored every 5 entries and at close."""
    env = {
        **os.environ,
        "ANPR_STATE_DIR": str(tmp_path / "state"),
        "ANPR_LAKE_PATH": str(tmp_path / "lake"),
        "ANPR_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ANPR_TOPICS_AUDIT_ANCHORS": make_topic(1, COMPACTED),
        "ANPR_ACCESS_ANCHOR_EVERY_ENTRIES": "5",
    }
    settings = load_settings(None, env=env)
    publisher = AnchorPublisher.from_settings(settings)
    log = ActivityLog.from_settings(settings, on_append=publisher)
    publisher.start(log.head())
    for n in range(12):
        at = (T0 + timedelta(minutes=n)).isoformat()
        log.append({"kind": "query.begin", "at": at, "user": ("ann", "ivan")[n % 2], "n": n})
    publisher.close()
    assert max(a.seq for a in read_anchors(settings)) == 11
    return settings, env


def _forge(settings: Settings, target: Path, records: list[dict[str, Any]]) -> None:
    """Write ``records`` as a log at ``target`` chained with the real key, head and all."""
    key = bytes.fromhex((settings.state.dir / "access" / "audit.key").read_text().strip())
    prev, lines = GENESIS, []
    for seq, record in enumerate(records):
        body = {k: v for k, v in record.items() if k not in ("seq", "prev", "mac")}
        entry = chain(body, seq=seq, prev=prev, key=key)
        lines.append(encode(entry) + "\n")
        prev = entry["mac"]
    forged = ActivityLog(target, key)
    target.write_text("".join(lines))
    forged._write_head(Head(len(records), prev))  # a forger writes the head too
    assert forged.verify().ok  # the key alone cannot tell: only the anchors can


def _tampered(
    settings: Settings, env: dict[str, str], anpr: RunAnpr,
    edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
) -> str:  # fmt: skip
    log = ActivityLog.from_settings(settings)
    _forge(settings, log.path, edit(list(log.entries())))
    result = anpr(env, "audit", "verify")
    assert result.returncode == 1, result.stdout
    return result.stdout


def test_intact_log_verifies_against_its_anchors(logged: Logged, anpr: RunAnpr) -> None:
    _, env = logged
    result = anpr(env, "audit", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "activity log intact: 12 entries, anchored up to seq 11"


def test_truncating_the_last_entries_is_named(logged: Logged, anpr: RunAnpr) -> None:
    out = _tampered(*logged, anpr, lambda entries: entries[:9])
    assert "entries seq 9..11 are missing" in out


def test_dropping_one_users_entries_is_named(logged: Logged, anpr: RunAnpr) -> None:
    out = _tampered(*logged, anpr, lambda es: [e for e in es if e["user"] != "ivan"])
    assert "entries seq 6..11 are missing" in out


def test_editing_and_rechaining_is_named(logged: Logged, anpr: RunAnpr) -> None:
    def edit(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        entries[3]["user"] = "someone-else"
        return entries

    assert "(seq 4): entry seq 4 is not the one anchored" in _tampered(*logged, anpr, edit)


def test_reordering_and_rechaining_is_named(logged: Logged, anpr: RunAnpr) -> None:
    out = _tampered(*logged, anpr, lambda es: [es[1], es[0], *es[2:]])
    assert "(seq 4): entry seq 4 is not the one anchored" in out


def test_deleting_log_and_head_is_named(logged: Logged, anpr: RunAnpr) -> None:
    settings, env = logged
    log = ActivityLog.from_settings(settings)
    log.path.unlink()
    log.head_path.unlink()
    result = anpr(env, "audit", "verify")
    assert result.returncode == 1
    assert "no activity log at" in result.stdout
    assert "entries 0..11 were anchored" in result.stdout


def test_log_pointing_elsewhere_or_nowhere_is_named(
    logged: Logged, anpr: RunAnpr, tmp_path: Path
) -> None:
    settings, env = logged
    nowhere = anpr(env, "audit", "verify", "--log", str(tmp_path / "nonexistent.jsonl"))
    assert nowhere.returncode == 1
    assert "no activity log at" in nowhere.stdout
    elsewhere = tmp_path / "clean.jsonl"  # a tidy log of the forger's own, with the real key
    _forge(settings, elsewhere, [{"kind": "query.begin", "at": T0.isoformat(), "user": "ann"}])
    result = anpr(env, "audit", "verify", "--log", str(elsewhere))
    assert result.returncode == 1
    assert "entries seq 1..11 are missing" in result.stdout


def test_an_unreadable_anchor_topic_fails_closed(logged: Logged, anpr: RunAnpr) -> None:
    _, env = logged
    result = anpr({**env, "ANPR_TOPICS_AUDIT_ANCHORS": "anpr.no-such-anchors"}, "audit", "verify")
    assert result.returncode == 1
    assert "cannot check the anchors" in result.stdout
    assert "Traceback" not in result.stderr
