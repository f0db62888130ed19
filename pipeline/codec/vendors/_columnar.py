"""Vendor payloads by the batch: Arrow reads the fields a mapper reads, Arrow compute maps them.

(JSON vendors; Hikvision's XML alerts are proved plain and read by one regular expression
instead, see :func:`pipeline.codec.vendors.hikvision.map_batch`, then mapped the same way.)

The per-message mappers (``map_payload``) are the definition; a vendor's ``map_batch`` is a
faster way to the same reads for the payloads it can *prove* ordinary, and hands every other
payload back to the per-message mapper (the slow path), so both paths give the same reads and
the same rejections (a test compares them on the corpus, the simulator and mutated payloads).

A payload is proved ordinary in three steps; together they apply the codec's hostile-input
policy (:mod:`pipeline.codec`) to every payload of the batch without a per-message parse:

1. bytes (:func:`ordinary_mask`): one line framed as ``{...}``, ASCII, no backslash (so no
   escape at all: no surrogate, no key spelt two ways), no NUL, at most :data:`MAX_BRACKETS`
   brackets: nesting stays far from Python's recursion limit, and from Arrow's inferring
   reader, which crashes the process on nesting some 100,000 deep;
2. syntax and shape: :func:`read_rows` reads the batch with Arrow, an explicit schema for the
   mapped fields and every other field *inferred*, so Arrow parses and checks every key of
   every object: bad syntax, trailing data, a second document and a repeated key anywhere
   fail the read (its row count proves one document per payload). Arrow accepts ``NaN`` and
   ``Infinity``; they, and integers too long for Python, show as non-finite numbers in the
   read's columns, which must have none. A payload whose read fails this, or whose mapped
   fields have other JSON types than the schema's, is found by halving the block and goes to
   the slow path, whose :func:`~pipeline.codec.reasons.strict_json` gives the precise reason;
3. values: the vendor's vectorised checks (ranges, lengths, known cameras, times); a payload
   with any read failing one of them goes to the slow path, which finds the precise reason.

A vendor may instead hold repeats to the fields it reads (``skip_unread``; OpenALPR groups,
whose mapped fields are a tenth of the payload): Arrow then parses every other field for
syntax only, and refuses a field of the schema given twice in its object but not a repeat
elsewhere; the per-message mapper reads with :func:`~pipeline.codec.reasons.strict_json`'s
``read`` shape (:func:`read_shape` of the same schema), the same rule. NaN/Infinity and
integers past Python's digit limit in a skipped field leave no column to show in, so step 1
also sends a payload holding such a literal after ``:``, ``,`` or ``[``, or a run of more
digits than the limit, to the slow path.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from pipeline.codec.plate_reads import MAPPED_SCHEMA
from pipeline.codec.reasons import Rejection, Shape
from pipeline.codec.vendors._shared import Target, VendorRegistry, find_target
from pipeline.schemas import CANDIDATES, PLATE_READ_SCHEMA_ID

# Bytes a payload must not hold to take the columnar path (step 1 of the module docstring).
_SUSPECT_BYTES: Final = (b"\n", b"\r", b"\x00", b"\\")
# Far below Python's recursion limit, far above any vendor's payload (about 20).
MAX_BRACKETS: Final = 256
# With ``skip_unread`` (module docstring): a non-finite literal where a value starts (Arrow
# reads NaN, Inf and Infinity, signed); a string that looks so costs its payload the slow path,
# nothing more. One search per literal: sre finds a literal through its first byte, about
# twice as fast as bytes.find on a batch.
_LITERALS: Final = (re.compile(rb"NaN"), re.compile(rb"Inf"))
# Integer literals with more digits than this fail Python's int() (0: no limit).
_DIGIT_LIMIT: Final = sys.get_int_max_str_digits()
_DIGITS: Final = b"0123456789"
_DIGIT_RUN: Final = re.compile(rb"[0-9]*")


@dataclass(frozen=True)
class ColumnReads:
    """What a vendor's ``map_batch`` made of some payloads.

    ``table``: one row per read, :data:`pipeline.codec.plate_reads.MAPPED_SCHEMA` without
    ``msg_index``; ``owner``: the position (in the payloads given) of each read's payload;
    ``candidates``: one ``CANDIDATES`` list per read; ``slow``: positions of the payloads
    left to the per-message mapper; ``quirks``: (read, quirk) for what the mapper would have
    noted in a read's ``quirks`` (unknown countries aside: they are counted on stored rows).
    """

    table: pa.Table
    owner: np.ndarray
    candidates: pa.Array
    slow: list[int]
    quirks: list[tuple[int, str]] = field(default_factory=list)


# A vendor candidate as the batch reads it (``confidence`` or ``score``, as the mapper reads).
CANDIDATE: Final = pa.struct(
    [
        pa.field("plate", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("confidence", pa.float64()),
    ]
)


def proven_rows(
    values: Sequence[bytes], schema: pa.Schema, *, skip_unread: bool = False
) -> tuple[dict[str, pa.Array], np.ndarray, list[int]]:
    """Steps 1 and 2 for a vendor's ``map_batch``: the columns of ``schema`` for the payloads
    read (by name, one row each), their positions in ``values``, and the positions left to the
    slow path. ``skip_unread``: see the module docstring."""
    proven, joined = _ordinary(values)
    if skip_unread:
        proven &= ~_hidden_numbers(values, joined)
    slow: list[int] = np.flatnonzero(~proven).tolist()
    at = np.flatnonzero(proven)
    if proven.size and proven.all():  # all of them, joined already
        table, read, unread = read_rows(values, schema, joined=joined, skip_unread=skip_unread)
    else:
        table, read, unread = read_rows(
            [values[i] for i in at.tolist()], schema, skip_unread=skip_unread
        )
    slow += at[unread].tolist()
    if table is None:
        return {f.name: pa.array([], f.type) for f in schema}, np.zeros(0, np.int64), slow
    columns = {name: table.column(name).combine_chunks() for name in table.column_names}
    return columns, at[read], slow


def _hidden_numbers(values: Sequence[bytes], data: bytes) -> np.ndarray:
    """Which payloads may hold a number Arrow would skip unseen in a field it does not read:
    a NaN/Inf literal after ``:``, ``,`` or ``[`` (blanks and a sign between), or an integer
    longer than Python's digit limit. ``data``: the payloads joined by newlines."""
    at: list[int] = []
    for literal in _LITERALS:
        for match in literal.finditer(data):
            k = match.start()
            while k > 0 and data[k - 1] in b" \t-":
                k -= 1
            if k > 0 and data[k - 1] in b":,[":
                at.append(k)
    at += _long_digit_runs(data)
    hidden = np.zeros(len(values), dtype=bool)
    if at:
        starts = np.cumsum([0] + [len(v) + 1 for v in values[:-1]])
        hidden[np.searchsorted(starts, at, side="right") - 1] = True
    return hidden


def _long_digit_runs(data: bytes) -> list[int]:
    """A position in each run of more than :data:`_DIGIT_LIMIT` digits in ``data``. Such a run
    holds a multiple of the limit, so only the bytes there are looked at, and the runs through
    them measured (a few digits at most in base64 images and numbers)."""
    limit = _DIGIT_LIMIT
    found: list[int] = []
    if not limit:
        return found
    p = 0
    while p < len(data):
        if data[p] not in _DIGITS:
            p += limit
            continue
        match = _DIGIT_RUN.match(data, p)
        end = match.end() if match else p
        start, floor = p, max(0, end - limit - 1)
        while start > floor and data[start - 1] in _DIGITS:
            start -= 1
        if end - start > limit:
            found.append(p)
        # On past this run (each measured once, however long: linear in the batch).
        p = max(p + limit, -(-end // limit) * limit)
    return found


def read_shape(schema: pa.Schema | pa.DataType) -> Shape:
    """The fields ``schema`` reads, as :func:`~pipeline.codec.reasons.strict_json` takes them."""
    kind = schema
    while isinstance(kind, pa.ListType | pa.LargeListType):
        kind = kind.value_type
    if isinstance(kind, pa.Schema | pa.StructType):
        return {f.name: read_shape(f.type) for f in kind}
    return {}


def ordinary_mask(values: Sequence[bytes]) -> np.ndarray:
    """Step 1 for a batch: which payloads the columnar path may read (the others: slow path)."""
    return _ordinary(values)[0]


def _ordinary(values: Sequence[bytes]) -> tuple[np.ndarray, bytes]:
    """:func:`ordinary_mask`, and the payloads joined by newlines as :func:`read_rows` reads
    them (the byte checks run on that one buffer)."""
    if not values:
        return np.zeros(0, dtype=bool), b""
    mask = np.fromiter(
        (
            v[:1] == b"{" and v[-1:] == b"}" and v.count(b"{") + v.count(b"[") <= MAX_BRACKETS
            for v in values
        ),
        dtype=bool,
        count=len(values),
    )
    joined = b"\n".join(values)
    if (
        joined.isascii()
        and _newlines(joined, len(values)) == len(values) - 1  # the joins' own newlines only
        and not any(needle in joined for needle in _SUSPECT_BYTES[1:])
    ):
        return mask, joined
    # Rare: some payload holds a suspect byte; find which, one by one.
    mask &= np.fromiter(
        (v.isascii() and not any(needle in v for needle in _SUSPECT_BYTES) for v in values),
        dtype=bool,
        count=len(values),
    )
    return mask, joined


def _newlines(data: bytes, most: int) -> int:
    """How many newlines ``data`` holds, counting no further than ``most``: one ``find``
    (memchr) per newline is several times faster than ``bytes.count`` on a batch."""
    found = 0
    at = data.find(b"\n")
    while at >= 0 and found < most:
        found += 1
        at = data.find(b"\n", at + 1)
    return found


def ordinary(value: bytes) -> bool:
    """Steps 1 and 2 for one payload: whether the columnar path may read it."""
    if not ordinary_mask([value])[0]:
        return False
    _, read, _ = read_rows([value], pa.schema([]))
    return read == [0]


def read_rows(
    values: Sequence[bytes],
    schema: pa.Schema,
    *,
    joined: bytes | None = None,
    skip_unread: bool = False,
) -> tuple[pa.Table | None, list[int], list[int]]:
    """Step 2: ``(table, read, unread)``: the rows of the payloads at positions ``read`` (in
    order) and the positions whose JSON types differ from ``schema``. ``joined``: the values
    joined by newlines, when the caller has them already; ``skip_unread``: see the module
    docstring (the caller has done its step 1)."""
    good: list[int] = []
    bad: list[int] = []
    tables: list[pa.Table] = []
    # Every other field inferred, not ignored: Arrow then checks each key of each object for
    # repeats (an ignored field is skipped unchecked). Its columns are dropped after the read.
    # With ``skip_unread`` ignored: parsed for syntax only, half the cost of inferring them.
    options = pa_json.ParseOptions(
        explicit_schema=schema, unexpected_field_behavior="ignore" if skip_unread else "infer"
    )

    def read(lo: int, hi: int) -> None:
        whole = joined is not None and hi - lo == len(values)
        data = joined if joined is not None and whole else b"\n".join(values[lo:hi])
        try:
            table = pa_json.read_json(
                pa.py_buffer(data),
                read_options=pa_json.ReadOptions(
                    use_threads=False, block_size=max(1 << 20, len(data) + 2)
                ),
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
        if table.num_rows != hi - lo or not _finite(table.columns):
            # Row count: framing makes a mismatch impossible; be sure anyway.
            if hi - lo == 1 or table.num_rows != hi - lo:
                bad.extend(range(lo, hi))
                return
            middle = (lo + hi) // 2
            read(lo, middle)
            read(middle, hi)
            return
        # Inferred fields also widen the schema's structs: cast back to the schema's fields.
        tables.append(table.select(schema.names).cast(schema))
        good.extend(range(lo, hi))

    if values:
        read(0, len(values))
    if not tables:
        return None, good, bad
    return pa.concat_tables(tables).combine_chunks(), good, bad


def _finite(arrays: Sequence[pa.Array | pa.ChunkedArray]) -> bool:
    """No NaN or infinity in any number of these columns, however deeply nested."""
    for array in arrays:
        chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
        for chunk in chunks:
            kind = chunk.type
            if pa.types.is_floating(kind):
                if pc.all(pc.is_finite(chunk)).as_py() is False:
                    return False
                continue
            if pa.types.is_struct(kind):
                children = [chunk.field(i) for i in range(kind.num_fields)]
            elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
                children = [chunk.values]
            else:
                continue
            if not _finite(children):
                return False
    return True


def candidate_lists(
    lists: pa.Array, *, percent: bool, max_plate: int, keep: int, most: int
) -> tuple[pa.Array, np.ndarray]:
    """:func:`~pipeline.codec.vendors._shared.candidates_of` for a column of candidate lists
    (``list<struct<plate, score, confidence>>``, a null list meaning none): the ``CANDIDATES``
    column and which rows it could prove (the others go to the slow path).

    Checked as the mapper checks: at most ``most`` entries, each an object with a plate of
    printable text up to ``max_plate`` characters and a confidence (``confidence``, else
    ``score``) from 0 to 1 (or 100); kept: the best ``keep``, stable on ties, unknown last.
    """
    rows = len(lists)
    top = 100.0 if percent else 1.0
    lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False)
    row_ok = lengths <= most
    flat = pc.list_flatten(lists)
    parent = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    plate = pc.struct_field(flat, "plate")
    confidence = pc.coalesce(pc.struct_field(flat, "confidence"), pc.struct_field(flat, "score"))
    entry_ok = pc.and_(
        pc.and_(pc.is_valid(flat), pc.match_substring_regex(plate, "[!-~]")),
        pc.and_(
            pc.less_equal(pc.utf8_length(plate), max_plate),
            pc.or_kleene(
                pc.is_null(confidence),
                pc.and_(pc.greater_equal(confidence, 0.0), pc.less_equal(confidence, top)),
            ),
        ),
    ).fill_null(False)
    entry_ok_np = np.asarray(entry_ok.to_numpy(zero_copy_only=False), dtype=bool)
    row_ok[np.unique(parent[~entry_ok_np])] = False
    # Best first per row: by row, known before unknown, higher first, then as sent.
    unknown = np.asarray(pc.is_null(confidence).to_numpy(zero_copy_only=False), dtype=bool)
    value = np.nan_to_num(
        np.asarray(confidence.fill_null(0.0).to_numpy(zero_copy_only=False), dtype=np.float64)
    )
    sent = np.arange(len(parent))
    order = np.lexsort((sent, -value, unknown, parent))
    ordered_parent = parent[order]
    rank = sent - np.searchsorted(ordered_parent, ordered_parent, side="left")
    chosen = order[rank < keep]
    counts = np.bincount(parent[chosen], minlength=rows) if len(chosen) else np.zeros(rows, int)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    take = pa.array(chosen, pa.int64())
    entries = pa.StructArray.from_arrays(
        [
            plate.take(take),
            pc.divide(confidence.take(take), top).cast(pa.float32()),
        ],
        names=["plate", "confidence"],
    )
    result = pa.ListArray.from_arrays(pa.array(offsets), entries)
    return result, row_ok


def utc_text(millis: pa.Array) -> pa.Array:
    """Epoch milliseconds as RFC 3339 UTC text with milliseconds (``2026-01-31T12:00:00.250Z``),
    as ``pc.strftime`` writes a UTC timestamp: formatted without a time zone, which costs
    ``strftime`` a look-up per row (twenty times the time), then given its ``T`` and ``Z``."""
    text = pc.cast(pc.cast(millis, pa.timestamp("ms")), pa.string())
    return pc.binary_join_element_wise(pc.binary_replace_slice(text, 10, 11, "T"), "Z", "")


def directions_by_heading(
    keys: pa.Array, found: Mapping[str, Target], headings: pa.Array
) -> list[str]:
    """``found[key].rule.by_heading(heading)`` of each row (a null heading: ``None``), in one
    numpy pass per distinct key instead of a call per row; every key must be in ``found``."""
    encoded = keys if isinstance(keys, pa.DictionaryArray) else keys.dictionary_encode()
    index = np.asarray(encoded.indices.to_numpy(zero_copy_only=False))
    degrees = np.asarray(
        headings.cast(pa.float64()).fill_null(math.nan).to_numpy(zero_copy_only=False),
        dtype=np.float64,
    )
    directions = np.empty(len(keys), dtype=object)
    for k, key in enumerate(encoded.dictionary.to_pylist()):
        rule = found[key].rule
        rows = index == k
        if rule.entry_heading is None:
            directions[rows] = rule.lane_direction
            continue
        # by_heading's arithmetic, elementwise; NaN (no heading) fails both tests: the lane's.
        apart = np.abs(degrees[rows] - rule.entry_heading) % 360.0
        apart = np.minimum(apart, 360.0 - apart)
        answers = np.array(["entry", "exit", rule.lane_direction], dtype=object)
        directions[rows] = answers[np.where(apart < 90.0, 0, np.where(apart > 90.0, 1, 2))]
    listed: list[str] = directions.tolist()
    return listed


def by_value(values: pa.Array, mapping: Callable[[str | None], str | None]) -> pa.Array:
    """``mapping`` applied once per distinct value (countries, classes: a handful per batch)."""
    encoded = values.dictionary_encode()  # a null stays a null index
    mapped = pa.array([mapping(value) for value in encoded.dictionary.to_pylist()], pa.string())
    result = mapped.take(encoded.indices)
    if values.null_count:
        result = pc.if_else(pc.is_valid(values), result, pa.scalar(mapping(None), pa.string()))
    return result


def no_reads(slow: list[int]) -> ColumnReads:
    """Nothing read by the batch: every payload at ``slow`` goes to the per-message mapper."""
    empty = pa.table({f.name: pa.array([], f.type) for f in MAPPED_SCHEMA if f.name != "msg_index"})
    return ColumnReads(empty, np.zeros(0, np.int64), pa.array([], CANDIDATES), slow)


def targets(registry: VendorRegistry, vendor: str, keys: pa.Array) -> dict[str, Target]:
    """The registered cameras among ``keys``, one registry look-up per distinct key."""
    found: dict[str, Target] = {}
    for key in pc.unique(keys.filter(pc.is_valid(keys))).to_pylist():
        try:
            found[key] = find_target(registry, vendor, [key])
        except Rejection:
            continue
    return found


def read_columns(
    targets_of_rows: Sequence[Target], directions: Sequence[str], **columns: pa.Array
) -> pa.Table:
    """The mapped table: the camera's columns from its target, the rest as given."""
    rows = len(targets_of_rows)
    given = {
        "schema": pa.repeat(pa.scalar(PLATE_READ_SCHEMA_ID), rows),
        "site_id": pa.array([t.camera.site_id for t in targets_of_rows], pa.string()),
        "camera_id": pa.array([t.camera.id for t in targets_of_rows], pa.string()),
        "lane": pa.array([t.camera.lane for t in targets_of_rows], pa.int64()),
        "direction": pa.array(directions, pa.string()),
        **columns,
    }
    return pa.table({f.name: given[f.name] for f in MAPPED_SCHEMA if f.name != "msg_index"})
