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

from datetime import timedelta

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ingest.dedup import hash_ids

_KEY_COLUMNS = ("site_id", "direction", "plate")
_STATE_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string()),
        pa.field("last_us", pa.int64()),
        pa.field("passage_id", pa.int64()),
    ]
)
# How far behind the newest capture the carried state reaches: longer than any window, so a
# read that arrives a little out of order still finds its passage.
_STATE_HORIZON_US = 10 * 60 * 1_000_000


class PassageGrouper:
    """Assign passage ids batch by batch; see the module docstring for the rule."""

    def __init__(self, window: timedelta = timedelta(seconds=30)) -> None:
        self._window_us = int(window.total_seconds() * 1_000_000)
        self._state = _STATE_SCHEMA.empty_table()

    def assign(self, reads: pa.Table) -> pa.Array:
        """``passage_id`` (int64) for each row of ``reads``, in row order. Does not change state:
        call :meth:`remember` with the rows and their ids once they are committed."""
        n = len(reads)
        if n == 0:
            return pa.array([], pa.int64())
        keys = _keys(reads)
        micros = _micros(reads["captured_at"])
        order = np.lexsort((micros, keys.to_numpy(zero_copy_only=False)))
        sorted_keys = keys.take(pa.array(order))
        sorted_us = micros[order]

        # The last read carried over from earlier batches, for each row's key (or null).
        carried = _lookup(self._state, sorted_keys)
        carried_us = carried["last_us"].to_numpy(zero_copy_only=False)
        carried_id = carried["passage_id"].to_numpy(zero_copy_only=False)
        has_carried = ~np.isnan(carried_us)

        same_key_as_prev = np.zeros(n, dtype=np.bool_)
        same_key_as_prev[1:] = pc.equal(sorted_keys[1:], sorted_keys[:-1]).to_numpy(
            zero_copy_only=False
        )
        prev_us = np.empty(n, dtype=np.float64)
        prev_us[0] = np.nan
        prev_us[1:] = sorted_us[:-1]
        # The read before this one in its chain: in this batch, or else the carried one.
        before = np.where(same_key_as_prev, prev_us, carried_us)
        continues = ~np.isnan(before) & (np.abs(sorted_us - before) <= self._window_us)
        # The first read of a key in the batch may continue a carried passage.
        continues_carried = continues & ~same_key_as_prev & has_carried

        new_ids = _passage_ids(sorted_keys, sorted_us)
        ids = np.where(continues_carried, carried_id, new_ids)
        # Within a chain every read takes the id of the chain's first read in this batch.
        starts = np.where(~(continues & same_key_as_prev), np.arange(n), 0)
        ids = ids[np.maximum.accumulate(starts)]

        result = np.empty(n, dtype=np.int64)
        result[order] = ids
        return pa.array(result, pa.int64())

    def remember(self, reads: pa.Table, passage_ids: pa.Array | pa.ChunkedArray) -> None:
        """Carry the latest read of every key forward; forget keys past the horizon."""
        if len(reads) == 0:
            return
        fresh = pa.table(
            {
                "key": _keys(reads),
                "last_us": pa.array(_micros(reads["captured_at"]), pa.int64()),
                "passage_id": pa.array(passage_ids, pa.int64())
                if not isinstance(passage_ids, pa.ChunkedArray)
                else passage_ids.combine_chunks().cast(pa.int64()),
            }
        )
        combined = pa.concat_tables([self._state, fresh])
        newest = pc.max(combined["last_us"]).as_py()
        combined = combined.filter(
            pc.greater_equal(combined["last_us"], newest - _STATE_HORIZON_US)
        )
        # Keep, per key, the row with the latest capture time.
        latest = combined.group_by("key").aggregate([("last_us", "max")])
        self._state = (
            combined.join(
                latest,
                keys=["key", "last_us"],
                right_keys=["key", "last_us_max"],
                join_type="inner",
            )
            .group_by(["key", "last_us"])
            .aggregate([("passage_id", "max")])
            .rename_columns({"passage_id_max": "passage_id"})
            .select(["key", "last_us", "passage_id"])
        )

    def __len__(self) -> int:
        return len(self._state)


def _keys(reads: pa.Table) -> pa.Array:
    key = pc.binary_join_element_wise(*(reads[c] for c in _KEY_COLUMNS), "|")
    if isinstance(key, pa.ChunkedArray):
        key = key.combine_chunks()
    return key


def _micros(captured_at: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.int64]:
    values = pc.cast(captured_at, pa.timestamp("us", tz="UTC")).cast(pa.int64())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    result: npt.NDArray[np.int64] = values.to_numpy(zero_copy_only=False)
    return result


def _lookup(state: pa.Table, keys: pa.Array) -> pa.Table:
    """For each key (in order): the carried last_us (float64, NaN = none; capture micros are
    below 2**53, so exact) and passage_id (int64, 0 where none)."""
    probe = pa.table({"key": keys, "row": pa.array(np.arange(len(keys)), pa.int64())})
    joined = probe.join(state, keys="key", join_type="left outer").sort_by("row")
    return pa.table(
        {
            "last_us": pc.cast(joined["last_us"], pa.float64()).fill_null(np.nan),
            "passage_id": joined["passage_id"].fill_null(0),
        }
    )


def _passage_ids(keys: pa.Array, micros: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    stamped = pc.binary_join_element_wise(keys, pa.array(micros).cast(pa.string()), "|")
    return hash_ids(stamped).view(np.int64)
