"""matplotlib is the demo's alone: no other module of the package imports it."""

from __future__ import annotations

import subprocess
import sys

# Every module outside pipeline.demo (the ingest worker, the live app, access, the CLI...),
# found by file (pkgutil.walk_packages would import pipeline.demo itself to descend into it)
# and imported in a fresh interpreter; __main__ is left out because importing it runs the CLI.
_PROBE = """
import pathlib, sys
import pipeline
root = pathlib.Path(pipeline.__file__).parent
names = sorted(
    ".".join(("pipeline", *p.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
    for p in root.rglob("*.py")
    if p.parts[len(root.parts)] != "demo" and p.name != "__main__.py"
)
for name in names:
    __import__(name)
assert {"pipeline.ingest.worker", "pipeline.live.app", "pipeline.access.session"} <= set(names)
print(len(names), "matplotlib" in sys.modules)
"""


def test_no_runtime_module_imports_matplotlib() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert int(out[0]) > 50
    assert out[1] == "False"


def test_the_demo_does_import_it() -> None:
    """The probe above can see matplotlib: importing the demo's report loads it."""
    probe = "import sys, pipeline.demo.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
