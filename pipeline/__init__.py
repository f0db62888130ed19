"""ANPR border-passage pipeline: Kafka → validated Arrow batches → DuckLake, within the law."""

__version__ = "0.1.0"
