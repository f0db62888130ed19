"""A client whose query service is not running says so in one line and how to start it (exit 1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    "args",
    [
        ("query", "--reason", "investigation", "--case", "C-1", "SELECT 1"),
        ("audit", "verify"),
    ],
)
def test_a_client_without_a_running_service_gets_one_line_and_exit_1(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANPR_STATE_DIR": str(home / "state"),
        "ANPR_SERVE_SOCKET": str(tmp_path / "nobody-listens.sock"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "query service is not running" in lines[0]
    assert "anpr serve" in lines[0]
    assert "Traceback" not in result.stderr
