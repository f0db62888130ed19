"""64-bit hashes of string arrays, computed with numpy over the Arrow buffers (no per-row Python).

The hash is a seeded polynomial over the UTF-8 bytes, finished with the splitmix64 mixer. It is
a fast bucket key for the repeat window and the passage grouping, not a keyed or cryptographic
digest: never show it to a role that must not learn the input.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

_MAX_ID_BYTES = 64  # event ids are validated to at most 64 characters before they get here
_BASE = np.uint64(0x100000001B3)  # FNV prime: odd, so powers never collapse to zero
_POWERS = np.cumprod(np.full(_MAX_ID_BYTES * 4, _BASE, dtype=np.uint64), dtype=np.uint64)

U64Array = npt.NDArray[np.uint64]
BoolArray = npt.NDArray[np.bool_]


def splitmix64(x: U64Array) -> U64Array:
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def hash_ids(ids: pa.Array | pa.ChunkedArray) -> U64Array:
    """64-bit hashes of a string array, one per element (nulls hash as the empty string)."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    ids = pc.fill_null(ids.cast(pa.large_string()), "")
    n = len(ids)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    buffers = ids.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64, count=n + 1, offset=ids.offset * 8)
    data = (
        np.frombuffer(buffers[2], dtype=np.uint8)
        if buffers[2] is not None
        else np.zeros(0, np.uint8)
    )
    start, end = int(offsets[0]), int(offsets[-1])
    lengths = np.diff(offsets)
    if int(lengths.max()) > len(_POWERS):
        raise ValueError("event id longer than the deduplication hash supports")
    byte_values = data[start:end].astype(np.uint64)
    # Position of each byte within its own id, to weight it by BASE**position.
    row_starts = offsets[:-1] - start
    position = np.arange(end - start, dtype=np.int64) - np.repeat(row_starts, lengths)
    with np.errstate(over="ignore"):
        weighted = byte_values * _POWERS[position]
        sums = np.zeros(n, dtype=np.uint64)
        non_empty = lengths > 0
        if weighted.size:
            # reduceat over empty segments would return a neighbour's value: mask them out.
            reduced = np.add.reduceat(weighted, row_starts[non_empty])
            sums[non_empty] = reduced
        return splitmix64(sums ^ lengths.astype(np.uint64))
