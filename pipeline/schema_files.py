"""The files under ``pipeline/data/schemas/``: generated from :mod:`pipeline.schemas`, checked
for drift.

``anpr schemas write`` regenerates them; ``anpr schemas check`` (and a unit test) fails when a
committed file no longer matches the code, so the contract producers read cannot drift from the
one the decoder enforces.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline import data
from pipeline.files import write_atomic
from pipeline.schemas import (
    PASSENGERS,
    PLATE_READS,
    lake_table_description,
    passenger_list_json_schema,
    plate_read_json_schema,
)

SCHEMA_DIR = data.path("schemas")


def rendered() -> dict[str, str]:
    """File name → exact text of every generated schema file."""
    documents: dict[str, object] = {
        "plate_read-1.schema.json": plate_read_json_schema(),
        "lake.plate_reads.json": {
            "table": "plate_reads",
            "partitioned_by": "UTC day of captured_at",
            "columns": lake_table_description(PLATE_READS),
        },
        "passenger_list-1.schema.json": passenger_list_json_schema(),
        "lake.passengers.json": {
            "table": "passengers",
            "partitioned_by": "UTC day of collected_at (Kafka message timestamp)",
            "columns": lake_table_description(PASSENGERS),
        },
    }
    return {
        name: json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        for name, doc in documents.items()
    }


def stale(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of files that are missing or differ from what the code generates."""
    out = []
    for name, text in rendered().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out.append(name)
    return out


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    """(Re)write every schema file atomically; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered().items():
        target = directory / name
        write_atomic(target, text)
        target.chmod(0o644)  # files for producers, in the repository
        written.append(target)
    return written
