"""anpr maintain on real DuckLake lakes: months of data, retention month by month, physical
purge proven byte by byte, statistics kept, readers during compaction and retention."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from lakehelp import BATCHES, LAST_DAY, PER_BATCH, files_holding, write_months

from pipeline.access.audit import ActivityLog
from pipeline.config import Settings, load_settings
from pipeline.lake.catalog import CATALOG, Lake
from pipeline.lake.tables import PERSONAL_DATA_TABLES
from pipeline.maintain.inventory import files_by_day, table_exists
from pipeline.maintain.retention import cutoff_for
from pipeline.maintain.run import MaintainOptions, maintain


def _settings(root: Path, **extra: str) -> Settings:
    return load_settings(
        None,
        env={"ANPR_LAKE_PATH": str(root / "lake"), "ANPR_STATE_DIR": str(root / "state"), **extra},
    )


def _stats(lake: Lake) -> dict[str, dict[date, list[tuple[object, ...]]]]:
    """Statistics rows per period, computed_at left out (it is the wall clock of the run)."""
    out: dict[str, dict[date, list[tuple[object, ...]]]] = {}
    for table, period in (("traffic_stats", "day"), ("trip_stats", "week_start")):
        rows = lake.con.execute(
            f"SELECT * EXCLUDE (computed_at) FROM {table} ORDER BY ALL"
        ).fetchall()
        col = [d[0] for d in lake.con.description or []].index(period)
        by: dict[date, list[tuple[object, ...]]] = {}
        for row in rows:
            by.setdefault(row[col], []).append(tuple(row))
        out[table] = by
    return out


def _rows_past_limit(lake: Lake, as_of: datetime) -> dict[str, int]:
    """Rows collected at or before the cutoff, in every personal-data table the lake has."""
    out = {}
    for table, column in PERSONAL_DATA_TABLES.items():
        if not table_exists(lake.con, CATALOG, table):
            continue
        cut = cutoff_for(table, column, 6, as_of)
        (n,) = lake.con.execute(
            f'SELECT count(*) FROM {table} WHERE "{column}" <= ?', [cut.cutoff]
        ).fetchone() or (0,)
        out[table] = int(n)
    return out


@pytest.fixture(scope="module")
def months_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake with reads spread over 8 months, written through Lake.write_batch (ingest's
    commit); copy it before changing it."""
    root = tmp_path_factory.mktemp("months") / "lake"
    write_months(root)
    return root


def _copy(source: Path, root: Path) -> Path:
    subprocess.run(["cp", "-a", str(source), str(root / "lake")], check=True)
    return root


def test_month_by_month_nothing_past_the_limit_in_any_byte_and_statistics_stay(
    months_lake: Path, tmp_path: Path
) -> None:
    root = _copy(months_lake, tmp_path)
    settings = _settings(root)
    lake_dir = root / "lake"
    total = len(BATCHES) * PER_BATCH
    seen: dict[str, dict[date, list[tuple[object, ...]]]] = {}
    runs = [datetime(2026, m, 1, 3, tzinfo=UTC) for m in range(7, 13)]
    runs += [datetime(2027, 1, 1, 3, tzinfo=UTC), datetime(2027, 2, 28, 12, tzinfo=UTC)]
    runs += [datetime(2027, 3, 2, 3, tzinfo=UTC)]
    for as_of in runs:
        report = maintain(settings, MaintainOptions(as_of=as_of, check_topics=False))
        assert not report.failed, report
        cut = cutoff_for("plate_reads", "captured_at", 6, as_of)
        expired = [b for b in BATCHES if b.day < cut.first_kept_day]
        kept = [b for b in BATCHES if b.day >= cut.first_kept_day]
        with Lake.open(lake_dir) as lake:
            assert set(_rows_past_limit(lake, as_of).values()) == {0}
            (left,) = lake.con.execute("SELECT count(*) FROM plate_reads").fetchone() or (0,)
            assert left == total - len(expired) * PER_BATCH
            (people,) = lake.con.execute("SELECT count(*) FROM passengers").fetchone() or (0,)
            assert people == sum(1 for b in kept if b.person is not None)
            stats = _stats(lake)
            compacted = files_by_day(lake.con, "plate_reads")
        # Closed days that are kept were compacted into one file each.
        closed = as_of - timedelta(days=1, hours=2)
        assert all(compacted[b.day].files == 1 for b in kept if b.day < closed.date())
        # Every expired day's statistics are there, exactly as before it expired.
        for table, periods in stats.items():
            for period, rows in seen.get(table, {}).items():
                if period < cut.first_kept_day - timedelta(days=7):
                    assert periods.get(period) == rows, (table, period)
        assert {b.day for b in expired} <= set(stats["traffic_stats"])
        seen = stats
        # Not one byte of an expired plate, event id, surname, document number or birth date
        # (the catalog's statistics) anywhere under the lake; kept ones are found (the scan
        # works).
        needles = [n for b in expired for n in b.needles]
        probe = [n for b in kept[:1] + kept[-1:] for n in b.needles[:1]]
        found = files_holding(lake_dir, needles + probe)
        assert {n: found[n] for n in needles if n in found} == {}, as_of
        assert set(probe) <= set(found)
        if as_of.date() == date(2027, 2, 28):
            # 2026-08-30 + 6 months = 2027-02-28 (clamped): its reads are due that day.
            assert LAST_DAY in {b.day for b in expired}
            assert not kept
    prom = (root / "state" / "metrics" / "maintain.prom").read_text()
    assert 'anpr_maintenance_last_success_timestamp_seconds{step="purge"}' in prom
    reports = sorted((lake_dir / "reports").glob("maintain-*.json"))
    assert len(reports) == len(runs)
    assert files_holding(lake_dir / "reports", [n for b in BATCHES for n in b.needles]) == {}


def test_dry_run_changes_nothing(months_lake: Path, tmp_path: Path) -> None:
    root = _copy(months_lake, tmp_path)
    before = {
        p.relative_to(root): p.read_bytes() for p in (root / "lake").rglob("*") if p.is_file()
    }
    options = MaintainOptions(
        as_of=datetime(2026, 12, 1, 3, tzinfo=UTC), dry_run=True, check_topics=False
    )
    report = maintain(_settings(root), options)
    after = {p.relative_to(root): p.read_bytes() for p in (root / "lake").rglob("*") if p.is_file()}
    assert after.keys() == before.keys()
    assert [k for k in before if before[k] != after[k] and not k.name.endswith("-wal")] == []
    deleted = report.steps["retention"]["plate_reads"]["deleted_per_day"]
    assert sum(deleted.values()) > 0
    assert not (root / "state" / "metrics" / "maintain.prom").exists()


def test_activity_log_entries_past_their_limit_go_with_the_run(
    months_lake: Path, tmp_path: Path
) -> None:
    root = _copy(months_lake, tmp_path)
    settings = _settings(root, ANPR_ACCESS_LOG_RETENTION_MONTHS="3")
    log = ActivityLog.from_settings(settings)
    assert log.path == root / "state" / "access" / "activity.jsonl"
    for at in ("2026-01-15T10:00:00+00:00", "2026-10-01T10:00:00+00:00"):
        log.append({"kind": "query.end", "at": at, "user": "ann", "rows": 1})
    as_of = datetime(2026, 12, 1, 3, tzinfo=UTC)
    report = maintain(settings, MaintainOptions(as_of=as_of, only=frozenset({"retention"}),
                                                check_topics=False))  # fmt: skip
    assert report.steps["activity_log"]["dropped"] == 1
    kinds = [e["kind"] for e in log.entries()]
    assert kinds == ["query.end", "audit.retention"]
    assert log.verify().ok
    prom = (root / "state" / "metrics" / "maintain.prom").read_text()
    assert 'anpr_rows_deleted_total{reason="retention",table="activity_log"} 1.0' in prom


# -- readers during compaction and retention ---------------------------------------------

_READER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pipeline.lake.catalog import Lake
    lake = Lake.open(Path(sys.argv[1]), read_only=True)
    stop = Path(sys.argv[2])
    while not stop.exists():
        try:
            n, distinct = lake.con.execute(
                "SELECT count(*), count(DISTINCT event_id) FROM plate_reads").fetchone()
            print(n, distinct, flush=True)
        except Exception as exc:
            print("error", type(exc).__name__, str(exc).replace(chr(10), " ")[:200], flush=True)
    """
)


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    out, stop = tmp_path / "reader.out", tmp_path / "reader.stop"
    yield out, stop
    stop.touch()


def test_a_reader_sees_only_committed_totals_during_compaction_and_retention(
    months_lake: Path, tmp_path: Path, reader: tuple[Path, Path]
) -> None:
    root = _copy(months_lake, tmp_path)
    out, stop = reader
    as_of = datetime(2026, 10, 1, 3, tzinfo=UTC)
    cut = cutoff_for("plate_reads", "captured_at", 6, as_of)
    total = len(BATCHES) * PER_BATCH
    # Retention deletes one day per transaction, oldest first: the committed totals.
    expired_days = sorted({b.day for b in BATCHES if b.day < cut.first_kept_day})
    per_day = {d: PER_BATCH * sum(1 for b in BATCHES if b.day == d) for d in expired_days}
    totals = {total}
    for i in range(1, len(expired_days) + 1):
        totals.add(total - sum(per_day[d] for d in expired_days[:i]))
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", _READER, str(root / "lake"), str(stop)],
            stdout=sink,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(Path.cwd())},
        )
        try:
            _wait_for(lambda: out.read_text().count("\n") >= 1, proc)
            ready = out.read_text().count("\n")
            report = maintain(
                _settings(root),
                MaintainOptions(
                    as_of=as_of, only=frozenset({"compact", "retention"}), check_topics=False
                ),
            )
            during = out.read_text().count("\n") - ready
        finally:
            stop.touch()
            proc.wait(timeout=60)
    assert not report.failed
    assert report.steps["compact"]["days"] > 0
    lines = out.read_text().splitlines()
    counts = [tuple(int(x) for x in line.split()) for line in lines if line[0].isdigit()]
    errors = [line for line in lines if not line[0].isdigit()]
    assert during >= 3, "the reader did not query while maintenance ran"
    assert {n for n, _ in counts} <= totals
    assert all(n == distinct for n, distinct in counts)  # never a row twice
    assert counts[-1][0] == min(totals)
    # A snapshot whose files the purge removed fails (and is re-run), it never miscounts.
    assert all("No such file" in e or "IO Error" in e for e in errors), errors[:3]


def _wait_for(ready: object, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    import time  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(ready) and ready():
            return
        if proc.poll() is not None:
            raise AssertionError(f"reader exited {proc.returncode}: {proc.stderr!r}")
        time.sleep(0.05)
    raise AssertionError("reader never started")
