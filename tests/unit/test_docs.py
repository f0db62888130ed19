"""The docs follow the tree: paths they name exist, the ADR index lists every ADR, and the
README's layout section names every part of the package."""

from __future__ import annotations

import re

from tests.ops_contract import REPO

_DOCS = sorted(
    [REPO / "README.md", *(REPO / "docs").rglob("*.md"), *(REPO / "deploy").rglob("*.md")]
)
# A repository path as the docs write it: `pipeline/lake/tables.py`, schemas/*.json, ...
# (not one inside a longer path such as ../../pipeline/... or /etc/anpr/...).
_PATH = re.compile(r"(?<![\w/.-])((?:pipeline|tests|benchmarks|deploy|docs)/[\w./*-]*[\w*/])")
_ADR = re.compile(r"^\d{4}-[\w-]+\.md$")


def _layout_block() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Repository layout\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1]


def test_every_path_the_docs_name_exists() -> None:
    missing = []
    for doc in _DOCS:
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
            for match in _PATH.finditer(line):
                path = match.group(1)
                found = any(REPO.glob(path)) if "*" in path else (REPO / path).exists()
                if not found:
                    missing.append(f"{doc.relative_to(REPO)}:{number}: {path}")
    assert missing == []


def test_the_adr_index_lists_every_adr() -> None:
    adr_dir = REPO / "docs" / "adr"
    index = (adr_dir / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\((\d{4}-[\w-]+\.md)\)", index))
    on_disk = {p.name for p in adr_dir.iterdir() if _ADR.match(p.name)}
    assert len(on_disk) >= 3
    assert linked == on_disk


def test_the_readme_layout_names_every_part_of_the_package() -> None:
    block = _layout_block()
    package = REPO / "pipeline"
    parts = [
        f"{p.name}/" if p.is_dir() else p.name
        for p in package.iterdir()
        if p.name not in {"__init__.py", "__main__.py", "__pycache__"}
        and (p.is_dir() or p.suffix == ".py")
    ]
    assert "cli/" in parts
    unnamed = sorted(part for part in parts if not re.search(rf"(?m)^\s+{re.escape(part)}", block))
    assert unnamed == []
