"""The run checks its own result: nothing collected at or before a table's cutoff is left."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from pipeline.lake.catalog import CATALOG, Lake, quote_ident
from pipeline.maintain.inventory import day_folders
from pipeline.maintain.retention import Cutoff


@dataclass(frozen=True)
class TableCheck:
    table: str
    oldest: datetime | None  # oldest collection time still stored (None: table empty)
    rows_past_limit: int
    files_in_expired_days: int  # any file left in an expired day folder

    @property
    def ok(self) -> bool:
        return self.rows_past_limit == 0 and self.files_in_expired_days == 0


def verify(lake: Lake, cuts: Mapping[str, Cutoff]) -> list[TableCheck]:
    """For each table: its oldest row and anything left at or before its cutoff."""
    data = lake.path / "data"
    out = []
    for table, cut in cuts.items():
        col = quote_ident(cut.column)
        oldest, past = lake.execute(
            f"SELECT min({col}), count(*) FILTER (WHERE {col} <= ?) "
            f"FROM {CATALOG}.{quote_ident(table)}",
            [cut.cutoff],
        ).fetchone() or (None, 0)
        files = sum(
            sum(1 for p in folder.rglob("*") if p.is_file())
            for day, folder in day_folders(data, table).items()
            if day < cut.first_kept_day
        )
        out.append(TableCheck(table, oldest, int(past), files))
    return out
