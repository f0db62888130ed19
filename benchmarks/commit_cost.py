"""Commit cost over a lake's life: the first commits against commits after thousands.

One writer commits small batches (``--rows`` reads over 4 partitions, so one data file per
commit, as a live worker at the end of its partitions does) into a fresh lake through
``Lake.write_batch`` and times each commit. The cost of the first ``--window`` commits is
compared with the cost of ``--window`` commits after ``--commits``: a commit whose cost grows
with the number of data files in the lake shows a ratio above 1. The ``--legacy`` form times
the offsets bookkeeping the lake used before (``DELETE ... WHERE`` and ``INSERT`` of the
partitions' offset rows, fence rewritten by every commit) on the same kind of lake, for the
record.

    .venv/bin/python -m benchmarks.run commit_cost                 # 10,000 commits
    .venv/bin/python -m benchmarks.run commit_cost --commits 1000  # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from benchmarks.common import say
from pipeline.lake.catalog import CATALOG, FENCE_TABLE, OFFSETS_TABLE, Lake
from pipeline.schemas import CANDIDATES, PLATE_READS, UTC_TS

GROUP, TOPIC, PARTITIONS = "bench-commit", "bench.commit", 4


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


@dataclass(frozen=True)
class CommitCost:
    form: str
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
            f"commit cost ({self.form}, {self.rows_per_commit} rows/commit): first "
            f"{self.window} {self.first_ms:.1f} ms, after {self.commits:,} "
            f"{self.late_ms:.1f} ms (median): {self.ratio:.2f}x"
        )


def measure(
    path: Path, *, commits: int, rows_per_commit: int, window: int, legacy: bool = False
) -> CommitCost:
    """Time ``commits + window`` commits into a fresh lake at ``path``."""
    captured = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    times: list[float] = []
    positions: dict[int, int | None] = dict.fromkeys(range(PARTITIONS))
    write: Callable[[Lake, pa.Table, dict[int, int]], Any]
    with Lake.open(path) as lake:
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
            )
            results.append(cost)
            print(cost.line(), f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    print(json.dumps([vars(r) | {"ratio": r.ratio} for r in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
