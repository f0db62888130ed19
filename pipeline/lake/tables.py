"""The one list of lake tables: schema, day partition, collection time, plate columns, sort order.

The lake creates these tables (:mod:`pipeline.lake.catalog`), retention deletes by their
collection time (:mod:`pipeline.maintain.run`, cutoffs from :mod:`pipeline.retention`),
compaction sorts by their sort order, the access views filter by their collection time and
restricted plates (:mod:`pipeline.access.views`). A new table that holds identifiers (plates,
names, document numbers, event ids) is one line here with ``personal=True`` and the column of
its collection time (UTC ``TIMESTAMP WITH TIME ZONE``). Statistics tables are created by
:mod:`pipeline.maintain.stats` and hold no personal data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import pyarrow as pa

from pipeline.schemas import (
    PASSENGERS,
    PLATE_READ_VERSIONS,
    PLATE_READS,
    SUBJECT_RESTRICTIONS,
    UTC_TS,
)

OFFSETS_TABLE = "ingest_offsets"
FENCE_TABLE = "ingest_fence"

INGEST_OFFSETS = pa.schema(
    [
        pa.field("consumer_group", pa.string(), nullable=False),
        pa.field("topic", pa.string(), nullable=False),
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("next_offset", pa.int64(), nullable=False),  # next offset to consume
        pa.field("updated_at", UTC_TS, nullable=False),
    ]
)
# One row, rewritten by every ingest commit: see Lake.write_batch, step 5.
INGEST_FENCE = pa.schema(
    [
        pa.field("fence_id", pa.int32(), nullable=False),
        pa.field("commits", pa.int64(), nullable=False),
        pa.field("updated_at", UTC_TS, nullable=False),
    ]
)


@dataclass(frozen=True)
class TableSpec:
    """A lake table and the columns the lake, retention, compaction and access rely on."""

    name: str
    schema: pa.Schema
    collected_column: str | None = None  # collection time: the legal clock (personal tables)
    by_day: bool = False  # partitioned by the UTC day of the collection time
    plate_columns: tuple[str, ...] = ()  # normalised plates (A-Z0-9), nullable or not
    # Lists of {plate, ...} structs that name plates too (OCR candidates, as read).
    plate_lists: tuple[str, ...] = ()
    sort_by: tuple[str, ...] = ()  # compacted files sort by these, then the collection time

    @property
    def personal(self) -> bool:
        """Holds personal data: retention applies, from :attr:`collected_column`."""
        return self.collected_column is not None

    @property
    def day_column(self) -> str | None:
        """The partition column: retention then drops whole day folders."""
        return self.collected_column if self.by_day else None

    @property
    def sort_order(self) -> tuple[str, ...]:
        return (*self.sort_by, self.collected_column) if self.collected_column else self.sort_by


PLATE_READS_TABLE = TableSpec(
    "plate_reads",
    PLATE_READS,
    collected_column="captured_at",
    by_day=True,
    plate_columns=("plate",),
    plate_lists=("candidates",),
    # The day partition already gives time pruning; inside a day, plate order lets a plate
    # lookup read one row group per day.
    sort_by=("plate",),
)
PASSENGERS_TABLE = TableSpec(
    "passengers",
    PASSENGERS,
    collected_column="collected_at",
    by_day=True,
    plate_columns=("vehicle_plate",),
)
# Data-subject requests (pipeline/access/subjects.py).
VERSIONS_TABLE = TableSpec(
    "plate_read_versions",
    PLATE_READ_VERSIONS,
    collected_column="captured_at",  # the rectified read's own collection time: ages out with it
    by_day=True,
    plate_columns=("old_plate", "new_plate"),
)
RESTRICTIONS_TABLE = TableSpec(
    "subject_restrictions",
    SUBJECT_RESTRICTIONS,
    collected_column="collected_at",  # the newest row the restriction covers
    plate_columns=("plate",),
)

# Tables Lake.write_batch accepts: what ingest collects.
DATA_TABLES: Mapping[str, TableSpec] = MappingProxyType(
    {t.name: t for t in (PLATE_READS_TABLE, PASSENGERS_TABLE)}
)
# Created with the lake, so every view and the statistics can rely on them.
SUBJECT_TABLES = (VERSIONS_TABLE, RESTRICTIONS_TABLE)
# The lake's bookkeeping: nobody queries it.
INTERNAL_TABLES = (TableSpec(OFFSETS_TABLE, INGEST_OFFSETS), TableSpec(FENCE_TABLE, INGEST_FENCE))
LAKE_TABLES: Mapping[str, TableSpec] = MappingProxyType(
    {t.name: t for t in (*DATA_TABLES.values(), *SUBJECT_TABLES, *INTERNAL_TABLES)}
)
# Personal-data tables -> collection-time column. Tables named here but not yet created in a
# lake are skipped by maintenance.
PERSONAL_DATA_TABLES: Mapping[str, str] = MappingProxyType(
    {t.name: t.collected_column for t in LAKE_TABLES.values() if t.collected_column}
)
