"""Vendor payloads by the batch: Arrow reads the fields a mapper reads, Arrow compute maps them.

The per-message mappers (``map_payload``) are the definition; a vendor's ``map_batch`` is a
faster way to the same reads for the payloads it can *prove* ordinary, and hands every other
payload back to the per-message mapper (the slow path), so both paths give the same reads and
the same rejections (a test compares them on the corpus, the simulator and mutated payloads).

A payload is proved ordinary in three steps:

1. bytes: one line framed as ``{...}``, ASCII, no ``\\u`` escape, no ``NaN``/``Infinity``, no
   NUL; and the codec's strict JSON reader accepts it (the hostile-input policy is applied to
   every payload, whichever path maps it);
2. shape: :func:`read_rows` reads the batch with an explicit schema of the mapped fields; a
   payload whose fields have other JSON types than the schema's is found by halving the block
   and goes to the slow path;
3. values: the vendor's vectorised checks (ranges, lengths, known cameras, times); a payload
   with any read failing one of them goes to the slow path, which finds the precise reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json

from pipeline.codec.reasons import Rejection, strict_json

# Bytes a payload must not hold to take the columnar path (see the module docstring).
_SUSPECT: Final = re.compile(rb"[\n\r\x00\x80-\xff]|\\u|NaN|Infinity")


@dataclass(frozen=True)
class ColumnReads:
    """What a vendor's ``map_batch`` made of some payloads.

    ``table``: one row per read, :data:`pipeline.codec.plate_reads.MAPPED_SCHEMA` without
    ``msg_index``; ``owner``: the position (in the payloads given) of each read's payload;
    ``candidates``: one ``CANDIDATES`` list per read; ``slow``: positions of the payloads
    left to the per-message mapper.
    """

    table: pa.Table
    owner: np.ndarray
    candidates: pa.Array
    slow: list[int]


def ordinary(value: bytes) -> bool:
    """Step 1: a payload the columnar path may read (else the slow path reads it)."""
    if value[:1] != b"{" or value[-1:] != b"}" or _SUSPECT.search(value):
        return False
    try:
        strict_json(value)
    except Rejection:
        return False
    return True


def read_rows(
    values: Sequence[bytes], schema: pa.Schema
) -> tuple[pa.Table | None, list[int], list[int]]:
    """Step 2: ``(table, read, unread)``: the rows of the payloads at positions ``read`` (in
    order) and the positions whose JSON types differ from ``schema``."""
    good: list[int] = []
    bad: list[int] = []
    tables: list[pa.Table] = []
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")

    def read(lo: int, hi: int) -> None:
        data = b"\n".join(values[lo:hi])
        try:
            table = pa_json.read_json(
                pa.py_buffer(data),
                read_options=pa_json.ReadOptions(block_size=max(1 << 20, len(data) + 2)),
                parse_options=options,
            )
        except pa.ArrowInvalid:
            if hi - lo == 1:
                bad.append(lo)
                return
            middle = (lo + hi) // 2
            read(lo, middle)
            read(middle, hi)
            return
        if table.num_rows != hi - lo:  # framing makes this impossible; be sure anyway
            bad.extend(range(lo, hi))
            return
        tables.append(table)
        good.extend(range(lo, hi))

    if values:
        read(0, len(values))
    if not tables:
        return None, good, bad
    return pa.concat_tables(tables).combine_chunks(), good, bad
