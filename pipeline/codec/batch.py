"""Decode a polled batch whatever the cameras sent: canonical reads and vendor payloads.

Pure, like :mod:`pipeline.codec.plate_reads`. Each message's format is recognised by its shape
(:func:`pipeline.codec.vendors.detect_format`, a few byte checks, with the ``content-type``
header as a hint). Then:

- **canonical** ``plate_read/1`` messages go through the vectorised decoder in one piece;
- **vendor payloads** are mapped to canonical reads (images dropped, candidates kept), and those
  reads go through the *same* validation (the decoder's step 4,
  :func:`~pipeline.codec.plate_reads.validate_mapped_columns`, fed the mapped values as
  columns), so there is one implementation of the rules. Vendors with a columnar mapper
  (:mod:`pipeline.codec.vendors._columnar`) map their ordinary payloads a batch at a time.

A vendor payload is all or nothing: if any read in it is rejected, the whole message goes to
the DLQ with that reason (one message, one DLQ record, original bytes). A payload carrying
several reads (Plate Recognizer sends one result per vehicle in view) yields several rows; the
reads beyond the first are counted in ``extra_reads`` so that the counters reconcile:

    consumed messages + extra_reads = stored + rejected + expired + duplicates
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.codec.plate_reads import (
    DECODE_OUTPUT_SCHEMA,
    DecodeLimits,
    DecodeResult,
    Rejected,
    decode_plate_reads,
    mapped_columns,
    validate_mapped_columns,
)
from pipeline.codec.reasons import Reason
from pipeline.codec.vendors import CANONICAL_PREFIX, batch_mapper, detect_formats, map_vendor
from pipeline.reference.countries import COUNTRY_UNKNOWN
from pipeline.reference.sites import SiteRegistry
from pipeline.schemas import CANDIDATES

CANONICAL = "canonical"
# Output rows: the decoder's columns, then candidates, then the input position.
OUTPUT_SCHEMA = DECODE_OUTPUT_SCHEMA.insert(
    DECODE_OUTPUT_SCHEMA.get_field_index("msg_index"), pa.field("candidates", CANDIDATES)
)


@dataclass(frozen=True)
class BatchDecoded:
    """A batch decoded message by message; rows carry ``source_format`` and ``candidates``."""

    # table: DECODED_PLATE_READS + candidates + msg_index. ``expired`` lists a message once per
    # expired read, so a multi-read payload may appear more than once.
    result: DecodeResult
    formats: list[str]  # detected format of every input message
    extra_reads: int = 0
    extra_by_format: dict[str, int] = field(default_factory=dict)
    # (format, quirk) -> reads of accepted payloads the mappers noted something about (a newer
    # OpenALPR version, a digested event id, ...); unknown countries are counted on stored rows.
    quirks: dict[tuple[str, str], int] = field(default_factory=dict)


def decode_batch(
    values: Sequence[bytes | None],
    content_types: Sequence[str | None],
    *,
    registry: SiteRegistry,
    now: datetime,
    retention_cutoff: datetime,
    limits: DecodeLimits,
    vendor_max_bytes: int,
) -> BatchDecoded:
    """Decode every message of a batch; see the module docstring."""
    formats = _detect_formats(values, content_types)
    canonical = [i for i, f in enumerate(formats) if f == CANONICAL]
    if len(canonical) == len(values):  # the common case: nothing to split or merge
        result = decode_plate_reads(
            values, registry=registry, now=now, retention_cutoff=retention_cutoff, limits=limits
        )
        table = _with_candidates(result.table, None)
        return BatchDecoded(DecodeResult(table, result.rejected, result.expired), formats)

    parts: list[DecodeResult] = []
    if canonical:
        decoded = decode_plate_reads(
            [values[i] for i in canonical],
            registry=registry,
            now=now,
            retention_cutoff=retention_cutoff,
            limits=limits,
        )
        parts.append(_reindexed(_with_candidates(decoded.table, None), decoded, canonical))

    vendor = _decode_vendor(
        values, formats, registry, now, retention_cutoff, limits, vendor_max_bytes
    )
    parts.append(vendor.result)
    merged = DecodeResult(
        table=pa.concat_tables([_conform(p.table) for p in parts]),
        rejected=sorted((r for p in parts for r in p.rejected), key=lambda r: r.index),
        expired=sorted(i for p in parts for i in p.expired),
    )
    return BatchDecoded(merged, formats, vendor.extra_reads, vendor.extra_by_format, vendor.quirks)


def _detect_formats(
    values: Sequence[bytes | None], content_types: Sequence[str | None]
) -> list[str]:
    """Every message's format. Our producers' prefix is tested message by message (a
    ``startswith`` each: 2 ms for 25k messages, where copying the batch into Arrow for one
    kernel cost 15 ms in the worker); the others by
    :func:`~pipeline.codec.vendors.detect_formats`."""
    formats = [CANONICAL] * len(values)
    others = [i for i, v in enumerate(values) if v and not v.startswith(CANONICAL_PREFIX)]
    found = detect_formats([values[i] or b"" for i in others], [content_types[i] for i in others])
    for i, fmt in zip(others, found, strict=True):
        formats[i] = fmt
    return formats


def _decode_vendor(
    values: Sequence[bytes | None],
    formats: list[str],
    registry: SiteRegistry,
    now: datetime,
    retention_cutoff: datetime,
    limits: DecodeLimits,
    vendor_max_bytes: int,
) -> BatchDecoded:
    rejected: list[Rejected] = []
    docs: list[dict[str, object]] = []
    owner: list[int] = []  # message index of each mapped read
    candidates: list[object] = []
    doc_format: list[str] = []
    noted: list[tuple[int, str, str]] = []  # (message, format, quirk)
    by_format: dict[str, list[int]] = {}
    for i, fmt in enumerate(formats):
        if fmt == CANONICAL:
            continue
        if len(values[i] or b"") > vendor_max_bytes:
            rejected.append(Rejected(i, Reason.OVERSIZED, f"longer than {vendor_max_bytes} bytes"))
            continue
        by_format.setdefault(fmt, []).append(i)
    # Formats with a columnar mapper first; what it cannot prove ordinary comes back here.
    fast_tables: list[pa.Table] = []
    fast_owner: list[np.ndarray] = []
    fast_candidates: list[pa.Array] = []
    fast_format: list[str] = []
    one_by_one: list[int] = []
    for fmt, positions in by_format.items():
        mapper = batch_mapper(fmt)
        if mapper is None:
            one_by_one += positions
            continue
        mapped = mapper([values[i] or b"" for i in positions], registry)
        where = np.asarray(positions, dtype=np.int64)
        if mapped.table.num_rows:
            noted.extend((positions[mapped.owner[r]], fmt, q) for r, q in mapped.quirks)
            fast_tables.append(mapped.table)
            fast_owner.append(where[mapped.owner])
            fast_candidates.append(mapped.candidates)
            fast_format += [fmt] * mapped.table.num_rows
        one_by_one += [positions[k] for k in mapped.slow]
    for i in sorted(one_by_one):
        fmt = formats[i]
        reads, rejects = map_vendor(values[i] or b"", fmt, registry)
        if rejects:
            reason, detail = rejects[0]
            rejected.append(Rejected(i, reason, f"{fmt}: {detail}"))
            continue
        for read in reads:
            quirks = read.get("quirks")
            if isinstance(quirks, list):
                noted.extend((i, fmt, q) for q in quirks if q != COUNTRY_UNKNOWN)
            candidates.append(read.get("candidates"))
            doc_format.append(fmt)
            owner.append(i)
            docs.append(read)
    if not docs and not fast_tables:
        empty = _with_candidates(
            decode_plate_reads(
                [], registry=registry, now=now, retention_cutoff=retention_cutoff
            ).table,
            None,
        )
        return BatchDecoded(DecodeResult(empty, rejected, []), formats)

    # The mapped reads are Python values or Arrow columns already: validated as columns, not
    # written as JSON and parsed back.
    slow_table = mapped_columns(docs).drop_columns(["msg_index"])
    parts = [t.select(slow_table.column_names).cast(slow_table.schema) for t in fast_tables]
    combined = pa.concat_tables([*parts, slow_table]).combine_chunks()
    combined = combined.append_column("msg_index", pa.array(range(len(combined)), pa.int32()))
    decoded = validate_mapped_columns(
        combined, registry=registry, now=now, retention_cutoff=retention_cutoff, limits=limits
    )
    owner = [*np.concatenate(fast_owner).tolist(), *owner] if fast_owner else owner
    doc_format = [*fast_format, *doc_format]
    candidate_array = pa.concat_arrays([*fast_candidates, pa.array(candidates, CANDIDATES)])
    owners = np.asarray(owner, dtype=np.int64)
    # All or nothing per message: the first rejected read rejects its whole payload.
    failed: dict[int, Rejected] = {}
    for r in decoded.rejected:
        message = int(owners[r.index])
        failed.setdefault(message, Rejected(message, r.reason, f"{formats[message]}: {r.detail}"))
    rejected.extend(failed.values())

    table = _with_candidates(decoded.table, candidate_array)
    rows_owner = owners[table["msg_index"].to_numpy()]
    keep = ~np.isin(rows_owner, np.fromiter(failed, np.int64, len(failed)))
    table = table.filter(pa.array(keep))
    kept_owner = rows_owner[keep]
    formats_of_rows = pa.array(np.asarray(doc_format, dtype=object)[table["msg_index"].to_numpy()])
    table = table.set_column(
        table.schema.get_field_index("source_format"), "source_format", formats_of_rows
    )
    table = table.set_column(
        table.schema.get_field_index("msg_index"), "msg_index", pa.array(kept_owner, pa.int32())
    )
    # Expired reads are counted one by one (a message index repeats for each of its reads).
    expired_reads = sorted(int(owners[e]) for e in decoded.expired if int(owners[e]) not in failed)
    reads_per_message = np.bincount(owners, minlength=len(values))
    extra_by_format: dict[str, int] = {}
    for index in np.flatnonzero(reads_per_message > 1).tolist():
        if index not in failed:
            fmt = formats[index]
            extra_by_format[fmt] = extra_by_format.get(fmt, 0) + int(reads_per_message[index]) - 1
    quirk_counts: dict[tuple[str, str], int] = {}
    for message, fmt, quirk in noted:
        if message not in failed:
            quirk_counts[fmt, quirk] = quirk_counts.get((fmt, quirk), 0) + 1
    return BatchDecoded(
        DecodeResult(table, rejected, expired_reads),
        formats,
        sum(extra_by_format.values()),
        extra_by_format,
        quirk_counts,
    )


def _conform(table: pa.Table) -> pa.Table:
    """The same columns under :data:`OUTPUT_SCHEMA` (set_column loses nullability flags)."""
    return pa.Table.from_arrays(table.columns, schema=OUTPUT_SCHEMA)


def _with_candidates(table: pa.Table, candidates: pa.Array | None) -> pa.Table:
    """Insert the ``candidates`` column before ``msg_index`` (null for canonical reads)."""
    if candidates is None:
        column = pa.nulls(len(table), CANDIDATES)
    else:
        column = candidates.take(table["msg_index"]) if len(table) else candidates.slice(0, 0)
    return table.add_column(table.schema.get_field_index("msg_index"), "candidates", column)


def _reindexed(table: pa.Table, result: DecodeResult, positions: list[int]) -> DecodeResult:
    """A sub-batch's result with indices mapped back to positions in the whole batch."""
    where = np.asarray(positions, dtype=np.int64)
    msg = pc.cast(pa.array(where[table["msg_index"].to_numpy()]), pa.int32())
    return DecodeResult(
        table.set_column(table.schema.get_field_index("msg_index"), "msg_index", msg),
        [Rejected(positions[r.index], r.reason, r.detail) for r in result.rejected],
        [positions[e] for e in result.expired],
    )
