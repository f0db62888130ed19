from datetime import UTC, datetime, timedelta

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.reference.passages import Assigned, PassageGrouper

T0 = datetime(2026, 11, 21, 14, 0, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def reads(rows: list[tuple[str, str, str, float]]) -> pa.Table:
    """(site, direction, plate, seconds after T0) per read."""
    return pa.table(
        {
            "site_id": pa.array([r[0] for r in rows]),
            "direction": pa.array([r[1] for r in rows]),
            "plate": pa.array([r[2] for r in rows]),
            "captured_at": pa.array([T0 + timedelta(seconds=r[3]) for r in rows], TS),
        }
    )


def groups(ids: pa.Array) -> list[int]:
    """Ids renumbered by first appearance, to compare groupings."""
    seen: dict[int, int] = {}
    return [seen.setdefault(i, len(seen)) for i in ids.to_pylist()]


def test_front_and_rear_reads_are_one_passage_other_keys_are_not() -> None:
    table = reads(
        [
            ("NO-SVINESUND", "exit", "ZZ12345", 0.0),
            ("NO-SVINESUND", "exit", "ZZ12345", 1.2),  # rear camera
            ("NO-SVINESUND", "entry", "ZZ12345", 2.0),  # other direction
            ("NO-ORJE", "exit", "ZZ12345", 1.0),  # other site
            ("NO-SVINESUND", "exit", "ZZ99999", 0.5),  # other vehicle
        ]
    )
    assert groups(PassageGrouper().assign(table).ids) == [0, 0, 1, 2, 3]


def test_chain_within_window_and_gap_beyond_it() -> None:
    table = reads(
        [
            ("S", "exit", "P", 0.0),
            ("S", "exit", "P", 25.0),
            ("S", "exit", "P", 50.0),  # 25 s after the previous read: same chain
            ("S", "exit", "P", 200.0),  # a later passage (came back the same way)
        ]
    )
    assert groups(PassageGrouper().assign(table).ids) == [0, 0, 0, 1]


def test_out_of_order_rows_in_a_batch() -> None:
    table = reads([("S", "exit", "P", 3.0), ("S", "exit", "Q", 1.0), ("S", "exit", "P", 1.0)])
    assert groups(PassageGrouper().assign(table).ids) == [0, 1, 0]


def test_passage_continues_across_batches_and_restarts_give_same_ids() -> None:
    rows = [("S", "exit", "P", 0.0), ("S", "exit", "P", 10.0), ("S", "exit", "P", 20.0)]
    whole = PassageGrouper().assign(reads(rows)).ids.to_pylist()
    assert len(set(whole)) == 1

    grouper = PassageGrouper()
    first = reads(rows[:1])
    first_assigned = grouper.assign(first)
    grouper.remember(first_assigned)
    second_ids = grouper.assign(reads(rows[1:])).ids
    assert first_assigned.ids.to_pylist() + second_ids.to_pylist() == whole

    # A restarted worker warmed with what the lake holds gives the same ids.
    stored = first.append_column("passage_id", first_assigned.ids)
    warmed = PassageGrouper()
    warmed.remember(Assigned.from_rows(stored))
    assert warmed.assign(reads(rows[1:])).ids.to_pylist() == second_ids.to_pylist()


def test_assign_does_not_change_state_until_remember() -> None:
    grouper = PassageGrouper()
    table = reads([("S", "exit", "P", 0.0)])
    grouper.assign(table)
    assert len(grouper) == 0
    grouper.remember(grouper.assign(table))
    assert len(grouper) == 1


def test_state_is_bounded_by_capture_time() -> None:
    grouper = PassageGrouper()
    old = reads([("S", "exit", f"P{i}", 0.0) for i in range(100)])
    grouper.remember(grouper.assign(old))
    later = reads([("S", "exit", "Q", 3600.0)])
    grouper.remember(grouper.assign(later))
    assert len(grouper) == 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["A", "B"]),
            st.sampled_from(["entry", "exit"]),
            st.sampled_from(["P1", "P2", "P3"]),
            st.floats(min_value=0, max_value=300, allow_nan=False).map(lambda x: round(x, 3)),
        ),
        min_size=1,
        max_size=40,
    ),
    st.integers(min_value=0, max_value=40),
)
def test_batch_split_never_changes_the_ids(
    rows: list[tuple[str, str, str, float]], cut: int
) -> None:
    rows = sorted(rows, key=lambda r: r[3])  # a site's reads arrive roughly in capture order
    whole = PassageGrouper().assign(reads(rows)).ids.to_pylist()
    grouper = PassageGrouper()
    head, tail = rows[:cut], rows[cut:]
    out: list[int] = []
    for part in (head, tail):
        if part:
            assigned = grouper.assign(reads(part))
            grouper.remember(assigned)
            out += assigned.ids.to_pylist()
    assert out == whole
