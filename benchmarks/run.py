"""Run the benchmarks (``make bench``): every program in this folder, one after the other.

    .venv/bin/python benchmarks/run.py                      # all of them, default settings
    .venv/bin/python benchmarks/run.py hot_path --quick     # one, with its own arguments

A benchmark is any module here that is not a helper below; each runs as
``python -m benchmarks.<name>`` from the repository root, so this file also works as
``python benchmarks/run.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Modules that other benchmarks import or start; not benchmarks themselves.
HELPERS = frozenset({"run", "common", "feed", "naive", "faust_baseline", "commit_cost"})


def benchmarks() -> list[str]:
    return sorted(
        p.stem for p in HERE.glob("*.py") if p.stem not in HELPERS and not p.stem.startswith("_")
    )


def main(argv: list[str]) -> int:
    names = benchmarks()
    if argv and argv[0] in names:
        plan = [(argv[0], argv[1:])]
    elif argv:
        print(f"usage: run.py [{'|'.join(names)} [ARGS...]]", file=sys.stderr)
        return 2
    else:
        plan = [(name, []) for name in names]
    failed = []
    for name, args in plan:
        print(f"== benchmarks.{name}", flush=True)
        command = [sys.executable, "-m", f"benchmarks.{name}", *args]
        if subprocess.run(command, cwd=HERE.parent, check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
