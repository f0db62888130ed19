"""Locating the DuckDB extensions in their PyPI packages, offline."""

import stat
from pathlib import Path

import duckdb
import pytest

from pipeline.errors import MissingToolError
from pipeline.lake.extensions import extension_paths


def test_paths_exist_and_sqlite_has_its_entry_point_name(tmp_path: Path) -> None:
    paths = extension_paths(tmp_path)
    assert set(paths) == {"ducklake", "sqlite", "postgres", "httpfs"}
    assert all(p.is_file() for p in paths.values())
    assert (
        paths["sqlite"] == tmp_path / f"v{duckdb.__version__}" / "sqlite_scanner.duckdb_extension"
    )
    assert paths["ducklake"].name == "ducklake.duckdb_extension"
    # Like SQLite's, the PostgreSQL extension's entry point is named after its old scanner.
    assert paths["postgres"].name == "postgres_scanner.duckdb_extension"
    assert paths["httpfs"].name == "httpfs.duckdb_extension"
    # Whoever can write the cache chooses code we load: keep it private.
    assert stat.S_IMODE(paths["sqlite"].parent.stat().st_mode) == 0o700


def test_prepared_once_then_reused(tmp_path: Path) -> None:
    first = extension_paths(tmp_path)["sqlite"].stat()
    second = extension_paths(tmp_path)["sqlite"].stat()
    assert (first.st_ino, first.st_mtime_ns) == (second.st_ino, second.st_mtime_ns)


def test_stale_file_in_cache_is_replaced(tmp_path: Path) -> None:
    target = extension_paths(tmp_path)["sqlite"]
    target.unlink()
    target.write_bytes(b"not an extension")
    assert extension_paths(tmp_path)["sqlite"].stat().st_size > 1_000_000


def test_extensions_load_without_network(tmp_path: Path) -> None:
    paths = extension_paths(tmp_path)
    con = duckdb.connect(
        ":memory:",
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
    )
    for path in paths.values():
        con.execute(f"LOAD '{path}'")
    loaded = {
        name
        for (name,) in con.execute(
            "SELECT extension_name FROM duckdb_extensions() WHERE loaded"
        ).fetchall()
    }
    assert {"ducklake", "sqlite_scanner"} <= loaded


def test_missing_version_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A duckdb upgrade without the matching extension packages.
    monkeypatch.setattr(duckdb, "__version__", "0.0.1")
    with pytest.raises(MissingToolError) as info:
        extension_paths(tmp_path)
    assert info.value.tool == "duckdb-extension-ducklake"
    assert "==0.0.1" in info.value.hint
