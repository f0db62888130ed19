"""``anpr maintain`` as a real process: SIGKILL inside each step then a rerun ends where an
uninterrupted run ends; limits above 6 months refused; --dry-run, --only, progress."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import RunAnpr
from lakehelp import BATCHES, files_holding, spellings, write_months
from rich.console import Console

from pipeline.access.audit import ActivityLog
from pipeline.config import load_settings
from pipeline.lake.catalog import Lake
from pipeline.maintain.purge import META
from pipeline.maintain.retention import cutoff_for
from pipeline.maintain.run import MaintainOptions, maintain
from pipeline.pseudonym import read_key

AS_OF = "2026-12-01T03:00:00+00:00"


@pytest.fixture(scope="module")
def months_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-months") / "lake"
    write_months(root)
    return root


def _env(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ANPR_LAKE_PATH": str(root / "lake"),
        "ANPR_STATE_DIR": str(root / "state"),
        # No concurrent writer in these tests: files a killed run left are orphans at once.
        "ANPR_MAINTAIN_ORPHAN_GRACE_S": "0",
    }


def _copy(source: Path, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(source), str(root / "lake")], check=True)
    return root


def _maintain_args(*extra: str) -> list[str]:
    return ["maintain", "--as-of", AS_OF, "--no-topic-check", *extra]


def _state(root: Path) -> dict[str, object]:
    """What a finished run leaves, independent of the wall clock and of file names."""
    lake_dir = root / "lake"
    with Lake.open(lake_dir) as lake:
        con = lake.con
        out: dict[str, object] = {
            "reads_per_day": con.execute(
                "SELECT CAST(captured_at AS DATE) d, count(*), count(DISTINCT event_id) "
                "FROM plate_reads GROUP BY d ORDER BY d"
            ).fetchall(),
            "traffic": con.execute(
                "SELECT * EXCLUDE (computed_at) FROM traffic_stats ORDER BY ALL"
            ).fetchall(),
            "trips": con.execute(
                "SELECT * EXCLUDE (computed_at) FROM trip_stats ORDER BY ALL"
            ).fetchall(),
            "periods": con.execute(
                "SELECT kind, period_start, signature FROM stats_periods ORDER BY ALL"
            ).fetchall(),
            "files_per_day": con.execute(
                "SELECT regexp_extract(path, 'year=.*day=[0-9]+'), count(*) "
                f"FROM {META}.ducklake_data_file WHERE end_snapshot IS NULL "
                "AND path LIKE '%plate_reads%' GROUP BY 1 ORDER BY 1"
            ).fetchall(),
            "referenced": {
                Path(str(p)).name
                for (p,) in con.execute(f"SELECT path FROM {META}.ducklake_data_file").fetchall()
            },
        }
    on_disk = {p.name for p in (lake_dir / "data").rglob("*.parquet")}
    out["unreferenced_files"] = len(on_disk - out.pop("referenced"))  # type: ignore[operator]
    cut = cutoff_for("plate_reads", "captured_at", 6, datetime.fromisoformat(AS_OF))
    needles = [n for b in BATCHES if b.day < cut.first_kept_day for n in b.needles]
    out["expired_values_on_disk"] = sorted(files_holding(lake_dir, needles))
    return out


@pytest.fixture(scope="module")
def reference(months_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The end state of one uninterrupted run."""
    root = _copy(months_lake, tmp_path_factory.mktemp("reference"))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *_maintain_args()],
        env=_env(root),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    state = _state(root)
    assert state["unreferenced_files"] == 0
    assert state["expired_values_on_disk"] == []
    return state


def _run_and_kill(root: Path, marker: str, nth: int, timeout: float = 300.0) -> list[str]:
    """Start ``anpr maintain`` (debug log), SIGKILL it right after the ``nth`` log line holding
    ``marker``; return the lines seen. Fails if the run ends before that line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--log-level", "DEBUG", *_maintain_args()],
        env=_env(root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    hits = 0
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stderr:
            seen.append(line)
            if marker in line:
                hits += 1
                if hits == nth:
                    proc.send_signal(signal.SIGKILL)
                    break
            if time.monotonic() > deadline:
                break
    finally:
        if proc.poll() is None and hits < nth:
            proc.kill()
        proc.wait(timeout=60)
    assert hits == nth, f"never reached {marker!r} #{nth}:\n{''.join(seen[-20:])}"
    assert proc.returncode == -signal.SIGKILL
    return seen


@pytest.mark.parametrize(
    ("marker", "nth"),
    [
        ("statistics written: traffic", 10),  # mid-statistics
        ("compacted plate_reads", 5),  # mid-compaction
        ("retention: plate_reads", 20),  # mid-retention: a prefix of days deleted
        ("files rewritten", 1),  # files rewritten, snapshots not yet expired
        ("snapshots expired", 1),  # old files not yet cleaned up
    ],
    ids=["stats", "compact", "retention", "purge-expire", "purge-cleanup"],
)
def test_sigkill_inside_a_step_then_rerun_ends_like_an_uninterrupted_run(
    months_lake: Path,
    reference: dict[str, object],
    tmp_path: Path,
    anpr: RunAnpr,
    marker: str,
    nth: int,
) -> None:
    root = _copy(months_lake, tmp_path / "run")
    _run_and_kill(root, marker, nth)
    rerun = anpr(_env(root), *_maintain_args(), timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert _state(root) == reference


def test_a_limit_above_six_months_is_refused_at_start(tmp_path: Path, anpr: RunAnpr) -> None:
    root = tmp_path
    with Lake.open(root / "lake"):
        pass
    before = sorted(p.name for p in (root / "lake").rglob("*"))
    result = anpr({**_env(root), "ANPR_RETENTION_MONTHS": "7"}, *_maintain_args())
    assert result.returncode == 2
    assert "retention.months" in result.stderr
    assert "at most 6 months" in result.stderr
    config = root / "anpr.toml"
    config.write_text("[retention.tables]\nplate_reads = 9\n")
    result = anpr(_env(root), "--config", str(config), *_maintain_args())
    assert result.returncode == 2
    assert "retention.tables.plate_reads" in result.stderr
    assert sorted(p.name for p in (root / "lake").rglob("*")) == before
    assert not (root / "state").exists()


def test_dry_run_prints_every_step_and_changes_nothing(
    months_lake: Path, tmp_path: Path, anpr: RunAnpr
) -> None:
    root = _copy(months_lake, tmp_path)
    before = {p: p.read_bytes() for p in (root / "lake").rglob("*") if p.is_file()}
    result = anpr(_env(root), *_maintain_args("--dry-run"), timeout=300)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stderr.split())
    for expected in (
        "stats: would compute 81 traffic days",
        "compact: would rewrite 30 days",
        "retention: plate_reads (6 months, cutoff 2026-06-01 03:00Z): would delete 612 rows",
        "purge: would rewrite",
    ):
        assert expected in text
    changed = [p for p in before if not p.name.endswith("-wal") and p.read_bytes() != before[p]]
    assert changed == []
    assert {p for p in (root / "lake").rglob("*") if p.is_file()} == set(before)


def test_only_runs_the_named_steps(months_lake: Path, tmp_path: Path, anpr: RunAnpr) -> None:
    root = _copy(months_lake, tmp_path)
    result = anpr(_env(root), *_maintain_args("--only", "stats"), timeout=300)
    assert result.returncode == 0, result.stderr
    (report_path,) = (root / "lake" / "reports").glob("maintain-*.json")
    report = json.loads(report_path.read_text())
    assert set(report["steps"]) == {"stats"}
    with Lake.open(root / "lake") as lake:
        assert lake.con.execute("SELECT count(*) FROM plate_reads").fetchone() == (
            len(BATCHES) * 6,
        )
        assert lake.con.execute("SELECT count(DISTINCT day) FROM traffic_stats").fetchone() == (81,)
    result = anpr(_env(root), *_maintain_args("--only", "compact", "--only", "retention"))
    assert result.returncode == 0, result.stderr
    newest = max((root / "lake" / "reports").glob("maintain-*.json"), key=os.path.getmtime)
    steps = json.loads(newest.read_text())["steps"]
    assert set(steps) == {
        "compact",
        "retention",
        "purge",
        "verify",
        "activity_log",
        "erasure_ledger",
    }
    assert sum(steps["retention"]["plate_reads"]["deleted_per_day"].values()) == 612
    prom = (root / "state" / "metrics" / "maintain.prom").read_text()
    # The stats success of the first run is carried over by the second.
    assert 'anpr_maintenance_last_success_timestamp_seconds{step="stats"}' in prom
    assert 'anpr_rows_deleted_total{reason="retention",table="plate_reads"} 612.0' in prom


def test_retention_over_months_shows_progress(months_lake: Path, tmp_path: Path) -> None:
    root = _copy(months_lake, tmp_path)
    settings = load_settings(None, env=_env(root))
    sink = io.StringIO()
    console = Console(file=sink, force_terminal=True, width=100)
    maintain(
        settings,
        MaintainOptions(
            as_of=datetime(2026, 12, 1, 3, tzinfo=UTC),
            only=frozenset({"retention"}),
            check_topics=False,
        ),
        console=console,
    )
    shown = sink.getvalue()
    assert "retention (days)" in shown
    assert "102/102" in shown  # 51 expired days of plate_reads and 51 of passengers


def test_topics_keeping_personal_data_too_long_are_flagged(
    tmp_path: Path, anpr: RunAnpr, make_topic: Callable[..., str], kafka_bootstrap: str
) -> None:
    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    from pipeline.kafka.retention_check import check_at_start  # noqa: PLC0415

    too_long = make_topic(config={"retention.ms": str(200 * 86_400_000)})
    fine = make_topic(config={"retention.ms": str(7 * 86_400_000)})
    env = {
        **_env(tmp_path),
        "ANPR_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ANPR_TOPICS_PLATE_READS": too_long,
        "ANPR_TOPICS_DLQ": fine,
    }
    with Lake.open(tmp_path / "lake"):
        pass
    result = anpr(env, "maintain", "--as-of", AS_OF, "--only", "stats")
    assert result.returncode == 0, result.stderr
    assert f"Kafka topic {too_long} keeps data" in result.stderr
    prom = (tmp_path / "state" / "metrics" / "maintain.prom").read_text()
    assert f'anpr_topic_retention_exceeded{{topic="{too_long}"}} 1.0' in prom
    assert f'anpr_topic_retention_exceeded{{topic="{fine}"}} 0.0' in prom
    # What an ingest worker does at start, on its own metrics registry.
    registry = CollectorRegistry()
    checks = check_at_start(load_settings(None, env=env), registry)
    assert [c.topic for c in checks if c.exceeded] == [too_long]
    assert registry.get_sample_value("anpr_topic_retention_exceeded", {"topic": too_long}) == 1


def test_verify_fails_naming_a_state_file_that_holds_a_plate_or_should_not_be_there(
    months_lake: Path, tmp_path: Path, anpr: RunAnpr
) -> None:
    root = _copy(months_lake, tmp_path)
    plate = "QXM40419"
    access = root / "state" / "access"
    access.parent.mkdir(mode=0o700)
    # A log written before literals were redacted (ADR 0007), and a subject-access report the
    # service once kept: both hold the plate in clear.
    key = read_key(access / "audit.key", "access.audit_key_file")
    log = ActivityLog(access / "activity.jsonl", key)
    log.append({"kind": "query.refused", "at": AS_OF, "user": "ivan", "role": "investigator",
                "sql": f"SELECT * FROM plate_reads WHERE plate = '{plate}'"})  # fmt: skip
    (access / "reports").mkdir(mode=0o700)
    (access / "reports" / "subject-access-7.json").write_text(json.dumps({"plate": plate}))

    result = anpr(_env(root), *_maintain_args(), timeout=600)

    assert result.returncode == 1, result.stderr
    text = " ".join(result.stderr.split())
    assert "verify: state folder: access/activity.jsonl: SQL holding a literal" in text
    assert "verify: state folder: access/reports/subject-access-7.json" in text
    assert not any(s in result.stderr + result.stdout for s in spellings(plate))
    (report,) = (root / "lake" / "reports").glob("maintain-*.json")
    verified = json.loads(report.read_text())["steps"]["verify"]
    assert verified["ok"] is False
    assert {f["path"] for f in verified["state_folder"]["findings"]} == {
        "access/activity.jsonl",
        "access/reports/subject-access-7.json",
    }
    assert files_holding(root / "lake" / "reports", spellings(plate)) == {}

    for path in (log.path, log.head_path, access / "reports" / "subject-access-7.json"):
        path.unlink()
    again = anpr(_env(root), *_maintain_args(), timeout=600)
    assert again.returncode == 0, again.stderr
