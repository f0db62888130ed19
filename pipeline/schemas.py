"""The one source of truth for record shapes: Arrow schemas for the lake tables.

The JSON Schema for producers (``schemas/plate_read-1.schema.json``) is generated from
:data:`PLATE_READ_INPUT` by ``anpr schemas write`` and a test checks the committed file agrees.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

UTC_TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class InputField:
    """One field of the canonical ``plate_read/1`` JSON message."""

    name: str
    arrow_type: pa.DataType
    required: bool
    max_length: int | None = None  # strings only: every string field is bounded
    description: str = ""


# Canonical plate read as producers send it (DESIGN.md, "Canonical plate read").
PLATE_READ_INPUT: tuple[InputField, ...] = (
    InputField("schema", pa.string(), True, 32, 'Always "plate_read/1".'),
    InputField("event_id", pa.string(), True, 64, "Unique per read; retransmissions repeat it."),
    InputField("site_id", pa.string(), True, 32, "A site id from the site registry."),
    InputField("camera_id", pa.string(), True, 32, "A camera id registered at that site."),
    InputField("lane", pa.int16(), True, None, "Lane number at the site, 1-based."),
    InputField("direction", pa.string(), True, 8, "Relative to Norway: entry or exit."),
    InputField("captured_at", pa.string(), True, 40, "RFC 3339 time with explicit offset."),
    InputField("plate", pa.string(), True, 24, "Plate text as the camera read it."),
    InputField("plate_country", pa.string(), True, 2, "ISO 3166-1 alpha-2, as the camera says."),
    InputField("confidence", pa.float64(), True, None, "OCR confidence, 0 to 1."),
    InputField("vehicle_class", pa.string(), False, 16, "car, van, truck, bus, motorcycle, ..."),
)

PLATE_READ_SCHEMA_ID = "plate_read/1"

# Columns of the lake table ``plate_reads``, in order.
PLATE_READS = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("site_id", pa.string(), nullable=False),
        pa.field("camera_id", pa.string(), nullable=False),
        pa.field("lane", pa.int16(), nullable=False),
        pa.field("direction", pa.string(), nullable=False),
        pa.field("captured_at", UTC_TS, nullable=False),
        pa.field("plate", pa.string(), nullable=False),  # normalised: A-Z0-9 only
        pa.field("plate_raw", pa.string(), nullable=False),  # as the camera sent it
        pa.field("plate_country", pa.string(), nullable=False),
        pa.field("confidence", pa.float32(), nullable=False),
        pa.field("vehicle_class", pa.string(), nullable=True),
        pa.field("source_format", pa.string(), nullable=False),  # canonical, openalpr, ...
        pa.field("ingested_at", UTC_TS, nullable=False),
        pa.field("source_partition", pa.int32(), nullable=False),
        pa.field("source_offset", pa.int64(), nullable=False),
    ]
)

# What the pure decoder produces; the ingest loop adds the ingest metadata columns.
DECODED_PLATE_READS = pa.schema(
    [f for f in PLATE_READS if f.name not in {"ingested_at", "source_partition", "source_offset"}]
)
