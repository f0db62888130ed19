from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.metrics import BulkHistogram, IngestMetrics, MaintainMetrics
from tests import ops_contract as oc


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, str], float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            if s.name.startswith(name) and not s.name.endswith("_created"):
                out[(s.name, s.labels.get("le", ""))] = s.value
    return out


def test_observe_many_equals_observe_one_by_one() -> None:
    values = np.array([0.0, 0.1, 0.1000001, 0.5, 2.0, 2.5, 1e9, -1.0, 0.25, 0.25])
    bulk_reg, single_reg = CollectorRegistry(), CollectorRegistry()
    bounds = (0.1, 0.25, 0.5, 1.0, 2.0)
    bulk = BulkHistogram("anpr_x_seconds", "x", buckets=bounds, registry=bulk_reg)
    single = BulkHistogram("anpr_x_seconds", "x", buckets=bounds, registry=single_reg)
    bulk.observe_many(values)
    bulk.observe_many(np.array([]))
    for v in values:
        single.observe(float(v))
    assert _samples(bulk_reg, "anpr_x_seconds") == _samples(single_reg, "anpr_x_seconds")
    assert bulk_reg.get_sample_value("anpr_x_seconds_count") == len(values)


def test_documented_metric_names_are_exposed() -> None:
    registry = CollectorRegistry()
    m = IngestMetrics(registry)
    m.consumed.labels(topic="anpr.plate-reads", format="canonical").inc()
    m.rows_written.labels(table="plate_reads").inc()
    m.rejected.labels(reason="malformed_json", format="unknown").inc()
    m.lag.labels(topic="anpr.plate-reads", partition="0").set(3)
    names = {
        s.name
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    for expected in (
        "anpr_messages_consumed_total",
        "anpr_rows_written_total",
        "anpr_messages_rejected_total",
        "anpr_duplicates_dropped_total",
        "anpr_batch_duration_seconds_bucket",
        "anpr_freshness_seconds_bucket",
        "anpr_consumer_lag_messages",
        "anpr_last_commit_timestamp_seconds",
    ):
        assert expected in names
    assert all(n.startswith("anpr_") for n in names)


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


def test_every_metric_is_defined_in_metrics_py() -> None:
    """One home for metric names, labels and help texts (found by AST over the package)."""
    definitions = list(oc.metric_definitions())
    home = oc.REPO / "pipeline" / "metrics.py"
    elsewhere = sorted((str(path.relative_to(oc.REPO)), name) for path, name, _ in definitions
                       if path != home)  # fmt: skip
    assert elsewhere == []
    assert {"anpr_rows_deleted_total", "anpr_topic_retention_exceeded"} <= {
        name for _, name, _ in definitions
    }
