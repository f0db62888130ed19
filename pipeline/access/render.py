"""Results and reports as text: a query result for the terminal, a subject-access report file.

Report files hold personal data (they answer a data subject): written atomically, mode 0600,
under the access reports folder, and named by time and log entry, never by plate.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
from rich.console import Console
from rich.table import Table

from pipeline.errors import UsageError
from pipeline.files import write_atomic


def render(table: pa.Table, fmt: str) -> str:
    """The result as ``csv``, ``json`` (an array of objects) or ``table`` (a terminal table)."""
    if fmt == "csv":
        sink = io.BytesIO()
        pacsv.write_csv(_flat(table), sink)
        return sink.getvalue().decode()
    if fmt == "json":
        return json.dumps(table.to_pylist(), default=_json_value, ensure_ascii=False, indent=1)
    if fmt == "table":
        return _rich_table(table)
    raise UsageError(f"unknown format {fmt!r}: use csv, json or table")


def _flat(table: pa.Table) -> pa.Table:
    """Nested columns (lists, structs) as JSON text: CSV has no other way to hold them."""
    for index, column in enumerate(table.columns):
        if pa.types.is_nested(column.type):
            text = [
                None if v is None else json.dumps(v, default=_json_value, ensure_ascii=False)
                for v in column.to_pylist()
            ]
            table = table.set_column(index, table.field(index).name, pa.array(text, pa.string()))
    return table


def _json_value(value: object) -> str | float:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def _rich_table(table: pa.Table) -> str:
    out = Table(*table.column_names, show_lines=False)
    for row in _rows(table):
        out.add_row(*("" if v is None else str(v) for v in row))
    console = Console(file=io.StringIO(), width=200, force_terminal=False)
    console.print(out)
    console.print(f"{table.num_rows} rows")
    result: str = console.file.getvalue()  # type: ignore[attr-defined]
    return result


def _rows(table: pa.Table) -> Iterator[tuple[object, ...]]:
    columns = [table[name].to_pylist() for name in table.column_names]
    return zip(*columns, strict=True)


def subject_report(
    plate: str,
    tables: Mapping[str, pa.Table],
    activity: list[dict[str, Any]],
    *,
    generated_at: datetime,
) -> dict[str, Any]:
    """The content of a subject-access report (pure)."""
    return {
        "request": "access",
        "plate": plate,
        "generated_at": generated_at.isoformat(),
        "tables": {name: t.to_pylist() for name, t in sorted(tables.items())},
        "activity_log_entries": activity,
    }


def report_text(report: Mapping[str, Any], fmt: str) -> str:
    """The report as JSON, or as CSV rows ``source,row,column,value`` (one value per line)."""
    if fmt == "json":
        return json.dumps(report, default=_json_value, ensure_ascii=False, indent=1) + "\n"
    if fmt != "csv":
        raise UsageError(f"unknown format {fmt!r}: use json or csv")
    sink = io.StringIO()
    out = csv.writer(sink, lineterminator="\n")
    out.writerow(["source", "row", "column", "value"])
    sources = {f"table:{k}": v for k, v in report["tables"].items()}
    sources["activity_log"] = report["activity_log_entries"]
    for source, rows in sources.items():
        for number, row in enumerate(rows):
            for column, value in row.items():
                text = value if isinstance(value, str) else json.dumps(value, default=_json_value)
                out.writerow([source, number, column, text])
    return sink.getvalue()


def write_private(directory: Path, name: str, text: str) -> Path:
    """Write ``text`` to ``directory/name`` atomically, readable by the owner only."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = directory / name
    write_atomic(target, text)  # mode 0600
    return target
