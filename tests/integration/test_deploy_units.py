"""`systemd-analyze verify` on the units in deploy/systemd (systemd 252, Debian 12).

The units name /opt/anpr/venv/bin/anpr and user anpr, which this machine does not have, so the
test verifies copies that point at this checkout's `anpr` and the current user; everything else
(keys, values, sections, the timer's calendar) is verified as written. Warnings fail the test:
systemd only warns about an unknown key, and a misspelt hardening option would otherwise be
silently ignored in production.
"""

from __future__ import annotations

import getpass
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import ops_contract as oc

SYSTEMD = oc.REPO / "deploy" / "systemd"


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze not found: install the Debian package systemd")
    return path


def _localised(tmp_path: Path) -> list[Path]:
    anpr = Path(sys.executable).with_name("anpr")
    assert anpr.is_file(), "run `make setup`: the anpr console script is missing"
    user = getpass.getuser()
    units = []
    for path in sorted(SYSTEMD.glob("anpr-*")):
        text = path.read_text(encoding="utf-8")
        text = text.replace("/opt/anpr/venv/bin/anpr", str(anpr))
        text = text.replace("User=anpr", f"User={user}").replace("Group=anpr", f"Group={user}")
        target = tmp_path / path.name
        target.write_text(text, encoding="utf-8")
        units.append(target)
    return units


def _verify(systemd_analyze: str, units: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze, "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_units_verify_without_warnings(systemd_analyze: str, tmp_path: Path) -> None:
    units = _localised(tmp_path)
    names = {u.name for u in units}
    assert {"anpr-ingest@.service", "anpr-live.service", "anpr-maintain.service"} <= names
    assert "anpr-maintain.timer" in names
    # A template is verified through an instance of it.
    instances = [
        u.with_name("anpr-ingest@plates.service") if u.name == "anpr-ingest@.service" else u
        for u in units
    ]
    result = _verify(systemd_analyze, instances)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_a_misspelt_key_is_reported(systemd_analyze: str, tmp_path: Path) -> None:
    (service,) = [u for u in _localised(tmp_path) if u.name == "anpr-maintain.service"]
    service.write_text(service.read_text().replace("Nice=10", "Nicety=10"), encoding="utf-8")
    assert "Unknown key" in _verify(systemd_analyze, [service]).stderr
