from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.config import TopicSettings
from pipeline.erasure import MARGIN, ErasureLedger, keep_until
from pipeline.pseudonym import Pseudonymiser

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
PSEUDO = Pseudonymiser(bytes(range(32)))


def _ledger(tmp_path: Path) -> ErasureLedger:
    return ErasureLedger(tmp_path / "ledger.json", lambda: PSEUDO, TopicSettings())


def test_an_erased_plate_is_recognised_without_being_stored(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    ledger.record("QXE40411", now=NOW)
    assert ledger.erased(pa.array(["QXE40411", "QXE40412", None])).to_pylist() == [
        True,
        False,
        False,
    ]
    text = ledger.path.read_bytes()
    assert b"QXE40411" not in text
    assert PSEUDO.one("QXE40411").encode() in text
    assert oct(ledger.path.stat().st_mode)[-3:] == "600"


def test_an_empty_ledger_never_reads_the_key(tmp_path: Path) -> None:
    def no_key() -> Pseudonymiser:
        raise AssertionError("the key was read")

    ledger = ErasureLedger(tmp_path / "ledger.json", no_key, TopicSettings())
    assert ledger.erased(pa.array(["QXE40411"])) is None
    assert ledger.prune(NOW) == 0


def test_entries_outlive_the_longest_topic_retention_then_go(tmp_path: Path) -> None:
    topics = TopicSettings(personal_retention_ms=3 * 86_400_000, hits_retention_ms=86_400_000)
    until = keep_until(NOW, topics)
    assert until >= NOW + timedelta(days=3) + MARGIN
    ledger = ErasureLedger(tmp_path / "ledger.json", lambda: PSEUDO, topics)
    ledger.record("QXE40411", now=NOW)
    ledger.record("QXE40499", now=NOW + timedelta(days=30))
    assert ledger.prune(until - timedelta(seconds=1)) == 0
    assert ledger.prune(until) == 1
    assert [e.pseudonym for e in ledger.entries()] == [PSEUDO.one("QXE40499")]
    # A worker holding the ledger sees the change on its next call.
    assert ledger.erased(pa.array(["QXE40411", "QXE40499"])).to_pylist() == [False, True]


@pytest.mark.parametrize("again", [1, 2])
def test_erasing_twice_renews_one_entry(tmp_path: Path, again: int) -> None:
    ledger = _ledger(tmp_path)
    for day in range(again):
        ledger.record("QXE40411", now=NOW + timedelta(days=day))
    (entry,) = ledger.entries()
    assert entry.erased_at == NOW + timedelta(days=again - 1)
