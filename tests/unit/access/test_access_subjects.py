import io

from prometheus_client import CollectorRegistry

from pipeline.access.subjects import plate_predicates
from pipeline.cli.access import statements
from pipeline.lake.tables import LAKE_TABLES
from pipeline.metrics import AccessMetrics

COLUMNS = {
    "plate_reads": {
        "plate": "VARCHAR",
        "plate_raw": "VARCHAR",
        "candidates": "STRUCT(plate VARCHAR, confidence FLOAT)[]",
        "lane": "SMALLINT",
    },
    "plate_read_versions": {
        "old_plate": "VARCHAR",
        "old_plate_raw": "VARCHAR",
        "new_plate": "VARCHAR",
        "reason": "VARCHAR",
    },
    "passengers": {"vehicle_plate": "VARCHAR", "name": "VARCHAR"},
    "traffic_stats": {"site_id": "VARCHAR"},
    "ingest_offsets": {"topic": "VARCHAR"},
}


def test_every_column_that_can_hold_a_plate_is_searched() -> None:
    found = plate_predicates(COLUMNS)
    assert set(found) == {"plate_reads", "plate_read_versions", "passengers"}
    reads = found["plate_reads"]
    assert '"plate" = $plate' in reads
    assert "list_contains" in reads
    assert "plate_raw" not in reads  # found through its normalised twin in the same row
    assert found["plate_read_versions"] == '"old_plate" = $plate OR "new_plate" = $plate'
    assert found["passengers"] == '"vehicle_plate" = $plate'  # normalised by ingest


def test_the_table_registry_names_every_plate_column_of_every_table() -> None:
    """A column that holds a plate and is not in lake/tables.py would escape erasure,
    restriction and the ingest ledger: every *plate* column is registered, or is the raw
    text of a registered one in the same row."""
    for spec in LAKE_TABLES.values():
        registered = {*spec.plate_columns, *spec.plate_lists}
        for name in spec.schema.names:
            if ("plate" in name or name == "candidates") and name != "plate_country":
                assert name in registered or name.removesuffix("_raw") in registered, (
                    spec.name,
                    name,
                )


def test_shell_splits_statements_at_line_ending_semicolons() -> None:
    text = "SELECT 1;\nSELECT\n  ';' AS x\n;\n\n.quit\nSELECT 3;\n"
    assert list(statements(io.StringIO(text), lambda _: None)) == [
        "SELECT 1",
        "SELECT\n  ';' AS x",
    ]
    assert list(statements(io.StringIO("SELECT 4"), lambda _: None)) == ["SELECT 4"]


def test_access_metrics_load_the_cumulative_counts() -> None:
    registry = CollectorRegistry()
    AccessMetrics(registry).load(
        {"queries|analyst|control|ok": 3, "subject|erase": 1, "bogus": 9}, entries=12
    )
    labels = {"role": "analyst", "reason": "control", "outcome": "ok"}
    assert registry.get_sample_value("anpr_queries_total", labels) == 3
    assert registry.get_sample_value("anpr_subject_requests_total", {"kind": "erase"}) == 1
    assert registry.get_sample_value("anpr_audit_log_entries_total") == 12
