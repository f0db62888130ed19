"""Running ``anpr`` as other OS users: create one (``useradd``), run as it (``setpriv``).

Only root can do either; CI runs the tests as root, anywhere else these tests fail rather than
skip.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT_NEEDED = (
    "these tests create OS users (useradd) and run commands as them (setpriv): run them as "
    "root, as CI does"
)
REPO = Path(__file__).resolve().parents[2]


def executable_by_all(path: Path) -> bool:
    real = path.resolve()
    folders_open = all(p.stat().st_mode & 0o001 for p in real.parents)
    return folders_open and bool(real.stat().st_mode & 0o001)


@functools.cache
def interpreter() -> tuple[str, dict[str, str]]:
    """A Python the test's users can run, and the environment that finds our packages.

    The venv's own interpreter if every user may execute it; else (a venv over a Python under
    /root, say) the system's python3.11 with the venv's packages and the repository on the
    path: the pipeline starts child processes with ``sys.executable``, so it must be runnable
    by the user who runs the pipeline."""
    if executable_by_all(Path(sys.executable)):
        return sys.executable, {}
    system = shutil.which("python3.11", path="/usr/local/bin:/usr/bin")
    if system is None or not executable_by_all(Path(system)):
        pytest.fail(f"{sys.executable} is not executable by other users, and no python3.11 is")
    packages = sysconfig.get_paths()["purelib"]
    return system, {"PYTHONPATH": f"{REPO}:{packages}"}


def run_as(
    user: str,
    *args: str,
    home: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float = 180,
    python: tuple[str, ...] = ("-m", "pipeline"),
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pipeline ARGS`` (or ``python PYTHON``) as ``user``, with a clean
    environment: a login would give them no more than this."""
    base_env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "XDG_CACHE_HOME": str(home / "cache"),
        **interpreter()[1],
    }
    return subprocess.run(
        [
            "setpriv",
            f"--reuid={user}",
            f"--regid={user}",
            "--init-groups",
            interpreter()[0],
            *python,
            *args,
        ],
        env={**base_env, **(env or {})},
        cwd=cwd or home,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def os_user(prefix: str) -> Iterator[str]:
    """A new OS user (no home, no shell) for the block; removed after it."""
    if os.geteuid() != 0:
        pytest.fail(ROOT_NEEDED)
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        ["useradd", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
