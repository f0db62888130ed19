"""Read-only queries over the lake, each with a stated purpose.

``anpr query`` opens the lake read-only and accepts exactly one SELECT statement. The purpose
is required and recorded (issue "Access" adds roles, pseudonymised views and the hash-chained
activity log on this same entry point; this module is the door for it).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
from rich.console import Console
from rich.table import Table

from pipeline.errors import UsageError
from pipeline.lake.catalog import Lake

logger = logging.getLogger(__name__)

MAX_PURPOSE_LENGTH = 200


def check_purpose(purpose: str | None) -> str:
    text = (purpose or "").strip()
    if not text:
        raise UsageError("--purpose is required: say why you need to read personal data")
    if len(text) > MAX_PURPOSE_LENGTH or not text.isprintable():
        raise UsageError(f"--purpose must be printable text of at most {MAX_PURPOSE_LENGTH} chars")
    return text


def check_select(sql: str) -> str:
    """Accept one SELECT (or WITH ... SELECT) statement; refuse everything else."""
    try:
        statements = duckdb.connect().extract_statements(sql)
    except duckdb.Error as exc:
        raise UsageError(f"SQL does not parse: {exc}") from None
    if len(statements) != 1:
        raise UsageError(f"exactly one statement is allowed, got {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise UsageError(f"only SELECT is allowed, got {statements[0].type.name}")
    return sql


def run_query(lake: Lake, sql: str, *, purpose: str) -> pa.Table:
    """Run one read-only SELECT over the lake tables and return the result."""
    check_purpose(purpose)
    check_select(sql)
    # The purpose is free text and may name a plate: not at INFO. Issue "Access" records it in
    # the hash-chained activity log instead.
    logger.info("query with a stated purpose (%d characters of SQL)", len(sql))
    logger.debug("query purpose: %r", purpose)
    try:
        return lake.query_arrow(sql)
    except duckdb.Error as exc:
        # A wrong column or table name is the user's to fix: say what DuckDB said, exit 2.
        raise UsageError(f"query failed: {exc}") from None


def render(table: pa.Table, fmt: str) -> str:
    """The result as ``csv``, ``json`` (an array of objects) or ``table`` (a terminal table)."""
    if fmt == "csv":
        sink = io.BytesIO()
        pacsv.write_csv(table, sink)
        return sink.getvalue().decode()
    if fmt == "json":
        return json.dumps(table.to_pylist(), default=_json_value, ensure_ascii=False, indent=1)
    if fmt == "table":
        return _rich_table(table)
    raise UsageError(f"unknown format {fmt!r}: use csv, json or table")


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
