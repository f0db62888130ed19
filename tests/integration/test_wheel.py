"""The built wheel, installed away from the checkout, finds its own site registry and schemas.

The wheel is built from a copy of the package sources, installed (without dependencies) into a
fresh venv, and run from a directory outside the checkout. The dependencies come from this
project's venv through a ``.pth`` line: a directory named in a ``.pth`` file is put on
``sys.path`` but its own ``.pth`` files are not run, so the checkout's editable-install hook
stays out and ``pipeline`` can only be the installed copy. pip builds the wheel as
``pip install .`` does (the Containerfile): in an isolated environment with setuptools from the
package index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.integration.conftest import REPO

pytestmark = pytest.mark.slow

_PROBE = """
import pipeline
from pipeline.codec.vendors import VENDOR_RULES
from pipeline.kafka.local import DEFAULT_POM
from pipeline.reference.sites import DEFAULT_REGISTRY, load_registry
from pipeline.schema_files import SCHEMA_DIR
registry = load_registry(DEFAULT_REGISTRY, VENDOR_RULES)
print(pipeline.__file__, DEFAULT_REGISTRY, SCHEMA_DIR, DEFAULT_POM, len(registry.sites), sep="\\n")
"""


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done.stdout


def _data_files(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix != ".pyc"
    )


def test_an_installed_wheel_finds_its_registry_and_schemas(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANPR_", "PYTHON"))}
    src = tmp_path / "src"
    for name in ("pyproject.toml", "README.md"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(
        REPO / "pipeline", src / "pipeline", ignore=shutil.ignore_patterns("__pycache__")
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(src)], tmp_path, env)
    (wheel,) = (tmp_path / "dist").glob("anpr_pipeline-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
             tmp_path, env).strip()
    )  # fmt: skip
    (site / "project-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run([*pip, "--python", str(python), "install", "--no-deps", "-q", str(wheel)], tmp_path, env)

    work = tmp_path / "elsewhere"  # cwd outside the checkout: nothing found relative to it
    work.mkdir()
    env["ANPR_STATE_DIR"] = str(work / "state")
    anpr = str(venv / "bin" / "anpr")
    _run([anpr, "schemas", "check"], work, env)
    assert '"sites_registry"' in _run([anpr, "config"], work, env)

    module, registry, schemas, pom, sites = _run([str(python), "-c", _PROBE], work, env).split()
    package = site / "pipeline"
    assert Path(module) == package / "__init__.py"
    assert Path(registry) == package / "data" / "sites.toml"
    assert Path(schemas) == package / "data" / "schemas"
    assert Path(pom) == package / "data" / "kafka" / "pom.xml"
    # Every data file of the checkout is in the wheel (package-data in pyproject.toml).
    assert _data_files(package / "data") == _data_files(REPO / "pipeline" / "data")
    assert int(sites) > 0
    assert not Path(registry).is_relative_to(REPO)
