"""Decode and validate a batch of canonical ``plate_read/1`` messages into an Arrow table.

Pure: bytes in, an Arrow table plus rejections out; no Kafka, no files, no clock of its own.

How a batch flows (the fast path has no per-message Python):

1. **Pre-filter**, vectorised over the raw values: ``None``/empty -> ``empty_value``; longer than
   ``max_message_bytes`` -> ``oversized``. A value goes to the *slow path* instead of the fast one
   when it is not framed as ``{...}`` (leading whitespace, BOM, array, scalar, trailing bytes),
   contains ``\\n`` or ``\\r`` (it cannot be newline-joined; pretty-printed JSON is fine and is
   decoded there) or NUL, or is not valid UTF-8 (Arrow's parser does not check).
2. **Fast parse**: the remaining values are joined with ``\\n`` and read by
   ``pyarrow.json.read_json`` with an explicit schema; unknown fields are ignored, so producers
   may add fields. Framing guarantees every value yields at least one row or a parse error and
   that values cannot merge across the newline, so "rows == values" proves a 1:1 mapping.
   Bad values are isolated with a few extra reads each (:class:`_FastParse`). Arrow accepts
   ``NaN``/``Infinity`` literals, which JSON forbids; rows holding one are found after the
   read (:func:`_reroute_literals`) and sent to the slow path.
3. **Slow path**, one message at a time: :func:`~pipeline.codec.reasons.strict_json` scoped
   to the ``plate_read/1`` fields (the codec's hostile-input policy, :mod:`pipeline.codec`),
   exactly one object, JSON types per field (``true`` is not a lane).
   Its output is a row of the same Arrow shape as the fast path's, so both share step 4.
4. **Vectorised validation** (:func:`_validate`, the one implementation of the rules) picks at
   most one outcome per row, first match wins:

   1. ``unsupported_format``: ``schema`` is a string other than ``plate_read/1``;
   2. ``schema_violation``: per field, in ``PLATE_READ_INPUT`` order: missing or null; longer
      than its ``max_length``; its own rule (event_id pattern, lane 1..99, direction
      entry|exit, captured_at RFC 3339 with ``Z`` or ``±HH:MM``, plate_country ``^[A-Z]{2}$``,
      confidence finite in 0..1, vehicle_class pattern);
   3. *expired*: captured_at before the retention cutoff. Not a rejection: counted and dropped,
      so a plate that may no longer be kept never reaches the DLQ either;
   4. ``unknown_site``: the (site_id, camera_id) pair is not in the registry;
   5. ``invalid_plate``: the normalised plate does not fit its country's format;
   6. ``future_timestamp``: captured_at later than ``now`` + ``future_tolerance``.

   Failures found before step 4 come first: ``empty_value``, ``oversized``, then the slow
   path's ``malformed_json`` and JSON-type ``schema_violation``.

Why "not one JSON object" is ``malformed_json`` and not ``schema_violation``: the value is not
a single JSON document of the expected kind at all (array, scalar, two documents, trailing
bytes, BOM); ``schema_violation`` is kept for a well-formed object whose fields are wrong.
Rejection details name fields and rules only, never a value from the message.
"""

from __future__ import annotations

import bisect
import functools
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from pipeline.codec.reasons import NestedTooDeep, Reason, Rejection, strict_json
from pipeline.reference.countries import known_countries
from pipeline.reference.plates import normalise_plates
from pipeline.reference.sites import PAIR_SEPARATOR, SiteRegistry
from pipeline.schemas import (
    COUNTRY_PATTERN,
    DECODED_PLATE_READS,
    DIRECTIONS,
    EVENT_ID_PATTERN,
    LANE_MAX,
    LANE_MIN,
    PLATE_READ_INPUT,
    PLATE_READ_SCHEMA_ID,
    RFC3339_LONG_FRACTION_PATTERN,
    RFC3339_PATTERN,
    UTC_TS,
    VEHICLE_CLASS_PATTERN,
)

logger = logging.getLogger(__name__)

SOURCE_FORMAT: Final = "canonical"
DECODE_OUTPUT_SCHEMA: Final = DECODED_PLATE_READS.append(
    pa.field("msg_index", pa.int32(), nullable=False)
)

_FIELDS: Final = {f.name: f for f in PLATE_READ_INPUT}
# lane is read as int64, so a lane of 300 reaches the range rule instead of failing the parse.
_PARSE_SCHEMA: Final = pa.schema(
    [pa.field(f.name, pa.int64() if f.name == "lane" else f.arrow_type) for f in PLATE_READ_INPUT]
)
# JSON type each field must have in the slow path, looked up once (pyarrow calls are slow).
_JSON_TYPES: Final[dict[str, type]] = {
    f.name: str if pa.types.is_string(f.type) else int if pa.types.is_integer(f.type) else float
    for f in _PARSE_SCHEMA
}
_INDEXED_SCHEMA: Final = _PARSE_SCHEMA.append(pa.field("msg_index", pa.int32()))
_PARSE_OPTIONS: Final = pa_json.ParseOptions(
    explicit_schema=_PARSE_SCHEMA, unexpected_field_behavior="ignore"
)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# Fast-path tuning. An Arrow read has a fixed cost of a few hundred microseconds, a slow-path
# message about ten, so pieces this small after a failure are decoded one by one.
_SLOW_SEGMENT: Final = 16
# Read windows after a failure, in values; see _FastParse.
_MIN_WINDOW: Final = 64
_MAX_WINDOW: Final = 4096
# Larger pieces are split before reading, to bound the memory of one read.
_MAX_SEGMENT_BYTES: Final = 1 << 30
# Arrow's JSON block size; a block must hold the longest value (the caller ensures that).
_BLOCK_BYTES: Final = 1 << 20
# Bytes that send a value to the slow path; see step 1 of the module docstring.
# Values that cannot be newline-joined, plus the commonest wrong-type shapes from faulty
# producers (a lane sent as text or a boolean): Arrow's explicit-schema read fails on those,
# and each failure costs a re-read of the rest of the window; the slow path decides them at once.
# (Inside a valid JSON string a bare quote cannot occur, so no valid value matches by accident
# except through the slow path, which accepts it.)
_SLOW_BYTES: Final = (b"\n", b"\r", b"\x00")
# One pass for the three lane shapes: re finds the literal prefix, then checks one byte. Three
# bytes.find passes cost 10 ms on a 25k batch (JSON is full of '"', which defeats find's
# skips); this one 3.7 ms.
_SLOW_LANE: Final = re.compile(rb'"lane":["tf]')
# Non-finite literals Arrow's parser accepts and JSON does not: NaN, Inf, Infinity, signed.
_LITERAL_NEEDLES: Final = (b"NaN", b"Inf")
_ROW_HINT: Final = re.compile(r"in row (\d+)\s*$")


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds applied to every message."""

    max_message_bytes: int = 65536
    future_tolerance: timedelta = timedelta(minutes=5)


DEFAULT_LIMITS: Final = DecodeLimits()


@dataclass(frozen=True)
class Rejected:
    """One message that goes to the DLQ."""

    index: int  # position in the input batch
    reason: Reason
    detail: str  # human-readable; never contains the plate text or any other message value


@dataclass(frozen=True)
class DecodeResult:
    """What one batch became.

    Invariant: ``len(table) + len(rejected) + len(expired)`` equals the number of input values
    and each input index appears exactly once across ``table["msg_index"]``, ``rejected`` and
    ``expired``.
    """

    table: pa.Table  # DECODE_OUTPUT_SCHEMA, rows in input order
    rejected: list[Rejected]  # sorted by index
    expired: list[int] = field(default_factory=list)  # counted, never stored anywhere


def decode_plate_reads(
    values: Sequence[bytes | None],
    *,
    registry: SiteRegistry,
    now: datetime,
    retention_cutoff: datetime,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> DecodeResult:
    """Decode, validate and normalise a batch of canonical plate reads.

    ``now`` and ``retention_cutoff`` must be timezone-aware. Never raises on message content;
    see the module docstring for the paths and the order in which reasons are chosen.
    """
    if now.tzinfo is None or retention_cutoff.tzinfo is None:
        raise ValueError("now and retention_cutoff must be timezone-aware")
    raw, data = binary_values(values)
    rejected: list[Rejected] = []
    slow: list[int] = []
    fast = _prefilter(raw, values, data, limits, rejected, slow)
    parsed = _parse_fast(
        raw, values, fast, slow, block_bytes=max(_BLOCK_BYTES, limits.max_message_bytes + 2)
    )
    parsed = _reroute_literals(
        parsed, raw=raw, values=values, data=data, not_parsed=[r.index for r in rejected], slow=slow
    )
    slow.sort()
    slow_rows = _parse_slow(values, slow, rejected)
    if slow_rows:
        slow_table = pa.Table.from_pylist(slow_rows, schema=_INDEXED_SCHEMA)
        parsed = pa.concat_tables([parsed, slow_table]).sort_by("msg_index")
    table, expired = _validate(
        parsed,
        registry=registry,
        now=now,
        cutoff=retention_cutoff,
        limits=limits,
        rejected=rejected,
    )
    rejected.sort(key=lambda r: r.index)
    logger.debug(
        "decoded %d values: %d rows, %d rejected, %d expired, %d via the slow path",
        len(values),
        table.num_rows,
        len(rejected),
        len(expired),
        len(slow),
    )
    return DecodeResult(table, rejected, expired)


def mapped_columns(reads: Sequence[Mapping[str, object]]) -> pa.Table:
    """Reads a vendor mapper built (``plate_read/1`` fields as Python values of the fields'
    types) as the table :func:`validate_mapped_columns` takes; ``msg_index`` is the position."""
    columns = [pa.array([read.get(f.name) for read in reads], f.type) for f in _PARSE_SCHEMA]
    columns.append(pa.array(range(len(reads)), pa.int32()))
    return pa.Table.from_arrays(columns, schema=_INDEXED_SCHEMA)


MAPPED_SCHEMA: Final = _INDEXED_SCHEMA  # the columns validate_mapped_columns takes


def validate_mapped_columns(
    parsed: pa.Table,
    *,
    registry: SiteRegistry,
    now: datetime,
    retention_cutoff: datetime,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> DecodeResult:
    """Step 4 alone, for reads mapped from vendor payloads (:data:`MAPPED_SCHEMA` columns):
    the same rules as :func:`decode_plate_reads`, without writing JSON and parsing it back."""
    if now.tzinfo is None or retention_cutoff.tzinfo is None:
        raise ValueError("now and retention_cutoff must be timezone-aware")
    rejected: list[Rejected] = []
    table, expired = _validate(
        parsed,
        registry=registry,
        now=now,
        cutoff=retention_cutoff,
        limits=limits,
        rejected=rejected,
    )
    rejected.sort(key=lambda r: r.index)
    return DecodeResult(table, rejected, expired)


# -- step 1: pre-filter ------------------------------------------------------------------------


def _prefilter(
    raw: pa.Array,
    values: Sequence[bytes | None],
    data: bytes,
    limits: DecodeLimits,
    rejected: list[Rejected],
    slow: list[int],
) -> pa.Array:
    """Sort values into rejected, slow and fast; return the input indices of the fast ones.

    ``raw`` holds ``values`` over ``data``, their concatenation (:func:`binary_values`).
    """
    lengths = pc.binary_length(raw)
    empty = pc.equal(lengths, 0).fill_null(True)
    oversized = pc.greater(lengths, limits.max_message_bytes).fill_null(False)
    framed = pc.and_(pc.starts_with(raw, "{"), pc.ends_with(raw, "}")).fill_null(False)
    eligible = pc.and_(framed, pc.invert(pc.or_(empty, oversized)))
    fast = pc.indices_nonzero(eligible)
    if len(fast) < len(raw):
        for i in pc.indices_nonzero(empty).to_pylist():
            rejected.append(Rejected(i, Reason.EMPTY_VALUE, "empty value or tombstone"))
        for i in pc.indices_nonzero(oversized).to_pylist():
            rejected.append(
                Rejected(i, Reason.OVERSIZED, f"longer than {limits.max_message_bytes} bytes")
            )
        unframed = pc.invert(pc.or_(eligible, pc.or_(empty, oversized)))
        slow.extend(pc.indices_nonzero(unframed).to_pylist())
    found = _values_containing(raw, data, _SLOW_BYTES) | _values_matching(raw, data, _SLOW_LANE)
    marked = {i for i in found if eligible[i].as_py()}
    marked |= _invalid_utf8(raw, values, eligible)
    if marked:
        slow.extend(marked)
        kept = pc.invert(pc.is_in(fast, value_set=pa.array(sorted(marked), fast.type)))
        fast = fast.filter(kept)
    return fast.cast(pa.int32())


def binary_values(values: Sequence[bytes | None]) -> tuple[pa.Array, bytes]:
    """``values`` as a large_binary array (``None`` is null), and the bytes it is a view of:
    the values concatenated.

    One copy, by ``bytes.join``. ``pa.array(values)`` grows its buffer by doubling and copies
    it at each step; in the worker, where every large block is mapped and unmapped on its own
    (:func:`pipeline.ingest.run.bound_memory`), that cost a 25k-message batch 15 ms against
    8 ms for this, and the concatenation (which the byte scans need) came on top.
    """
    count = len(values)
    present = [v for v in values if v is not None]
    lengths = np.fromiter((0 if v is None else len(v) for v in values), np.int64, count)
    validity = None
    if len(present) < count:
        valid = np.fromiter((v is not None for v in values), np.bool_, count)
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
    data = b"".join(present)
    array = pa.Array.from_buffers(
        pa.large_binary(),
        count,
        [validity, pa.py_buffer(_ends(lengths)), pa.py_buffer(data)],
        null_count=count - len(present),
    )
    return array, data


def _ends(lengths: np.ndarray) -> np.ndarray:
    """Offsets of values of ``lengths`` laid end to end: 0, then each one's end."""
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def _offsets(array: pa.Array) -> memoryview:
    """The int64 value offsets of a large_binary array, without copying."""
    return memoryview(array.buffers()[1])[: (len(array) + 1) * 8].cast("q")


def _values_hit(raw: pa.Array, first_hit: Callable[[int], int]) -> set[int]:
    """Indices of the values of ``raw`` that ``first_hit`` finds something in.

    ``first_hit(pos)`` is the position of the first hit at or after ``pos`` in the values
    concatenated, or -1. Each hit skips the rest of its value, so a value repeating what is
    looked for costs one hit. A hit that runs across the end of a value counts for that
    value: harmless, the slow path decides it like any other.
    """
    pos = first_hit(0)
    if pos == -1:
        return set()
    found: set[int] = set()
    offsets = _offsets(raw)
    while pos != -1:
        i = bisect.bisect_right(offsets, pos) - 1
        found.add(i)
        pos = first_hit(offsets[i + 1])
    return found


def _values_containing(raw: pa.Array, data: bytes, needles: tuple[bytes, ...]) -> set[int]:
    """Indices of the values of ``raw`` (concatenated in ``data``) holding any needle.
    bytes.find is memchr-fast for one byte and a few GB/s for three."""
    found: set[int] = set()
    for needle in needles:
        found |= _values_hit(raw, functools.partial(data.find, needle))
    return found


def _values_matching(raw: pa.Array, data: bytes, pattern: re.Pattern[bytes]) -> set[int]:
    """Indices of the values of ``raw`` (concatenated in ``data``) where ``pattern`` matches."""

    def first_hit(pos: int) -> int:
        match = pattern.search(data, pos)
        return -1 if match is None else match.start()

    return _values_hit(raw, first_hit)


def _invalid_utf8(raw: pa.Array, values: Sequence[bytes | None], eligible: pa.Array) -> set[int]:
    """Eligible values that are not UTF-8 (Arrow's JSON reader does not check).

    One vectorised check for the batch; only when it fails are halves of the batch checked
    (slices, no copy) until the offenders are isolated: O(k log n) checks for k bad values.
    A value that is not eligible is never reported, but may cost checks of its own.
    """
    try:
        raw.cast(pa.large_string())
    except pa.ArrowInvalid:
        pass
    else:
        return set()
    checked = eligible.to_numpy(zero_copy_only=False)
    bad: set[int] = set()
    stack = [(0, len(raw))]
    while stack:
        lo, hi = stack.pop()
        if hi - lo <= _SLOW_SEGMENT:
            for i in np.flatnonzero(checked[lo:hi]).tolist():
                try:
                    (values[lo + i] or b"").decode("utf-8")
                except UnicodeDecodeError:
                    bad.add(lo + i)
            continue
        try:
            raw.slice(lo, hi - lo).cast(pa.large_string())
        except pa.ArrowInvalid:
            stack += _halves(lo, hi)
    return bad


# -- step 2: fast parse ------------------------------------------------------------------------


def _parse_fast(
    raw: pa.Array,
    values: Sequence[bytes | None],
    fast: pa.Array,
    slow: list[int],
    *,
    block_bytes: int,
) -> pa.Table:
    """Read the fast values with Arrow; append the indices it could not place to ``slow``."""
    if len(fast) == 0:
        return _INDEXED_SCHEMA.empty_table()
    return _FastParse(raw, values, fast, slow, block_bytes).run()


class _FastParse:
    """Arrow reads of newline-joined values, isolating the values Arrow cannot take.

    A failed read names the row it stopped at (Arrow counts documents from the start of the
    buffer): that value and the one before it go to the slow path, and the rest of the piece
    is read again. The prefixes before each failure are believed good and read together once
    at the end, so k bad values cost about k + 2 reads; if that read fails too, the prefixes
    are retried one by one. A read with more rows than values (two documents in one value)
    is resolved by a regex; anything else is bisected. After a failure, reads cover a window
    of values sized from the distance between errors, growing back while reads succeed.
    Pieces of at most ``_SLOW_SEGMENT`` values after a failure, and everything after too
    many failures, go to the slow path.
    """

    def __init__(
        self,
        raw: pa.Array,
        values: Sequence[bytes | None],
        fast: pa.Array,
        slow: list[int],
        block_bytes: int,
    ) -> None:
        self._raw = raw
        self._fast = fast
        self._slow = slow
        self._block_bytes = block_bytes
        # The fast values, each followed by a newline, in one copy (fast values are not null).
        chosen = self._chosen = fast.to_numpy()
        lengths = np.diff(np.frombuffer(_offsets(raw), np.int64))[chosen] + 1
        picked = values if len(chosen) == len(values) else [values[i] for i in chosen.tolist()]
        self._buffer = pa.py_buffer(b"\n".join([*picked, b""]))
        self._offsets = _ends(lengths).tolist()
        self._pieces: list[pa.Table] = []
        # A failed read costs about as much as ten slow-path values; past this many failures
        # the rest of the batch goes to the slow path.
        self._failures_left = 8 + len(fast) // 64
        # Values per read. The first read takes the whole batch. Once one has failed, more
        # errors are expected: a failed read wastes the values before its error (they are read
        # again), and every read has a fixed cost worth ~128 values. For errors d values apart,
        # windows of sqrt(2 * 128 * d) = 16 * sqrt(d) minimise the sum; they double while
        # reads succeed, up to _MAX_WINDOW.
        self._window = len(fast)

    def run(self) -> pa.Table:
        deferred = self._drain([(0, len(self._fast))], defer=True, first=True)
        unresolved = self._read_together(deferred)
        if unresolved:
            self._drain(unresolved, defer=False, first=False)
        if not self._pieces:
            return _INDEXED_SCHEMA.empty_table()
        table = pa.concat_tables(self._pieces)
        return table.sort_by("msg_index") if len(self._pieces) > 1 else table

    def _drain(
        self, stack: list[tuple[int, int]], *, defer: bool, first: bool
    ) -> list[tuple[int, int]]:
        deferred: list[tuple[int, int]] = []
        while stack:
            lo, hi = stack.pop()
            if hi <= lo:
                continue
            if not first and (hi - lo <= _SLOW_SEGMENT or self._failures_left <= 0):
                self._to_slow(lo, hi)
                continue
            first = False
            if self._offsets[hi] - self._offsets[lo] > _MAX_SEGMENT_BYTES:
                stack += _halves(lo, hi)
                continue
            if hi - lo > self._window:
                stack.append((lo + self._window, hi))
                hi = lo + self._window
            start, end = self._offsets[lo], self._offsets[hi]
            table, hint = _read(self._buffer.slice(start, end - start), self._block_bytes)
            if table is not None and table.num_rows == hi - lo:
                self._pieces.append(table.append_column("msg_index", self._fast.slice(lo, hi - lo)))
                self._window = min(2 * self._window, _MAX_WINDOW)
                continue
            self._failures_left -= 1
            if table is not None:
                stack += self._without_multi_documents(lo, hi) or _halves(lo, hi)
            elif hint is not None and 0 <= hint < hi - lo:
                # After trailing bytes Arrow names the row after the culprit: send both.
                first_bad = lo + max(hint - 1, 0)
                self._window = min(max(_MIN_WINDOW, int(16 * math.sqrt(hint))), _MAX_WINDOW)
                self._to_slow(first_bad, lo + hint + 1)
                stack.append((lo + hint + 1, hi))
                if defer:
                    deferred.append((lo, first_bad))
                else:
                    stack.append((lo, first_bad))
            else:
                stack += _halves(lo, hi)
        return deferred

    def _read_together(self, segments: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Read the deferred prefixes in one go; return the segments still to be resolved."""
        for attempt in range(2):
            segments = [(lo, hi) for lo, hi in segments if hi > lo]
            if not segments:
                return []
            view = memoryview(self._buffer)
            data = b"".join(view[self._offsets[lo] : self._offsets[hi]] for lo, hi in segments)
            table, _ = _read(pa.py_buffer(data), self._block_bytes)
            if table is not None and table.num_rows == sum(hi - lo for lo, hi in segments):
                index = pa.concat_arrays([self._fast.slice(lo, hi - lo) for lo, hi in segments])
                self._pieces.append(table.append_column("msg_index", index))
                return []
            self._failures_left -= 1
            if table is None or attempt:
                break
            # A two-document value hid among the prefixes (it shifts Arrow's row numbers, so
            # the hint named the value after the real culprit); drop such values, try again.
            segments = [
                part
                for lo, hi in segments
                for part in self._without_multi_documents(lo, hi) or [(lo, hi)]
            ]
        return segments

    def _without_multi_documents(self, lo: int, hi: int) -> list[tuple[int, int]] | None:
        """Send values holding two documents to the slow path; the pieces around them.

        Framing means a second document starts right after the first one's "}", so one regex
        pass over the piece finds them (over the input values the piece spans, a slice: no
        copy). None if there is no such value.
        """
        chosen = self._chosen[lo:hi]
        first, end = int(chosen[0]), int(chosen[-1]) + 1
        multi = pc.match_substring_regex(self._raw.slice(first, end - first), r"\}[ \t]*\{")
        hits = pc.indices_nonzero(multi).to_numpy() + first
        at = np.searchsorted(chosen, hits)
        bad = (at[chosen[np.minimum(at, len(chosen) - 1)] == hits] + lo).tolist()
        if not bad:
            return None
        for i in bad:
            self._to_slow(i, i + 1)
        return list(zip([lo, *(i + 1 for i in bad)], [*bad, hi], strict=True))

    def _to_slow(self, lo: int, hi: int) -> None:
        self._slow.extend(self._fast.slice(lo, hi - lo).to_pylist())


def _halves(lo: int, hi: int) -> list[tuple[int, int]]:
    mid = lo + (hi - lo) // 2
    return [(mid, hi), (lo, mid)]


def _reroute_literals(
    parsed: pa.Table,
    *,
    raw: pa.Array,
    values: Sequence[bytes | None],
    data: bytes,
    not_parsed: list[int],
    slow: list[int],
) -> pa.Table:
    """Move rows whose bytes hold a NaN/Infinity literal to the slow path, which rejects them.

    A literal in ``confidence`` shows as a non-finite value (in lane or a string field it
    already failed the parse). One in an unknown field vanishes in the parse, and scanning
    every byte for it would cost a fifth of the batch, so quotes are counted instead: each
    non-null field read accounts for 2 quotes (its key) or 4 (key and string value). Any other
    quote belongs to an unknown field, a null or an escape, so when the parsed rows' bytes hold
    exactly the expected number, no row has an unknown field and nothing can hide. Only
    otherwise are the bytes scanned.
    """
    if parsed.num_rows == 0:
        return parsed
    confidence = parsed.column("confidence")
    suspects = set(
        parsed.column("msg_index")
        .filter(pc.invert(pc.is_finite(confidence).fill_null(True)))
        .to_pylist()
    )
    expected = sum(
        (parsed.num_rows - parsed.column(f.name).null_count)
        * (4 if pa.types.is_string(f.type) else 2)
        for f in _PARSE_SCHEMA
    )
    actual = data.count(b'"') - sum((values[i] or b"").count(b'"') for i in not_parsed + slow)
    if actual != expected:
        hits = pa.array(sorted(_values_containing(raw, data, _LITERAL_NEEDLES)), pa.int32())
        in_parsed = pc.is_in(hits, value_set=parsed.column("msg_index"))
        suspects.update(hits.filter(in_parsed).to_pylist())
    if not suspects:
        return parsed
    slow.extend(suspects)
    moved = pa.array(sorted(suspects), pa.int32())
    return parsed.filter(pc.invert(pc.is_in(parsed.column("msg_index"), value_set=moved)))


def _read(buffer: pa.Buffer, block_bytes: int) -> tuple[pa.Table | None, int | None]:
    """One Arrow read of newline-separated values; on failure the row Arrow blamed, if any."""
    # Blocks of about a megabyte: a read that fails stops within a block of the error
    # instead of first chunking the whole batch (a batch-sized block made every failure cost
    # a pass over all the remaining bytes). Row numbers in errors count from the start of the
    # buffer across blocks. One thread: parallelism is per Kafka partition, by design.
    options = pa_json.ReadOptions(use_threads=False, block_size=min(buffer.size + 1, block_bytes))
    try:
        table = pa_json.read_json(
            pa.BufferReader(buffer), read_options=options, parse_options=_PARSE_OPTIONS
        )
    except (pa.ArrowException, ValueError) as exc:
        match = _ROW_HINT.search(str(exc))
        return None, int(match.group(1)) if match else None
    return table.select(_PARSE_SCHEMA.names), None


# -- step 3: slow path -------------------------------------------------------------------------


# The fields the canonical decoder reads: repeats and unpaired surrogates count in these only,
# as the vectorised reader skips every other field unparsed (see pipeline.codec).
_READ_FIELDS: Final = frozenset(_FIELDS)


def _parse_slow(
    values: Sequence[bytes | None], indices: list[int], rejected: list[Rejected]
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i in indices:
        try:
            row = _parse_one(values[i] or b"")
        except Rejection as failure:
            rejected.append(Rejected(i, failure.reason, failure.detail))
            continue
        row["msg_index"] = i
        rows.append(row)
    return rows


def _parse_one(value: bytes) -> dict[str, object]:
    """Parse one message into a row of ``_PARSE_SCHEMA`` values, or raise :class:`Rejection`."""
    try:
        document = strict_json(value, fields=_READ_FIELDS)
    except NestedTooDeep:
        return _parse_deep(value)
    if not isinstance(document, dict):
        raise Rejection(Reason.MALFORMED_JSON, "the message is not a JSON object")
    schema = document.get("schema")
    if isinstance(schema, str) and schema != PLATE_READ_SCHEMA_ID:
        # Another format's fields mean nothing here; validation reports unsupported_format.
        row: dict[str, object] = dict.fromkeys(_PARSE_SCHEMA.names)
        row["schema"] = schema
        return row
    return {name: _typed(name, kind, document.get(name)) for name, kind in _JSON_TYPES.items()}


def _parse_deep(value: bytes) -> dict[str, object]:
    """A message nested beyond Python's recursion limit, read by Arrow as the fast path would.

    Arrow's parser has no depth limit, so deep nesting inside an unknown field passes the fast
    path; asking the same reader here keeps both paths' answers equal.
    """
    failure = Rejection(Reason.MALFORMED_JSON, "JSON nested too deeply to be read")
    if any(needle in value for needle in _LITERAL_NEEDLES):
        raise failure
    table, _ = _read(pa.py_buffer(value), len(value) + 1)
    if table is None or table.num_rows != 1:
        raise failure
    row: dict[str, object] = table.to_pylist()[0]
    return row


def _typed(name: str, kind: type, value: object) -> object:
    """Check one field's JSON type; null stays null (validation reports missing fields)."""
    if value is None:
        return None
    if kind is str:
        if not isinstance(value, str):
            raise Rejection(Reason.SCHEMA_VIOLATION, f"field '{name}' must be a string")
        return value  # unpaired surrogates were refused by strict_json
    if kind is int:
        # bool is an int in Python, and JSON true is not a lane number.
        if type(value) is not int:
            raise Rejection(Reason.SCHEMA_VIOLATION, f"field '{name}' must be an integer")
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise Rejection(Reason.SCHEMA_VIOLATION, _range_detail(name))
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Rejection(Reason.SCHEMA_VIOLATION, f"field '{name}' must be a number")
    try:
        return float(value)
    except OverflowError as exc:
        raise Rejection(Reason.SCHEMA_VIOLATION, _range_detail(name)) from exc


# -- step 4: vectorised validation -------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    reason: Reason | None  # None: expired on arrival
    detail: str


def _range_detail(name: str) -> str:
    if name == "lane":
        return f"field 'lane' must be an integer from {LANE_MIN} to {LANE_MAX}"
    return f"field '{name}' must be a finite number from 0 to 1"


def _validate(
    parsed: pa.Table,
    *,
    registry: SiteRegistry,
    now: datetime,
    cutoff: datetime,
    limits: DecodeLimits,
    rejected: list[Rejected],
) -> tuple[pa.Table, list[int]]:
    """Apply every rule to every row at once; return the stored rows and the expired indices."""
    if parsed.num_rows == 0:
        return DECODE_OUTPUT_SCHEMA.empty_table(), []
    col: dict[str, pa.Array] = {
        name: parsed.column(name).combine_chunks() for name in _INDEXED_SCHEMA.names
    }
    conditions: list[pa.Array] = []
    checks: list[_Check] = []

    def check(failed: pa.Array, reason: Reason | None, detail: str) -> None:
        conditions.append(failed.fill_null(False))
        checks.append(_Check(reason, detail))

    violation = Reason.SCHEMA_VIOLATION
    schema = col["schema"]
    check(
        pc.not_equal(schema, PLATE_READ_SCHEMA_ID),
        Reason.UNSUPPORTED_FORMAT,
        f"schema is not {PLATE_READ_SCHEMA_ID}",
    )
    captured = _parse_times(col["captured_at"])
    rules: dict[str, Callable[[pa.Array], pa.Array]] = {
        "event_id": lambda a: pc.invert(pc.match_substring_regex(a, EVENT_ID_PATTERN)),
        "lane": lambda a: pc.invert(
            pc.and_(pc.greater_equal(a, LANE_MIN), pc.less_equal(a, LANE_MAX))
        ),
        "direction": lambda a: pc.invert(pc.is_in(a, value_set=pa.array(DIRECTIONS))),
        "captured_at": lambda a: pc.is_null(captured),
        "plate_country": lambda a: pc.invert(_matches_few(a, COUNTRY_PATTERN)),
        # NaN fails both comparisons, so non-finite values are caught here too.
        "confidence": lambda a: pc.invert(pc.and_(pc.greater_equal(a, 0), pc.less_equal(a, 1))),
        "vehicle_class": lambda a: pc.invert(_matches_few(a, VEHICLE_CLASS_PATTERN)),
    }
    details = {
        "event_id": f"field 'event_id' must match {EVENT_ID_PATTERN}",
        "lane": _range_detail("lane"),
        "direction": "field 'direction' must be entry or exit",
        "captured_at": "field 'captured_at' must be an RFC 3339 time with Z or ±HH:MM",
        "plate_country": "field 'plate_country' must be two upper-case letters",
        "confidence": _range_detail("confidence"),
        "vehicle_class": f"field 'vehicle_class' must match {VEHICLE_CLASS_PATTERN}",
    }
    for spec in PLATE_READ_INPUT:
        values = col[spec.name]
        if spec.required:
            check(pc.is_null(values), violation, f"field '{spec.name}' is missing or null")
        if spec.max_length is not None and spec.name != "schema":
            check(
                _longer_than(values, spec.max_length),
                violation,
                f"field '{spec.name}' is longer than {spec.max_length} characters",
            )
        if spec.name in rules:
            check(rules[spec.name](values), violation, details[spec.name])

    cutoff_ts = pa.scalar(cutoff, UTC_TS)
    check(pc.less(captured, cutoff_ts), None, "captured before the retention cutoff")
    pairs = pc.binary_join_element_wise(col["site_id"], col["camera_id"], PAIR_SEPARATOR)
    check(
        pc.invert(pc.is_in(pairs, value_set=registry.known_pairs)),
        Reason.UNKNOWN_SITE,
        "site_id/camera_id pair is not in the site registry",
    )
    # A code that names no country (XX, ZZ) is stored as unknown and checked by the generic rule.
    col["plate_country"] = known_countries(col["plate_country"])
    plates, plate_ok = normalise_plates(col["plate"], col["plate_country"])
    check(pc.invert(plate_ok), Reason.INVALID_PLATE, "plate does not fit its country's format")
    latest = pa.scalar(now + limits.future_tolerance, UTC_TS)
    check(
        pc.greater(captured, latest),
        Reason.FUTURE_TIMESTAMP,
        f"captured_at is more than {limits.future_tolerance.total_seconds():g} s in the future",
    )

    outcome = pc.case_when(
        pc.make_struct(*conditions, field_names=[str(i) for i in range(len(conditions))]),
        *[pa.scalar(i, pa.int16()) for i in range(len(conditions))],
    )
    expired: list[int] = []
    keep = pc.is_null(outcome)
    if outcome.null_count < len(outcome):
        failed = pc.indices_nonzero(pc.is_valid(outcome))
        codes = outcome.take(failed).to_pylist()
        indices = col["msg_index"].take(failed).to_pylist()
        for code, index in zip(codes, indices, strict=True):
            found = checks[code]
            if found.reason is None:
                expired.append(index)
            else:
                rejected.append(Rejected(index, found.reason, found.detail))
    return _output(col, captured, plates, keep), expired


def parse_rfc3339(text: pa.Array) -> pa.Array:
    """RFC 3339 strings -> timestamp[us, UTC], null where a text is not a valid time."""
    return _parse_times(text)


def _parse_times(text: pa.Array) -> pa.Array:
    """RFC 3339 strings -> timestamp[us, UTC]; null where the text is not a valid time."""
    shaped = pc.match_substring_regex(text, RFC3339_PATTERN).fill_null(False)
    if pc.sum(shaped).as_py() != len(text) - text.null_count:
        # Rare: more than microsecond digits; keep the first six (Arrow's cast refuses more).
        longer = pc.match_substring_regex(text, RFC3339_LONG_FRACTION_PATTERN).fill_null(False)
        if pc.any(longer).as_py():
            trimmed = pc.replace_substring_regex(text, r"(\.[0-9]{6})[0-9]+", r"\1")
            text = pc.if_else(longer, trimmed, text)
            shaped = pc.or_(shaped, longer)
    return _cast_times(pc.if_else(shaped, text, pa.scalar(None, text.type)))


def _matches_few(values: pa.Array, pattern: str) -> pa.Array:
    """Regex match for a column with few distinct values: match the dictionary, not each row."""
    encoded = pc.dictionary_encode(values)
    return pc.match_substring_regex(encoded.dictionary, pattern).take(encoded.indices)


def _longer_than(values: pa.Array, limit: int) -> pa.Array:
    # Byte length is free (offsets) and bounds the character count from above.
    too_long = pc.greater(pc.binary_length(values), limit)
    if pc.any(too_long).as_py():
        too_long = pc.greater(pc.utf8_length(values), limit)
    return too_long


def _cast_times(text: pa.Array) -> pa.Array:
    # The cast rejects the whole array for one impossible date (2026-02-30); halve until the
    # offenders are isolated and null them: O(k log n) casts for k bad dates.
    try:
        return pc.cast(text, UTC_TS)
    except pa.ArrowInvalid:
        if len(text) == 1:
            return pa.nulls(1, UTC_TS)
        mid = len(text) // 2
        return pa.concat_arrays([_cast_times(text[:mid]), _cast_times(text[mid:])])


def _output(
    col: dict[str, pa.Array], captured: pa.Array, plates: pa.Array, keep: pa.Array
) -> pa.Table:
    def kept(values: pa.Array) -> pa.Array:
        return values.filter(keep)

    count = pc.sum(keep).as_py() or 0
    columns = {
        "event_id": kept(col["event_id"]),
        "site_id": kept(col["site_id"]),
        "camera_id": kept(col["camera_id"]),
        "lane": kept(col["lane"]).cast(pa.int16()),
        "direction": kept(col["direction"]),
        "captured_at": kept(captured),
        "plate": kept(plates),
        "plate_raw": kept(col["plate"]),
        "plate_country": kept(col["plate_country"]),
        "confidence": kept(col["confidence"]).cast(pa.float32()),
        "vehicle_class": kept(col["vehicle_class"]),
        "source_format": pa.repeat(pa.scalar(SOURCE_FORMAT, pa.string()), count),
        "msg_index": kept(col["msg_index"]),
    }
    return pa.Table.from_arrays(
        [columns[name] for name in DECODE_OUTPUT_SCHEMA.names], schema=DECODE_OUTPUT_SCHEMA
    )
