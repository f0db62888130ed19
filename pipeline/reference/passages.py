"""Passages: the reads of one vehicle passing one site, grouped under one ``passage_id``.

Several cameras read the same vehicle (front and rear, neighbouring lanes). Statistics count
vehicles, so reads are grouped:

    Two reads belong to the same passage when they have the same site, direction and
    normalised plate, and the later one was captured at most ``window`` (default 30 s) after
    the one before it. A passage is a chain of such reads; its id is a 64-bit hash of
    (site, direction, plate, capture time of its first read).

The id is deterministic: replaying the same reads after a crash, or splitting them differently
into batches, gives the same ids, because the grouper carries the last read of every recent
(site, direction, plate) across batches and is warmed from the lake after a restart
(:meth:`PassageGrouper.remember`). Reads of one site stay in one Kafka partition (key = site
id), so one worker sees all reads a passage can have. A read that arrives more than ``window``
later than the rest of its passage (a camera that buffered for minutes) starts a new passage.

The id carries no plate: it is a hash, and statistics never publish it anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.reference.hashing import hash_ids, splitmix64

_SITE_SALT = np.uint64(0xD6E8FEB86659FD93)
_DIRECTION_SALT = np.uint64(0xA0761D6478BD642F)
# How far behind the newest capture the carried state reaches: four windows, so a read that
# arrives a little out of order still finds its passage.
_HORIZON_WINDOWS = 4


@dataclass(frozen=True)
class Assigned:
    """Passage ids of one batch, with the key hashes and capture times they were made from."""

    ids: pa.Array
    key_hashes: npt.NDArray[np.uint64]
    micros: npt.NDArray[np.int64]
    # Per row, True if the read starts a new passage (continues none, in this batch or
    # carried): counting them counts vehicles, however many cameras read each one. Only
    # known for batches that went through :meth:`PassageGrouper.assign`.
    starts: npt.NDArray[np.bool_] | None = None

    @classmethod
    def from_rows(cls, reads: pa.Table) -> Assigned:
        """Rows already stored with their ``passage_id`` (to warm a grouper from the lake)."""
        ids = reads["passage_id"]
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        return cls(ids, _key_hashes(reads), _micros(reads["captured_at"]))


class PassageGrouper:
    """Assign passage ids batch by batch; see the module docstring for the rule.

    The carried state is three numpy arrays sorted by key hash: a 64-bit hash of
    (site, direction, plate), the capture time of that key's latest read, and its passage id.
    """

    def __init__(self, window: timedelta = timedelta(seconds=30)) -> None:
        self._window_us = int(window.total_seconds() * 1_000_000)
        self._keys = np.zeros(0, dtype=np.uint64)
        self._last_us = np.zeros(0, dtype=np.int64)
        self._ids = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._keys)

    def assign(self, reads: pa.Table) -> Assigned:
        """Passage ids for ``reads``, in row order (``.ids``). Does not change state: pass the
        result to :meth:`remember` once the rows are committed."""
        n = len(reads)
        keys = _key_hashes(reads)
        micros = _micros(reads["captured_at"])
        if n == 0:
            return Assigned(pa.array([], pa.int64()), keys, micros, np.zeros(0, dtype=np.bool_))
        order = np.lexsort((micros, keys))
        sorted_keys, sorted_us = keys[order], micros[order]

        # The last read carried over from earlier batches for each row's key, if any.
        has_carried, carried_us, carried_id = self._lookup(sorted_keys)

        same_key_as_prev = np.zeros(n, dtype=np.bool_)
        same_key_as_prev[1:] = sorted_keys[1:] == sorted_keys[:-1]
        prev_us = np.empty(n, dtype=np.int64)
        prev_us[1:] = sorted_us[:-1]
        # The read before this one in its chain: in this batch, or else the carried one.
        has_before = same_key_as_prev | has_carried
        before = np.where(same_key_as_prev, prev_us, carried_us)
        continues = has_before & (np.abs(sorted_us - before) <= self._window_us)
        # The first read of a key in the batch may continue a carried passage.
        continues_carried = continues & ~same_key_as_prev

        ids = np.where(continues_carried, carried_id, _passage_ids(sorted_keys, sorted_us))
        # Within a chain every read takes the id of the chain's first read in this batch.
        starts = np.where(continues & same_key_as_prev, 0, np.arange(n))
        ids = ids[np.maximum.accumulate(starts)]

        result = np.empty(n, dtype=np.int64)
        result[order] = ids
        starts = np.empty(n, dtype=np.bool_)
        starts[order] = ~continues
        return Assigned(pa.array(result, pa.int64()), keys, micros, starts)

    def remember(self, assigned: Assigned) -> None:
        """Carry the latest read of every key forward; forget keys past the horizon."""
        if len(assigned.ids) == 0:
            return
        ids = assigned.ids.to_numpy(zero_copy_only=False).astype(np.int64)
        keys = np.concatenate([self._keys, assigned.key_hashes])
        last_us = np.concatenate([self._last_us, assigned.micros])
        all_ids = np.concatenate([self._ids, ids])
        keep = last_us >= last_us.max() - _HORIZON_WINDOWS * self._window_us
        keys, last_us, all_ids = keys[keep], last_us[keep], all_ids[keep]
        # Per key, the latest read wins (the last row after sorting by key, then time).
        order = np.lexsort((last_us, keys))
        keys, last_us, all_ids = keys[order], last_us[order], all_ids[order]
        is_last = np.ones(len(keys), dtype=np.bool_)
        is_last[:-1] = keys[1:] != keys[:-1]
        self._keys, self._last_us, self._ids = keys[is_last], last_us[is_last], all_ids[is_last]

    def _lookup(
        self, keys: npt.NDArray[np.uint64]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        if not len(self._keys):
            zeros = np.zeros(len(keys), dtype=np.int64)
            return np.zeros(len(keys), dtype=np.bool_), zeros, zeros
        at = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        found = self._keys[at] == keys
        return found, self._last_us[at], self._ids[at]


def _key_hashes(reads: pa.Table) -> npt.NDArray[np.uint64]:
    """64-bit hash of (site, direction, plate) per row.

    Only the plate is hashed row by row; site and direction have few distinct values, so their
    dictionaries are hashed and mixed in by index (stable across batches: hashes of the text).
    """
    mixed = hash_ids(reads["plate"])
    for name, salt in (("site_id", _SITE_SALT), ("direction", _DIRECTION_SALT)):
        column = reads[name]
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        encoded = pc.dictionary_encode(column)
        value_hashes = hash_ids(encoded.dictionary)
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        with np.errstate(over="ignore"):
            mixed = splitmix64(mixed ^ (value_hashes[indices] * salt))
    return mixed


def _micros(captured_at: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.int64]:
    values = pc.cast(captured_at, pa.timestamp("us", tz="UTC")).cast(pa.int64())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    result: npt.NDArray[np.int64] = values.to_numpy(zero_copy_only=False)
    return result


def _passage_ids(
    key_hashes: npt.NDArray[np.uint64], micros: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """A new passage's id: a hash of its key and the capture time of its first read."""
    with np.errstate(over="ignore"):
        mixed = key_hashes ^ (micros.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    return splitmix64(mixed).view(np.int64)
