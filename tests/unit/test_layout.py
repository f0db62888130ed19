"""The package layout: every module of ``pipeline`` imports, and no two import each other.

Imports are read with :mod:`ast`, at any depth (a lazy import inside a function is still a
dependency); those under ``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pipeline"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(module: str, path: Path) -> set[str]:
    """The ``pipeline`` modules that ``module`` imports, resolved to modules that exist."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            # "from pipeline.codec import vendors" imports a module, not a name.
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: _imported(module, path) for module, path in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of modules, or None (depth-first, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := walk(target)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)) is not None:
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_pipeline() -> None:
    assert _cycle(GRAPH) is None


def test_a_package_import_counts_for_its_modules() -> None:
    # Guards the resolver: these edges exist, so a cycle through them would be seen.
    assert "pipeline.codec.vendors.openalpr" in GRAPH["pipeline.codec.vendors"]
    assert "pipeline.reference.sites" in GRAPH["pipeline.codec.vendors._shared"]


def test_reference_data_is_below_the_codecs() -> None:
    upward = {m: GRAPH[m] for m in GRAPH if m.startswith("pipeline.reference")}
    assert {
        m: sorted(t for t in targets if t.startswith("pipeline.codec"))
        for m, targets in upward.items()
        if any(t.startswith("pipeline.codec") for t in targets)
    } == {}


# __main__ runs the CLI when imported; it is parsed above like every module.
@pytest.mark.parametrize("module", sorted(set(MODULES) - {"pipeline.__main__"}))
def test_every_module_imports(module: str) -> None:
    assert importlib.import_module(module).__name__ == module


def test_test_modules_have_unique_basenames() -> None:
    """pytest imports test files by basename (rootdir-relative 'prepend' mode): two files of one
    name anywhere under tests/ stop the whole run at collection, so keep them unique."""
    seen: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
