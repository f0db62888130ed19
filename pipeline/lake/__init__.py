"""The table layer: DuckLake tables, one transaction per batch with its Kafka offsets."""

from pipeline.lake.catalog import Lake, OffsetFenced, RetryPolicy
from pipeline.lake.extensions import extension_paths
from pipeline.lake.tables import DATA_TABLES, LAKE_TABLES, PERSONAL_DATA_TABLES, TableSpec

__all__ = [
    "DATA_TABLES",
    "LAKE_TABLES",
    "PERSONAL_DATA_TABLES",
    "Lake",
    "OffsetFenced",
    "RetryPolicy",
    "TableSpec",
    "extension_paths",
]
