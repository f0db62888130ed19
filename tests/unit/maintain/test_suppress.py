"""Disclosure control: no suppressed count can be derived from what is published."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.maintain.suppress import ALL, Key, block_cells, equations, suppress_block

LABELS_R = ("car", "van", "truck", "bus")
LABELS_C = ("NO", "SE", "DE", "PL")

blocks = st.dictionaries(
    st.tuples(st.sampled_from(LABELS_R), st.sampled_from(LABELS_C)),
    st.integers(min_value=0, max_value=15),
    max_size=16,
)


def _derivable(published: dict[Key, int | None]) -> set[Key]:
    """Hidden cells a reader can pin down: by rank (a unit vector in the row space of the
    equations over the hidden cells), by one hidden part in a published total, or by a
    residual that leaves every hidden part exactly 1. Written independently of the module's
    own null-space check."""
    cells = {k: (v if v is not None else 0) for k, v in published.items()}
    hidden = sorted(k for k, v in published.items() if v is None)
    out: set[Key] = set()
    if not hidden:
        return out
    index = {k: i for i, k in enumerate(hidden)}
    rows = []
    for total, parts in equations(cells):
        vec = np.zeros(len(hidden))
        if total in index:
            vec[index[total]] -= 1
        unknown = [p for p in parts if p in index]
        for p in unknown:
            vec[index[p]] += 1
        if np.any(vec):
            rows.append(vec)
        if total not in index and unknown:
            known = sum(cells[p] for p in parts if p not in index)
            residual = cells[total] - known
            if len(unknown) == 1 or residual == len(unknown):
                out.update(unknown)
    if not rows:
        return out
    a = np.array(rows)
    rank = np.linalg.matrix_rank(a)
    for key, i in index.items():
        unit = np.zeros(len(hidden))
        unit[i] = 1
        if np.linalg.matrix_rank(np.vstack([a, unit])) == rank:
            out.add(key)
    return out


@settings(max_examples=300, deadline=None)
@given(blocks, st.integers(min_value=2, max_value=6))
def test_no_suppressed_cell_can_be_derived(counts: dict[Key, int], k: int) -> None:
    published = suppress_block(counts, k)
    assert _derivable(published) == set()


@settings(max_examples=300, deadline=None)
@given(blocks, st.integers(min_value=1, max_value=6))
def test_small_cells_hidden_and_totals_are_true_sums(counts: dict[Key, int], k: int) -> None:
    published = suppress_block(counts, k)
    true = block_cells(counts)
    assert set(published) == set(true)
    for key, value in published.items():
        assert value is None or value == true[key]
        if 0 < true[key] < k:
            assert value is None
    # Totals come from the true counts, not from what survived suppression.
    if published.get((ALL, ALL)) is not None:
        assert published[(ALL, ALL)] == sum(counts.values())


def test_one_small_cell_in_a_row_hides_its_smallest_neighbour() -> None:
    published = suppress_block({("car", "NO"): 10, ("car", "SE"): 2, ("car", "DE"): 6}, k=5)
    assert published[("car", "SE")] is None
    assert published[("car", "DE")] is None  # else 18 - 10 - 6 = 2
    assert published[("car", ALL)] == 18


def test_k_one_hides_nothing() -> None:
    published = suppress_block({("car", "NO"): 1, ("van", "SE"): 1}, k=1)
    assert None not in published.values()


def test_reserved_label_is_refused() -> None:
    with pytest.raises(ValueError):
        suppress_block({(ALL, "NO"): 3}, k=5)
