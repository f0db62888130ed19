"""A state folder or activity-log path that cannot serve: one line naming it, exit 2, no trace.

Each command that uses them is run as a real process: a file where a folder should be, a
folder where the log should be, and (as a user without root's override, ``setpriv``) a state
folder or a log this user may not write.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from osusers import os_user, run_as

from pipeline.lake.catalog import Lake

COMMANDS = {
    "serve": ["serve"],
    "maintain": ["maintain", "--no-topic-check"],
    "ingest": ["ingest", "plates", "--until-idle", "1"],
    "audit verify": ["audit", "verify"],
}


@pytest.fixture
def base() -> Iterator[Path]:
    """A private folder with an empty lake and the state folder (0700), in a folder under /tmp
    that any user may pass (pytest's own is root's alone)."""
    outer = Path(tempfile.mkdtemp(prefix="anpr-paths-", dir="/tmp"))
    try:
        outer.chmod(0o755)
        root = outer / "base"
        root.mkdir(mode=0o700)
        with Lake.open(root / "lake"):
            pass
        (root / "lake").chmod(0o700)
        (root / "state").mkdir(mode=0o700)
        yield root
    finally:
        shutil.rmtree(outer, ignore_errors=True)


def _env(root: Path, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("ANPR_")},
        "ANPR_LAKE_PATH": str(root / "lake"),
        "ANPR_STATE_DIR": str(root / "state"),
        "ANPR_SERVE_SOCKET": str(root / "anpr.sock"),
        "ANPR_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # nothing may get as far as Kafka
        "ANPR_INGEST_METRICS_PORT": "0",
        **extra,
    }


def _one_line_exit_2(done: subprocess.CompletedProcess[str], *named: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if " INFO " not in line]
    assert len(lines) == 1, done.stderr
    assert all(part in lines[0] for part in named), lines[0]


def _anpr(env: dict[str, str], args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_file_where_the_state_folder_should_be(base: Path, command: str) -> None:
    shutil.rmtree(base / "state")
    (base / "state").write_text("")
    done = _anpr(_env(base), COMMANDS[command])
    _one_line_exit_2(done, str(base / "state"), "not a folder")


@pytest.mark.parametrize("command", ["serve", "maintain", "audit verify"])
@pytest.mark.parametrize("case", ["a folder", "under a file"])
def test_an_activity_log_path_that_cannot_be_a_file(base: Path, command: str, case: str) -> None:
    if case == "a folder":
        log = base / "logs"
        log.mkdir(mode=0o700)
        problem = "is a folder"
    else:
        (base / "logs").write_text("")
        log = base / "logs" / "activity.jsonl"
        problem = "not a folder"
    # Clients ignore [access] (and say so): `audit verify` is given the log with --log.
    if command == "audit verify":
        env, args = _env(base), [*COMMANDS[command], "--log", str(log)]
    else:
        env, args = _env(base, ANPR_ACCESS_ACTIVITY_LOG=str(log)), COMMANDS[command]
    _one_line_exit_2(_anpr(env, args), str(base / "logs"), problem)


@pytest.fixture
def user(base: Path) -> Iterator[str]:
    """An OS user owning ``base`` (a user whom write permission bits bind, unlike root)."""
    with os_user("anpr-paths") as name:
        for path in [base, *base.rglob("*")]:
            shutil.chown(path, name, name)
        (base / "home").mkdir(mode=0o700)
        shutil.chown(base / "home", name, name)
        yield name


@pytest.mark.parametrize("command", ["serve", "maintain", "ingest"])
def test_a_state_folder_this_user_cannot_write(base: Path, user: str, command: str) -> None:
    (base / "state").chmod(0o500)
    done = run_as(user, *COMMANDS[command], home=base / "home", env=_env(base), timeout=120)
    _one_line_exit_2(done, str(base / "state"), "not writable")


@pytest.mark.parametrize("command", ["serve", "maintain"])
@pytest.mark.parametrize("what", ["the log", "its folder"])
def test_an_activity_log_this_user_cannot_write(
    base: Path, user: str, command: str, what: str
) -> None:
    folder = base / "state" / "access"
    folder.mkdir(mode=0o700)
    log = folder / "activity.jsonl"
    log.write_text("")
    for path in (folder, log):
        shutil.chown(path, user, user)
    (log if what == "the log" else folder).chmod(0o400 if what == "the log" else 0o500)
    done = run_as(user, *COMMANDS[command], home=base / "home", env=_env(base), timeout=120)
    # The service finds the folder first (its key folder too); the path names it either way.
    _one_line_exit_2(done, str(log if what == "the log" else folder), "not writable")
