"""Two query services on one PostgreSQL + S3 lake keep one activity log: the chain in the
catalog database (pipeline/access/logstore.py), anchored in Kafka, checked by `anpr audit
verify` on either host; a row deleted in PostgreSQL is found."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import threading
from datetime import UTC, datetime, timedelta

import duckdb
import pytest
from conftest import running_service
from lakehelp import files_holding

from pipeline.access.audit import ActivityLog
from pipeline.access.logstore import SCHEMA, CatalogStore
from pipeline.lake.backend import Storage
from pipeline.lake.catalog import Lake
from pipeline.lake.postgres_catalog import connect
from pipeline.maintain.state import catalog_log_problems
from pipeline.retention import log_cutoff
from tests.integration.cluster.conftest import Shared

ROUNDS = 4  # queries per instance
AT = "2026-12-07T00:00:00+00:00"


def test_two_query_services_append_to_one_chain(shared: Shared) -> None:
    topics = shared.env["ANPR_TOPICS_PLATE_READS"].removesuffix(".plate-reads")
    shared.env["ANPR_TOPICS_AUDIT_ANCHORS"] = f"{topics}.audit-anchors"
    shared.env["ANPR_ACCESS_USERS"] = f"{getpass.getuser()}=analyst"
    created = shared.anpr("a", "topics", "create")
    assert created.returncode == 0, created.stderr
    with Lake.from_settings(shared.settings("a").lake):
        pass  # an empty lake: the statements below read no table
    # Each host's own socket; its `anpr` clients run in its folder, where the default is.
    sockets = {host: shared.root / host / "anpr.sock" for host in ("a", "b")}
    with contextlib.ExitStack() as services:
        services.enter_context(running_service(_env(shared, "a"), sockets["a"]))
        # Host b holds the same keys as host a (deployed with it), nothing else of a's.
        keys = shared.root / "b" / "state" / "access"
        keys.mkdir(mode=0o700, parents=True)
        for name in ("audit.key", "pseudonym.key"):
            shutil.copy2(shared.root / "a" / "state" / "access" / name, keys / name)
        services.enter_context(running_service(_env(shared, "b"), sockets["b"]))
        for n in range(ROUNDS):
            for host in ("a", "b"):
                # The column's name says which instance ran it (literals are stored as ?).
                sql = f"SELECT {n} AS via_{host}"
                done = shared.anpr(host, "query", "--reason", "control", "--format", "json", sql)
                assert done.returncode == 0, done.stderr
                assert json.loads(done.stdout) == [{f"via_{host}": n}]
    # A third host with its own audit key (not the deployed one) would fork the chain: refused.
    alone = shared.anpr("c", "serve", timeout=120)
    assert alone.returncode == 1, alone.stderr
    assert "does not match its MAC" in alone.stderr
    # Both stopped (their last anchors acknowledged); either host checks the one chain.
    entries = 4 * ROUNDS
    for host in ("a", "b"):
        verified = shared.anpr(host, "audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert verified.stdout.strip() == (
            f"activity log intact: {entries} entries, anchored up to seq {entries - 1}"
        )
    lake = shared.settings("a").lake
    with connect(Storage.from_settings(lake), application="test") as conn:
        rows = conn.execute(f"SELECT seq, entry FROM {SCHEMA}.entries ORDER BY seq").fetchall()
        begun = [json.loads(str(e))["sql"] for _, e in rows if '"query.begin"' in str(e)]
        assert begun == ["SELECT ? AS via_a", "SELECT ? AS via_b"] * ROUNDS
        assert [seq for seq, _ in rows] == list(range(entries))
        # Nothing of the log is in the state folders: it lives in the catalog database only.
        assert not list((shared.root / "a" / "state" / "access").glob("activity*"))
        conn.execute(f"DELETE FROM {SCHEMA}.entries WHERE seq = 5")
    cut = shared.anpr("b", "audit", "verify")
    assert cut.returncode == 1, cut.stdout
    assert "first bad entry: line 6 (seq 5): has seq 6: entries are missing" in cut.stdout
    # DuckDB's attach of the catalog loads DuckLake's schema only: a connection on the lake
    # cannot name the log's tables (the service's sessions are such connections).
    missing = pytest.raises(duckdb.CatalogException, match=f'schema "{SCHEMA}" does not exist')
    with Lake.from_settings(lake, read_only=True) as opened, missing:
        opened.con.execute(f"SELECT * FROM __ducklake_metadata_lake.{SCHEMA}.entries")


def _env(shared: Shared, host: str) -> dict[str, str]:
    return {**os.environ, **shared.host_env(host), "ANPR_LOG_LEVEL": "WARNING"}


def test_appends_from_two_hosts_at_once_make_one_chain(shared: Shared) -> None:
    """Two logs on separate connections (as on two hosts) appending at the same moments: the
    head's row lock orders them, so the chain has every entry once and verifies."""
    storage = Storage.from_settings(shared.settings().lake)
    key = b"k" * 32
    logs = [ActivityLog(shared.root / "unused", key, store=CatalogStore(storage)) for _ in "ab"]
    start = threading.Barrier(len(logs))

    def write(log: ActivityLog, host: str) -> None:
        start.wait()
        for n in range(50):
            log.append({"kind": "query.begin", "at": AT, "n": f"{host}{n}"})

    pairs = zip(logs, "ab", strict=True)
    threads = [threading.Thread(target=write, args=pair) for pair in pairs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    entries = list(logs[0].entries())
    assert sorted(e["n"] for e in entries) == sorted(f"{h}{n}" for h in "ab" for n in range(50))
    assert logs[1].verify().describe() == "activity log intact: 100 entries, nothing anchored yet"
    for log in logs:
        log.close()


def test_retention_leaves_no_byte_of_a_dropped_entry_in_the_catalog_database(
    shared: Shared,
) -> None:
    storage = Storage.from_settings(shared.settings().lake)
    log = ActivityLog(shared.root / "unused", b"k" * 32, store=CatalogStore(storage))
    now = datetime.now(UTC)
    for n in range(6):
        at = (now - timedelta(days=100, minutes=n)).isoformat()
        log.append({"kind": "query.begin", "at": at, "why": f"DROPPEDMARK{n}"})
    for n in range(4):
        log.append({"kind": "query.begin", "at": now.isoformat(), "why": f"KEPTMARK{n}"})
    # `anpr maintain`'s state check reads the log where it is (here: no file to read).
    cutoff = log_cutoff(now, 1)
    where, before = catalog_log_problems(shared.settings(), cutoff)
    assert where == f"the catalog database's schema {SCHEMA}"
    assert before[0] == f"entries older than {cutoff:%Y-%m-%d} (its retention): lines " + (
        "1, 2, 3, 4, 5 and 1 more"
    )
    assert log.apply_retention(now, 1) == 6
    # What stays is checked too: the markers look like plates.
    after = catalog_log_problems(shared.settings(), cutoff)[1]
    assert after == ["a plate-shaped word in clear: lines 1, 2, 3, 4"]
    assert [e["seq"] for e in log.entries()] == [6, 7, 8, 9, 10]  # 10: audit.retention
    assert log.verify().ok
    log.close()
    database = storage.catalog.rsplit("dbname=", 1)[1]
    with shared.info.catalog.connect(database) as conn:
        conn.autocommit = True
        (oid,) = conn.execute(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        ).fetchone() or (None,)
        conn.execute("CHECKPOINT")  # pages changed in memory reach the files
    folder = shared.info.catalog.root / "data" / "base" / str(oid)
    # The scan works: a kept entry is found in the database's files; no dropped one is.
    found = files_holding(folder, [*(f"DROPPEDMARK{n}" for n in range(6)), "KEPTMARK0"])
    assert set(found) == {"KEPTMARK0"}, found
