"""Find the DuckDB extensions the lake needs in their PyPI packages, so nothing is downloaded.

``duckdb-extension-ducklake`` and ``duckdb-extension-sqlite`` ship the extension binaries for
exactly one DuckDB version under ``<package>/extensions/v<version>/``. DuckDB loads an extension
by path, but it derives the entry point from the file name: the SQLite extension's entry point is
``sqlite_scanner_init``, so its file has to be called ``sqlite_scanner.duckdb_extension``. We
link (or copy) it under that name into a private cache directory once.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import uuid
from pathlib import Path

import duckdb

from pipeline.errors import MissingToolError

logger = logging.getLogger(__name__)

# extension name -> (PyPI distribution, import package, file name inside the package)
_PACKAGED: dict[str, tuple[str, str, str]] = {
    "ducklake": ("duckdb-extension-ducklake", "duckdb_extension_ducklake", "ducklake"),
    "sqlite": ("duckdb-extension-sqlite", "duckdb_extension_sqlite", "sqlite"),
    # A PostgreSQL catalog and S3 data files (pipeline/lake/backend.py).
    "postgres": ("duckdb-extension-postgres", "duckdb_extension_postgres", "postgres"),
    "httpfs": ("duckdb-extension-httpfs", "duckdb_extension_httpfs", "httpfs"),
}
# File names DuckDB needs to find the right entry point (see the module docstring).
_LOAD_NAMES = {
    "ducklake": "ducklake",
    "sqlite": "sqlite_scanner",
    "postgres": "postgres_scanner",
    "httpfs": "httpfs",
}
_SUFFIX = ".duckdb_extension"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/anpr/duckdb-extensions`` (``~/.cache/...`` when unset).

    Per user rather than under /tmp: whoever can write this folder chooses code we load.
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "anpr" / "duckdb-extensions"


def _packaged_file(name: str, version: str) -> Path:
    dist, package, stem = _PACKAGED[name]
    hint = f"pip install {dist}=={version} (it must equal the installed duckdb version)"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingToolError(dist, hint)
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "extensions" / f"v{version}" / f"{stem}{_SUFFIX}"
    if not path.is_file():
        raise MissingToolError(dist, hint)
    return path


def _same_file_content(a: Path, b: Path) -> bool:
    """Cheap identity check: a hard link or an earlier copy2 keeps size and mtime."""
    try:
        sa, sb = a.stat(), b.stat()
    except FileNotFoundError:
        return False
    return sa.st_size == sb.st_size and sa.st_mtime_ns == sb.st_mtime_ns


def _place(source: Path, target: Path) -> None:
    """Put ``source`` at ``target`` atomically: other processes may be doing the same."""
    if _same_file_content(source, target):
        return
    tmp = target.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex}{_SUFFIX}")
    try:
        try:
            # A hard link costs no space; it fails across file systems, then we copy.
            os.link(source, tmp)
        except OSError:
            shutil.copy2(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("prepared DuckDB extension %s from %s", target, source)


def extension_paths(cache_dir: Path | None = None) -> dict[str, Path]:
    """Paths to ``LOAD`` for the lake's extensions (ducklake, sqlite, postgres, httpfs).

    >>> paths = extension_paths()  # doctest: +SKIP
    >>> con.execute(f"LOAD '{paths['sqlite']}'")  # doctest: +SKIP
    """
    version = duckdb.__version__
    cache = (cache_dir or default_cache_dir()) / f"v{version}"
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in _PACKAGED:
        source = _packaged_file(name, version)
        load_name = f"{_LOAD_NAMES[name]}{_SUFFIX}"
        if source.name == load_name:
            paths[name] = source
        else:
            target = cache / load_name
            _place(source, target)
            paths[name] = target
    return paths
