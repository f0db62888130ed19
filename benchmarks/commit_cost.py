"""Commit cost over a lake's life: the first commits against commits after thousands.

One writer commits small batches (``--rows`` reads over 4 partitions, so one data file per
commit, as a live worker at the end of its partitions does) into a fresh lake through
``Lake.write_batch`` and times each commit. The cost of the first ``--window`` commits is
compared with the cost of ``--window`` commits after ``--commits``: a commit whose cost grows
with the number of data files in the lake shows a ratio above 1. ``--catalog`` says where the
lake's catalog is: a SQLite file (one machine, the default) or a local PostgreSQL server
started for the run (several machines; ``make tools`` installs it). The ``--legacy`` form
times the offsets bookkeeping the lake used before (``DELETE ... WHERE`` and ``INSERT`` of
the partitions' offset rows, fence rewritten by every commit) on the same kind of lake, for
the record.

    .venv/bin/python -m benchmarks.commit_cost                       # 10,000 commits
    .venv/bin/python -m benchmarks.commit_cost --catalog postgres    # on PostgreSQL
    .venv/bin/python -m benchmarks.commit_cost --commits 1000        # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from benchmarks.common import say
from pipeline.cluster import postgres
from pipeline.config import load_settings
from pipeline.lake.catalog import CATALOG, FENCE_TABLE, OFFSETS_TABLE, Lake
from pipeline.schemas import CANDIDATES, PLATE_READS, UTC_TS

GROUP, TOPIC, PARTITIONS = "bench-commit", "bench.commit", 4
CATALOGS = ("sqlite", "postgres")


def rows(n: int, start: int, captured: datetime) -> pa.Table:
    """``n`` synthetic reads, partition ``i % 4``, offsets ``start // 4 ..`` per partition."""
    partition = [i % PARTITIONS for i in range(n)]
    offset = [(start + i) // PARTITIONS for i in range(n)]
    return pa.table(
        {
            "event_id": [f"ev-commit-{start + i:09d}" for i in range(n)],
            "site_id": ["NO-SVINESUND"] * n,
            "camera_id": ["CAM-1"] * n,
            "lane": pa.array([1] * n, pa.int16()),
            "direction": ["entry"] * n,
            "captured_at": pa.array([captured] * n, UTC_TS),
            "plate": [f"ZZ{i % 90000 + 10000}" for i in range(n)],
            "plate_raw": [f"ZZ {i % 90000 + 10000}" for i in range(n)],
            "plate_country": ["NO"] * n,
            "confidence": pa.array([0.9] * n, pa.float32()),
            "vehicle_class": ["car"] * n,
            "source_format": ["canonical"] * n,
            "passage_id": pa.array([None] * n, pa.int64()),
            "candidates": pa.array([None] * n, CANDIDATES),
            "ingested_at": pa.array([captured] * n, UTC_TS),
            "source_partition": pa.array(partition, pa.int32()),
            "source_offset": pa.array(offset, pa.int64()),
        },
        schema=PLATE_READS,
    )


def legacy_write(lake: Lake, table: pa.Table, next_offsets: Mapping[int, int]) -> None:
    """The bookkeeping before ADR 0006, same transaction shape (no fencing check needed)."""
    parts = sorted(next_offsets)
    with lake.transaction():
        lake.execute(
            f'SELECT "partition", next_offset FROM {CATALOG}.{OFFSETS_TABLE} '
            "WHERE consumer_group = ? AND topic = ?",
            [GROUP, TOPIC],
        ).fetchall()
        lake.insert_rows("plate_reads", table)
        lake.execute(
            f"DELETE FROM {CATALOG}.{OFFSETS_TABLE} WHERE consumer_group = ? AND topic = ? "
            'AND "partition" IN (SELECT unnest(?::INTEGER[]))',
            [GROUP, TOPIC, parts],
        )
        lake.execute(
            f"INSERT INTO {CATALOG}.{OFFSETS_TABLE} "
            "SELECT ?, ?, unnest(?::INTEGER[]), unnest(?::BIGINT[]), now()",
            [GROUP, TOPIC, parts, [next_offsets[p] for p in parts]],
        )
        lake.execute(
            f"UPDATE {CATALOG}.{FENCE_TABLE} SET commits = commits + 1, updated_at = now()"
        )


@contextmanager
def fresh_lake(path: Path, catalog: str) -> Iterator[Lake]:
    """A new lake under ``path`` with its catalog in SQLite, or in a PostgreSQL server started
    for the block (and removed after it)."""
    if catalog == "sqlite":
        with Lake.open(path) as lake:
            yield lake
        return
    state = path / "pg-state"
    state.mkdir(parents=True, mode=0o700)
    server = postgres.start(state)
    try:
        database = f"bench_{uuid.uuid4().hex[:12]}"
        postgres.create_database(server, database)
        env = {
            "ANPR_LAKE_PATH": str(path / "lake"),
            "ANPR_STATE_DIR": str(path / "state"),
            "ANPR_LAKE_CATALOG": f"postgres:{server.conninfo(database)}",
            "ANPR_LAKE_CATALOG_PASSWORD_FILE": str(server.password_file),
        }
        with Lake.from_settings(load_settings(None, env=env).lake) as lake:
            yield lake
    finally:
        postgres.stop(state, immediate=True)
        postgres.remove(state)


@dataclass(frozen=True)
class CommitCost:
    form: str
    catalog: str
    commits: int
    rows_per_commit: int
    first_ms: float  # median of the first `window` commits
    late_ms: float  # median of `window` commits after `commits`
    window: int

    @property
    def ratio(self) -> float:
        return self.late_ms / self.first_ms

    def line(self) -> str:
        return (
            f"commit cost ({self.form}, {self.catalog} catalog, {self.rows_per_commit} "
            f"rows/commit): first "
            f"{self.window} {self.first_ms:.1f} ms, after {self.commits:,} "
            f"{self.late_ms:.1f} ms (median): {self.ratio:.2f}x"
        )


def measure(
    path: Path,
    *,
    commits: int,
    rows_per_commit: int,
    window: int,
    legacy: bool = False,
    catalog: str = "sqlite",
) -> CommitCost:
    """Time ``commits + window`` commits into a fresh lake at ``path`` (catalog: one of
    :data:`CATALOGS`)."""
    captured = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    times: list[float] = []
    positions: dict[int, int | None] = dict.fromkeys(range(PARTITIONS))
    write: Callable[[Lake, pa.Table, dict[int, int]], Any]
    with fresh_lake(path, catalog) as lake:
        if legacy:
            write = legacy_write
        else:

            def write(lake: Lake, table: pa.Table, nxt: dict[int, int]) -> Any:
                return lake.write_batch(
                    "plate_reads",
                    table,
                    consumer_group=GROUP,
                    topic=TOPIC,
                    next_offsets=nxt,
                    expected={p: positions[p] for p in nxt},
                )

        for n in range(commits + window):
            start = n * rows_per_commit
            table = rows(rows_per_commit, start, captured)
            nxt = {p: (start + rows_per_commit + PARTITIONS - 1 - p) // PARTITIONS for p in
                   range(PARTITIONS)}  # fmt: skip
            began = time.perf_counter()
            write(lake, table, nxt)
            times.append(time.perf_counter() - began)
            positions.update(nxt)
            if (n + 1) % max(1, commits // 5) == 0:
                say(f"  {'legacy' if legacy else 'current'}: {n + 1:,} commits")
    return CommitCost(
        "legacy offsets" if legacy else "write_batch",
        catalog,
        commits,
        rows_per_commit,
        statistics.median(times[:window]) * 1000,
        statistics.median(times[commits:]) * 1000,
        window,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--rows", type=int, default=40, help="rows per commit")
    parser.add_argument(
        "--catalog", choices=CATALOGS, default="sqlite", help="where the lake's catalog is"
    )
    parser.add_argument("--legacy", action="store_true", help="also time the legacy form")
    parser.add_argument("--quick", action="store_true", help="1,000 commits")
    args = parser.parse_args(argv)
    if args.quick:
        args.commits = 1_000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="anpr-bench-commit-") as folder:
        forms = [False, True] if args.legacy else [False]
        for legacy in forms:
            path = Path(folder) / ("legacy" if legacy else "lake")
            say(f"{args.commits + args.window:,} commits into a fresh lake")
            cost = measure(
                path,
                commits=args.commits,
                rows_per_commit=args.rows,
                window=args.window,
                legacy=legacy,
                catalog=args.catalog,
            )
            results.append(cost)
            print(cost.line(), f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    print(json.dumps([vars(r) | {"ratio": r.ratio} for r in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
