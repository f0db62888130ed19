"""The query service on the production-shaped lake: a PostgreSQL catalog and data files in S3.

The tests are tests/integration/test_access.py's own, collected here a second time with its
``world`` built on this folder's set (``shared``: a fresh catalog database and object prefix
per test, topics with three replicas) instead of an embedded lake: roles and views, refused
escapes (the ``{data}`` of the corpus is now the lake's ``s3://`` prefix), the locked session,
audit verification against anchors on the three brokers, restriction, rectification, subject
access and erasure (no byte of the plate left in any object the store holds).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# Collected again here, with this module's ``world``: the same tests on the other backends.
from test_access import (  # noqa: F401
    World,
    anpr,
    certs,
    serve_world,
    test_analyst_sees_only_pseudonyms_of_recent_reads,
    test_audit_verify_catches_edits_deletions_reorders_and_truncation,
    test_erase_leaves_no_byte_of_the_plate_under_the_lake,
    test_escape_attempts_are_refused_and_logged_as_refused,
    test_query_without_a_valid_purpose_exits_2_and_is_logged,
    test_rectify_keeps_the_original_in_the_versions_table,
    test_restricted_rows_are_seen_by_the_dpo_only,
    test_statistics_computed_after_a_restriction_leave_the_plate_out,
    test_subject_access_reports_rows_and_who_saw_them,
    test_the_locked_session_itself_cannot_loosen_its_settings,
)

from tests.integration.cluster.conftest import Shared


@pytest.fixture
def world(shared: Shared, certs: Path, tmp_path: Path) -> Iterator[World]:  # noqa: F811
    """test_access's world with its lake on PostgreSQL + S3 and its anchors on three brokers."""
    lake_env = {k: v for k, v in shared.env.items() if k.startswith("ANPR_LAKE_")}
    topics = shared.env["ANPR_TOPICS_PLATE_READS"].removesuffix(".plate-reads")
    shared.env["ANPR_TOPICS_AUDIT_ANCHORS"] = anchors = f"{topics}.audit-anchors"
    created = shared.anpr("setup", "topics", "create")
    assert created.returncode == 0, created.stderr
    # Where S3Proxy keeps the objects under the lake's prefix, one plain file each.
    key = lake_env["ANPR_LAKE_DATA_PATH"].removeprefix("s3://").split("/", 1)[1]
    objects = shared.info.store.bucket_dir / key
    root = tmp_path / "service-host"
    root.mkdir()
    with serve_world(root, certs, shared.info.bootstrap, anchors, lake_env, objects) as served:
        yield served
