"""write_atomic: the whole new content or the old, owner-only, no temp file left behind."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pipeline.files import write_atomic


def test_replaces_the_content_whole_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "head.json"
    target.write_text("old\n")
    assert write_atomic(target, "ÆØÅ new\n", sync_dir=True) == target
    assert target.read_bytes() == "ÆØÅ new\n".encode()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["head.json"]


def test_a_failed_replace_keeps_what_was_there_and_removes_its_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "report"
    target.mkdir()
    (target / "kept").write_bytes(b"old")  # a non-empty folder cannot be replaced by a file
    with pytest.raises(OSError):
        write_atomic(target, b"new")
    assert (target / "kept").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["report"]
