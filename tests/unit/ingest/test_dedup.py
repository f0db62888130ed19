from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from pipeline.ingest.dedup import DedupWindow, WindowKeys
from pipeline.reference.hashing import hash_ids

T0 = datetime(2026, 11, 20, 10, 15, tzinfo=UTC)


def _ts(*hours_after: float) -> pa.Array:
    return pa.array([T0 + timedelta(hours=h) for h in hours_after], pa.timestamp("us", tz="UTC"))


def test_hash_is_deterministic_and_separates_ids() -> None:
    ids = pa.array(["cam1-000001", "cam1-000002", "cam1-000001", "", "ØRJE-1"])
    h = hash_ids(ids)
    assert h[0] == h[2]
    assert len({int(x) for x in h}) == 4
    # Offsets into a sliced array must be honoured.
    assert hash_ids(ids.slice(2, 1))[0] == h[0]


@given(st.lists(st.text(max_size=64), max_size=200))
def test_hash_equal_exactly_for_equal_strings(values: list[str]) -> None:
    hashes = hash_ids(pa.array(values, pa.string()))
    by_value: dict[str, int] = {}
    for value, h in zip(values, hashes, strict=True):
        assert by_value.setdefault(value, int(h)) == int(h)
    # No collisions expected among a few hundred distinct strings with a 64-bit hash.
    assert len(set(by_value.values())) == len(by_value)


def test_repeat_in_later_batch_is_dropped_after_remember() -> None:
    window = DedupWindow(timedelta(hours=24))
    ids, ts = pa.array(["a", "b"]), _ts(0, 0)
    keep = window.filter_new(ids, ts)
    assert keep.tolist() == [True, True]
    # Not committed yet: a retry of the same batch is still new.
    assert window.filter_new(ids, ts).tolist() == [True, True]
    window.remember(ids, ts)
    assert window.filter_new(pa.array(["b", "c"]), _ts(0, 0)).tolist() == [False, True]


def test_repeat_within_one_batch_keeps_first() -> None:
    window = DedupWindow(timedelta(hours=24))
    keep = window.filter_new(pa.array(["x", "y", "x", "x"]), _ts(0, 0, 0, 0))
    assert keep.tolist() == [True, True, False, False]


def test_repeat_within_one_batch_is_per_capture_hour() -> None:
    # The in-batch check keys on (hour, id) like the window: the same id captured in two
    # hours is two events, in one batch as across batches.
    window = DedupWindow(timedelta(hours=24))
    keep = window.filter_new(pa.array(["x", "x", "x", "y"]), _ts(0, 2, 2, 2))
    assert keep.tolist() == [True, True, False, True]


def test_remembered_keys_are_those_filtered() -> None:
    window = DedupWindow(timedelta(hours=24))
    keys = WindowKeys.of(pa.array(["a", "b", "a"]), _ts(0, 0, 0))
    new = window.filter_keys(keys)
    window.remember_keys(keys.take(new))
    assert len(window) == 2
    assert window.filter_new(pa.array(["a", "b", "c"]), _ts(0, 0, 0)).tolist() == [
        False,
        False,
        True,
    ]


class FakeClock:
    """The worker's own time, moved by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_hours_older_than_window_are_forgotten_once_quiet_for_the_window() -> None:
    clock = FakeClock()
    window = DedupWindow(timedelta(hours=24), clock=clock)
    window.remember(pa.array(["old"]), _ts(0))
    clock.now += 24 * 3600
    window.remember(pa.array(["new"]), _ts(30))
    assert len(window) == 1
    assert window.filter_new(pa.array(["old"]), _ts(0)).tolist() == [True]


def test_a_late_hour_keeps_its_ids_while_its_repeats_can_still_come() -> None:
    # A camera uploads reads buffered for three days after an outage, and retransmits them:
    # their capture hour is far behind the newest, but they were added just now.
    clock = FakeClock()
    window = DedupWindow(timedelta(hours=24), clock=clock)
    window.remember(pa.array(["new"]), _ts(72))
    window.remember(pa.array(["late-1", "late-2"]), _ts(0, 0))
    window.remember(pa.array(["new-2"]), _ts(73))  # eviction runs again
    assert len(window) == 4
    assert window.filter_new(pa.array(["late-1", "late-3"]), _ts(0, 0)).tolist() == [False, True]
    clock.now += 24 * 3600 - 1
    window.remember(pa.array(["new-3"]), _ts(74))
    assert window.filter_new(pa.array(["late-2"]), _ts(0)).tolist() == [False]
    clock.now += 1  # quiet for the whole window: forgotten
    window.remember(pa.array(["new-4"]), _ts(74))
    assert window.filter_new(pa.array(["late-2"]), _ts(0)).tolist() == [True]
    assert len(window) == 4  # new, new-2, new-3, new-4


def test_memory_cap_forgets_oldest_hours_first() -> None:
    window = DedupWindow(timedelta(hours=24), max_entries=3)
    window.remember(pa.array(["a", "b"]), _ts(0, 0))
    window.remember(pa.array(["c", "d"]), _ts(1, 1))
    assert len(window) == 2
    assert window.filter_new(pa.array(["c", "a"]), _ts(1, 0)).tolist() == [False, True]


def test_same_id_in_another_hour_is_a_different_event() -> None:
    window = DedupWindow(timedelta(hours=24))
    window.remember(pa.array(["cam-1"]), _ts(0))
    assert window.filter_new(pa.array(["cam-1"]), _ts(2)).tolist() == [True]


def test_empty_batch() -> None:
    window = DedupWindow(timedelta(hours=24))
    assert window.filter_new(pa.array([], pa.string()), _ts()).size == 0
    assert isinstance(hash_ids(pa.array([], pa.string())), np.ndarray)


def test_many_batches_in_one_hour_keep_few_runs_and_find_every_id() -> None:
    window = DedupWindow(timedelta(hours=24))
    for b in range(200):
        ids = pa.array([f"cam-{b}-{i}" for i in range(50)])
        window.remember(ids, _ts(*([0.0] * 50)))
    assert len(window) == 200 * 50
    runs = window._buckets[next(iter(window._buckets))]
    assert len(runs) <= 10  # logarithmic, not one per batch
    probe = pa.array([f"cam-{b}-7" for b in range(0, 200, 13)] + ["cam-new-1"])
    keep = window.filter_new(probe, _ts(*([0.0] * len(probe))))
    assert keep.tolist() == [False] * (len(probe) - 1) + [True]


@given(st.lists(st.lists(st.integers(0, 300), max_size=60), max_size=30))
def test_runs_stay_sorted_and_unique_when_batches_share_ids(batches: list[list[int]]) -> None:
    # Batches share ids (as the warm-up and other workers' ids can), so merged runs overlap.
    window = DedupWindow(timedelta(hours=24))
    for batch in batches:
        ids = pa.array([f"id-{i}" for i in batch], pa.string())
        window.remember(ids, _ts(*([0.0] * len(batch))))
    for runs in window._buckets.values():
        assert all(bool(np.all(run[1:] > run[:-1])) for run in runs)  # sorted, each hash once
    seen = sorted({i for batch in batches for i in batch})
    probe = [*seen, 1000]
    keep = window.filter_new(pa.array([f"id-{i}" for i in probe]), _ts(*([0.0] * len(probe))))
    assert keep.tolist() == [False] * len(seen) + [True]
