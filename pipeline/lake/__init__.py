"""The table layer: DuckLake tables, one transaction per batch with its Kafka offsets."""

from pipeline.lake.catalog import (
    DATA_TABLES,
    Lake,
    OffsetFenced,
    QueryRefused,
    RetryPolicy,
    TableSpec,
)
from pipeline.lake.extensions import extension_paths

__all__ = [
    "DATA_TABLES",
    "Lake",
    "OffsetFenced",
    "QueryRefused",
    "RetryPolicy",
    "TableSpec",
    "extension_paths",
]
