"""ANPR border-passage pipeline: Kafka → validated Arrow batches → DuckLake, with the legal limits built in."""

__version__ = "0.1.0"
