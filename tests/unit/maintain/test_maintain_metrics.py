"""The maintenance textfile: what one run carries over from the previous one."""

from __future__ import annotations

from pathlib import Path

from pipeline.maintain.metrics import MaintainMetrics


def test_success_times_and_the_statistics_backlog_carry_over(tmp_path: Path) -> None:
    previous = MaintainMetrics()
    previous.last_success.labels("stats").set(1_800_000_000)
    previous.stats_pending.set(7)
    previous.deleted.labels("plate_reads", "retention").inc(5)
    prom = tmp_path / "maintain.prom"
    previous.write(prom)

    run = MaintainMetrics()  # e.g. --only retention: no stats step this time
    run.carry_over(prom)
    sample = run.registry.get_sample_value
    assert sample("anpr_maintenance_last_success_timestamp_seconds", {"step": "stats"}) == 1.8e9
    assert sample("anpr_statistics_days_pending") == 7
    # Counters are per run: deletions of the previous run are not counted again.
    labels = {"table": "plate_reads", "reason": "retention"}
    assert sample("anpr_rows_deleted_total", labels) is None


def test_no_previous_file_is_a_first_run(tmp_path: Path) -> None:
    run = MaintainMetrics()
    run.carry_over(tmp_path / "missing.prom")
    assert run.registry.get_sample_value("anpr_statistics_days_pending") == 0
