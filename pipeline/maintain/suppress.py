"""Disclosure control for published counts: k-anonymity with secondary suppression (pure).

Every statistic is published as blocks: a two-way table of counts (rows x columns, e.g.
vehicle class x plate country for one hour, site and direction) together with its row totals,
column totals and grand total, all computed from the true counts *before* suppression. Cells
that are not published are zero.

Primary suppression hides every published value from 1 to ``k - 1`` (totals included).
Secondary suppression then hides more values until no hidden value can be derived from the
published ones: the block's additive equations (each row total is the sum of its row, each
column total the sum of its column, the grand total the sum of either) with the published
values substituted leave every hidden value undetermined. A hidden value is determined
exactly when its unit vector lies in the row space of the equations restricted to the hidden
values, i.e. when every vector of their null space is zero there. While one is determined,
the smallest published value that shares an equation with it is hidden too (the issue's
"suppress the next smallest" rule, generalised to overlapping totals).

>>> block = suppress_block({("car", "NO"): 7, ("car", "SE"): 2, ("van", "NO"): 9}, k=5)
>>> block[("car", "SE")]
>>> block[(ALL, ALL)]
18
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np

ALL: Final = "*"  # the row or column label of a total
_TOL = 1e-9

Key = tuple[str, str]


def block_cells(counts: Mapping[Key, int]) -> dict[Key, int]:
    """The published cells of a block: its non-zero counts plus every row, column and grand
    total (``ALL`` in place of the label), computed from the true counts."""
    cells: dict[Key, int] = {}
    for (row, col), n in counts.items():
        if ALL in (row, col):
            raise ValueError(f"label {ALL!r} is reserved for totals")
        if n < 0:
            raise ValueError("counts cannot be negative")
        if n == 0:
            continue
        cells[(row, col)] = n
        cells[(row, ALL)] = cells.get((row, ALL), 0) + n
        cells[(ALL, col)] = cells.get((ALL, col), 0) + n
        cells[(ALL, ALL)] = cells.get((ALL, ALL), 0) + n
    return cells


def equations(cells: Mapping[Key, int]) -> list[tuple[Key, list[Key]]]:
    """Each published total with the published cells it is the sum of (zero cells omitted)."""
    rows = sorted({r for r, c in cells if r != ALL and c == ALL})
    cols = sorted({c for r, c in cells if c != ALL and r == ALL})
    out: list[tuple[Key, list[Key]]] = []
    for row in rows:
        out.append(((row, ALL), [k for k in cells if k[0] == row and k[1] != ALL]))
    for col in cols:
        out.append(((ALL, col), [k for k in cells if k[1] == col and k[0] != ALL]))
    if cells:
        out.append(((ALL, ALL), [(r, ALL) for r in rows]))
        out.append(((ALL, ALL), [(ALL, c) for c in cols]))
    return out


def determined(cells: Mapping[Key, int], hidden: set[Key]) -> set[Key]:
    """The hidden cells whose value follows from the published ones and the equations.

    Besides the linear algebra, a reader knows that a hidden cell is at least 1 (zero cells
    are simply absent): when a published total exceeds its published parts by exactly the
    number of hidden parts, each of them is 1.
    """
    if not hidden:
        return set()
    found = _all_ones(cells, hidden)
    order = sorted(hidden)
    index = {key: i for i, key in enumerate(order)}
    rows = []
    for total, parts in equations(cells):
        vec = np.zeros(len(order))
        for key, sign in ((total, -1.0), *((p, 1.0) for p in parts)):
            if key in index:
                vec[index[key]] += sign
        if np.any(vec):
            rows.append(vec)
    if not rows:
        return found
    matrix = np.array(rows)
    # Null space of the hidden-value equations: the ways the hidden values can move together
    # without changing any published value. A value that no such move changes is determined.
    _, sing, vt = np.linalg.svd(matrix)
    rank = int(np.sum(sing > _TOL * max(matrix.shape)))
    null = vt[rank:]
    if null.shape[0] == 0:
        return set(order)
    movable = np.max(np.abs(null), axis=0) > 1e-7
    return found | {key for key, free in zip(order, movable, strict=True) if not free}


def _all_ones(cells: Mapping[Key, int], hidden: set[Key]) -> set[Key]:
    out: set[Key] = set()
    for total, parts in equations(cells):
        if total in hidden:
            continue
        unknown = [p for p in parts if p in hidden]
        residual = cells[total] - sum(cells[p] for p in parts if p not in hidden)
        if unknown and residual == len(unknown):
            out.update(unknown)
    return out


def suppress_cells(cells: Mapping[Key, int], k: int) -> set[Key]:
    """The cells of a block to hide (primary below ``k``, then secondary until safe)."""
    if k < 1:
        raise ValueError("k must be at least 1")
    hidden = {key for key, n in cells.items() if 0 < n < k}
    eqs = equations(cells)
    while True:
        exposed = determined(cells, hidden)
        if not exposed:
            return hidden
        target = min(exposed)
        # Smallest published value sharing an equation with the exposed one.
        neighbours = {
            key
            for total, parts in eqs
            if target in (total, *parts)
            for key in (total, *parts)
            if key not in hidden
        }
        if not neighbours:
            neighbours = set(cells) - hidden  # cannot happen for a two-way table; stay safe
        if not neighbours:
            return hidden
        hidden.add(min(neighbours, key=lambda key: (cells[key], key)))


def suppress_block(counts: Mapping[Key, int], k: int) -> dict[Key, int | None]:
    """Every published cell of a block with its value, or None where suppressed."""
    cells = block_cells(counts)
    hidden = suppress_cells(cells, k)
    return {key: (None if key in hidden else n) for key, n in cells.items()}
