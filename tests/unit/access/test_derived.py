"""Which lake changes a derived copy may simply append, and which make it copy again."""

from __future__ import annotations

from pipeline.access.derived import classify

# The analyst's copy: plate_reads (id 1) and the restrictions it filters by (id 7).
TABLES = {"plate_reads": 1, "subject_restrictions": 7}
APPENDABLE = {"plate_reads"}


def test_new_rows_of_a_views_table_are_appended() -> None:
    snapshots = [(11, {"tables_inserted_into": ["1"]}), (12, {"inlined_insert": ["1"]})]
    changes = classify(snapshots, 10, TABLES, APPENDABLE)
    assert not changes.rebuild
    assert changes.appended == {"plate_reads"}


def test_changes_to_tables_the_views_do_not_read_are_ignored() -> None:
    # Ingest of passengers (5) with its offsets (3, inlined): nothing the analyst sees.
    snapshots = [
        (11, {"tables_inserted_into": ["5"], "inlined_insert": ["3"], "inlined_delete": ["3"]}),
        (12, {"tables_deleted_from": ["5"], "tables_created": ["main.other"]}),
    ]
    changes = classify(snapshots, 10, TABLES, APPENDABLE)
    assert not changes.rebuild
    assert changes.appended == frozenset()


def test_nothing_new_changes_nothing() -> None:
    changes = classify([(9, {"tables_deleted_from": ["1"]})], 10, TABLES, APPENDABLE)
    assert changes == classify([], 10, TABLES, APPENDABLE)
    assert not changes.rebuild


def test_a_delete_a_compaction_or_an_unknown_change_copies_again() -> None:
    for kind in ("tables_deleted_from", "merge_adjacent", "flushed_inlined", "a_new_kind"):
        snapshots = [(11, {"tables_inserted_into": ["1"]}), (12, {kind: ["1"]})]
        assert classify(snapshots, 10, TABLES, APPENDABLE).rebuild, kind


def test_a_new_restriction_copies_again() -> None:
    # Its rows hide rows already copied: appending it would show them still.
    snapshots = [(11, {"tables_inserted_into": ["7"]})]
    assert classify(snapshots, 10, TABLES, APPENDABLE).rebuild


def test_a_table_named_rather_than_numbered_counts() -> None:
    snapshots = [(11, {"tables_created": ["main.plate_reads"]})]
    assert classify(snapshots, 10, TABLES, APPENDABLE).rebuild


def test_a_gap_in_the_snapshots_copies_again() -> None:
    # Snapshot 11 expired before we looked: what it changed is unknown.
    snapshots = [(12, {"tables_inserted_into": ["1"]})]
    assert classify(snapshots, 10, TABLES, APPENDABLE).rebuild
    assert not classify([(11, {}), (12, {})], 10, TABLES, APPENDABLE).rebuild
