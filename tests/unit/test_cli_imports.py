"""`anpr --help` builds its parser without loading the heavy libraries the stages need."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("duckdb", "pyarrow", "numpy")


def _loaded_after(code: str) -> list[str]:
    """Which of HEAVY a fresh interpreter has imported after running ``code``."""
    loaded = f"[m for m in {HEAVY!r} if m in sys.modules]"
    probe = f"import json, sys\n{code}\nprint(json.dumps({loaded}))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    names: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return names


def test_building_the_parser_imports_no_heavy_library() -> None:
    assert _loaded_after("from pipeline.cli import build_parser; build_parser()") == []


@pytest.mark.parametrize("argv", [["--help"], ["ingest", "plates", "--help"], ["query", "--help"]])
def test_help_imports_no_heavy_library(argv: list[str]) -> None:
    code = (
        "from pipeline.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as exit_:\n"
        "    assert exit_.code == 0, exit_.code"
    )
    assert _loaded_after(code) == []


def test_the_probe_sees_an_import() -> None:
    """The check can fail: a handler that runs does load its stage's libraries."""
    assert "pyarrow" in _loaded_after("import pipeline.ingest.run")
