"""anpr query / sql / audit / subject against real DuckLake lakes, through the real CLI and
the query service (in this process, on a Unix socket and TLS).

The tests run as one OS user, so each `--user NAME` of a test becomes NAME's client
certificate (the service's way to know a remote user): the CLI connects over TLS with it.
Without `--user`, the CLI uses the local socket as the OS user running the tests (an analyst
here). Real OS users: tests/integration/test_service_users.py.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from conftest import MakeTopic, RunAnpr, service_thread
from lakehelp import files_holding, plate_reads, write_reads

from pipeline.access.audit import ActivityLog
from pipeline.access.logstore import CatalogStore
from pipeline.access.redact import redact_sql
from pipeline.access.session import AccessSession
from pipeline.config import LakeSettings, load_settings
from pipeline.lake.backend import Storage
from pipeline.lake.catalog import Lake
from pipeline.maintain.stats import plate_reads_source
from pipeline.pseudonym import Pseudonymiser, read_key
from pipeline.schemas import CANDIDATES
from pipeline.service.ca import issue, make_ca

NOW = datetime.now(UTC).replace(microsecond=0)
RECENT = NOW - timedelta(days=10)
OLD = NOW - timedelta(days=100)  # past the analyst tier, within the legal limit
TARGET = "QXT12345"  # the data subject's plate
USERS = {"ann": "analyst", "ivan": "investigator", "stan": "statistics", "dora": "dpo"}
CERTIFIED = (*USERS, "mallory")  # mallory has a certificate from the service's CA, no role


@dataclass(frozen=True)
class World:
    root: Path
    lake: Path
    state: Path
    env: dict[str, str]
    lake_settings: LakeSettings
    objects: Path  # the folder holding the data files' bytes (embedded: the lake folder)

    @functools.cached_property
    def log(self) -> ActivityLog:
        """The service's log: its file, or the catalog database on PostgreSQL."""
        key = read_key(self.state / "access" / "audit.key", "access.audit_key_file")
        store = CatalogStore(self.storage) if self.storage.kind == "postgres" else None
        return ActivityLog(self.state / "access" / "activity.jsonl", key, store=store)

    def log_text(self) -> str:
        """Every line of the log, as the file holds them."""
        return "".join(f"{line}\n" for line in self.log.lines())

    @property
    def storage(self) -> Storage:
        return Storage.from_settings(self.lake_settings)

    @property
    def data(self) -> str:
        """The lake's data path (a folder or s3:// prefix), without the final slash."""
        return self.storage.data_path.rstrip("/")

    def pseudo(self) -> Pseudonymiser:
        return Pseudonymiser.from_key_file(self.state / "access" / "pseudonym.key")

    def open_lake(self) -> Lake:
        return Lake.from_settings(self.lake_settings)

    def holding(self, needles: list[str]) -> dict[str, list[str]]:
        """needle -> the files of the lake (catalog file, data objects) that hold it."""
        return files_holding(self.objects, needles)


def _times(start: datetime, n: int) -> list[datetime]:
    return [start + timedelta(minutes=5 * i) for i in range(n)]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tls")
    ca = make_ca(folder, "service-ca")
    issue(folder, ca, "server", "127.0.0.1", server=True)
    for user in CERTIFIED:
        issue(folder, ca, user, user, server=False)
    return folder


@pytest.fixture
def anpr(anpr: RunAnpr, certs: Path) -> RunAnpr:
    """The CLI, with ``--user NAME`` turned into NAME's client certificate over TLS."""

    def run(
        env: Mapping[str, str], *args: str, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        words, chosen = list(args), dict(env)
        if "--user" in words:
            at = words.index("--user")
            user = words[at + 1]
            del words[at : at + 2]
            chosen |= {
                "ANPR_SERVE_REMOTE": chosen["TEST_TLS_ADDRESS"],
                "ANPR_SERVE_SERVER_CA": str(certs / "service-ca.pem"),
                "ANPR_SERVE_CLIENT_CERT": str(certs / f"{user}.pem"),
                "ANPR_SERVE_CLIENT_KEY": str(certs / f"{user}.key"),
            }
        return anpr(chosen, *words, timeout=timeout)

    return run


@pytest.fixture
def world(
    tmp_path: Path, certs: Path, kafka_bootstrap: str, make_topic: MakeTopic
) -> Iterator[World]:
    anchors = make_topic(1, {"cleanup.policy": "compact"})
    with serve_world(tmp_path, certs, kafka_bootstrap, anchors) as served:
        yield served


@contextlib.contextmanager
def serve_world(
    root: Path,
    certs: Path,
    bootstrap: str,
    anchors_topic: str,
    lake_env: Mapping[str, str] | None = None,
    objects: Path | None = None,
) -> Iterator[World]:
    """The tests' lake and the query service on it. ``lake_env`` (``ANPR_LAKE_*``) puts the
    catalog and data files elsewhere (tests/integration/cluster: PostgreSQL and S3), and
    ``objects`` is then where the data files' bytes are on this host."""
    lake_dir, state = root / "lake", root / "state"
    settings = load_settings(
        None,
        env=dict(lake_env or {}),
        overrides={
            "lake.path": lake_dir,
            "state.dir": state,
            "access.users": {**USERS, getpass.getuser(): "analyst"},
            "serve.socket": root / "anpr.sock",
            "serve.tls_listen": "127.0.0.1:0",
            "serve.tls_cert": certs / "server.pem",
            "serve.tls_key": certs / "server.key",
            "serve.tls_client_ca": certs / "service-ca.pem",
            "kafka.bootstrap_servers": bootstrap,
            "topics.audit_anchors": anchors_topic,
        },
    )
    with Lake.from_settings(settings.lake) as lake:
        write_reads(lake, plate_reads(_times(OLD, 20), prefix="OLD"))
        plates = [f"NEW{i:05d}" for i in range(30)]
        plates[3] = plates[17] = TARGET  # the subject passed twice, recently...
        recent = plate_reads(_times(RECENT, 30), prefix="NEW", plates=plates)
        candidates = [None] * 30
        candidates[5] = [{"plate": TARGET, "confidence": 0.4}]  # ...and maybe a third time
        index = recent.schema.get_field_index("candidates")
        recent = recent.set_column(
            index, recent.schema.field(index), pa.array(candidates, CANDIDATES)
        )
        write_reads(lake, recent)
        old_target = plate_reads(_times(OLD + timedelta(hours=3), 1), prefix="OLT", plates=[TARGET])
        write_reads(lake, old_target)
    with service_thread(settings) as address:
        yield World(root, lake_dir, state, {
            **{k: v for k, v in os.environ.items() if not k.startswith("ANPR_")},
            **(lake_env or {}),
            "ANPR_LAKE_PATH": str(lake_dir),  # for `anpr maintain`
            "ANPR_STATE_DIR": str(state),
            "ANPR_SERVE_SOCKET": str(settings.serve.socket),
            "ANPR_KAFKA_BOOTSTRAP_SERVERS": bootstrap,  # `anpr audit verify`: anchors
            "ANPR_TOPICS_AUDIT_ANCHORS": anchors_topic,
            "TEST_TLS_ADDRESS": address,
        }, settings.lake, objects or lake_dir)  # fmt: skip


def _json(result: object) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads(result.stdout)  # type: ignore[attr-defined]
    return rows


def test_query_without_a_valid_purpose_exits_2_and_is_logged(world: World, anpr: RunAnpr) -> None:
    sql = "SELECT count(*) AS n FROM plate_reads"
    for args in (
        ["--user", "ann"],  # no reason
        ["--user", "ann", "--reason", "curiosity"],  # not a configured code
        ["--user", "ivan", "--reason", "control"],  # investigators always need a case
        ["--user", "mallory", "--reason", "control"],  # no role
    ):
        result = anpr(world.env, "query", *args, sql)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
    # Every attempt is logged by the service, which knows who it was (issue 15, item 8).
    assert [(e["kind"], e["user"]) for e in world.log.entries()] == [
        ("query.refused", "ann"),
        ("query.refused", "ann"),
        ("query.refused", "ivan"),
        ("access.refused", "mallory"),
    ]
    gone = anpr(world.env, "query", "--user=ann", "--reason", "control", sql)
    assert gone.returncode == 2
    assert "--user is gone" in gone.stderr
    ok = anpr(world.env, "query", "--user", "ann", "--reason", "control", "--format", "json", sql)
    assert ok.returncode == 0, ok.stderr
    assert [e["kind"] for e in world.log.entries()][4:] == ["query.begin", "query.end"]


def test_analyst_sees_only_pseudonyms_of_recent_reads(world: World, anpr: RunAnpr) -> None:
    args = ["query", "--user", "ann", "--reason", "control", "--format", "json"]
    rows = _json(anpr(world.env, *args, "SELECT * FROM plate_reads"))
    assert len(rows) == 30  # the 21 reads 100 days old are past the analyst tier
    assert min(str(r["captured_at"]) for r in rows) >= RECENT.isoformat()
    text = json.dumps(rows)
    assert "NEW000" not in text
    assert TARGET not in text
    assert "OLD" not in text
    pseudo = world.pseudo()
    assert sum(r["plate_pseudonym"] == pseudo.one(TARGET) for r in rows) == 2
    # No column gives the plate back, in any spelling.
    for sql in ("SELECT plate FROM plate_reads", "SELECT plate_raw FROM plate_reads"):
        refused = anpr(world.env, *args, sql)
        assert refused.returncode == 2
        assert "not found" in refused.stderr.lower() or "does not have" in refused.stderr
    # The investigator, for a case, sees clear plates of any age within the legal limit.
    inv = ["query", "--user", "ivan", "--reason", "investigation", "--case", "C-1", "--format"]
    clear = _json(
        anpr(world.env, *inv, "json", f"SELECT * FROM plate_reads WHERE plate = '{TARGET}'")
    )
    assert len(clear) == 3
    # The log keeps who, why and the pseudonyms of the plates returned, never the plates.
    entries = list(world.log.entries())
    ends = [e for e in entries if e["kind"] == "query.end" and e["outcome"] == "ok"]
    assert pseudo.one(TARGET) in ends[0]["pseudonyms"]
    assert (
        ends[-1]["pseudonyms"] == [pseudo.one(TARGET)]
        or pseudo.one(TARGET) in ends[-1]["pseudonyms"]
    )
    log_text = world.log_text()
    assert "NEW00000" not in log_text
    prom = (world.state / "metrics" / "access.prom").read_text()
    assert 'anpr_queries_total{outcome="ok",reason="control",role="analyst"} 1.0' in prom


ESCAPES = [
    "SELECT * FROM read_parquet('{data}/**/*.parquet')",
    "SELECT * FROM '{data}/main/plate_reads/**/*.parquet'",
    "SELECT * FROM glob('{data}/**')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM sniff_csv('/etc/passwd')",  # read files past enable_external_access once
    "SELECT * FROM read_text('{lake}/catalog.sqlite')",
    "SELECT * FROM read_blob('{lake}/catalog.sqlite')",
    "SELECT * FROM sqlite_scan('{lake}/catalog.sqlite', 'ducklake_data_file')",
    "SELECT * FROM lake.plate_reads",
    "SELECT * FROM lake.main.plate_reads AT (VERSION => 1)",
    "SELECT * FROM plate_reads AT (VERSION => 1)",
    "SELECT * FROM ducklake_list_files('lake', 'plate_reads')",
    "SELECT * FROM lake.snapshots()",
    "SELECT * FROM duckdb_databases()",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_databases",
    "SELECT current_setting('allowed_directories')",
    "SELECT anpr_pseudonym('{target}')",
    "WITH duckdb_views AS (SELECT * FROM duckdb_views) SELECT * FROM duckdb_views",
    "SELECT * FROM query('SELECT * FROM lake.plate_reads')",
    "ATTACH '{root}/other.db' AS other",
    "ATTACH ':memory:' AS scratch",
    "DETACH lake",
    "COPY (SELECT 1) TO '{root}/out.csv'",
    "INSTALL httpfs",
    "LOAD '{root}/evil.duckdb_extension'",
    "SET enable_external_access = true",
    "RESET lock_configuration",
    "PRAGMA database_list",
    "CALL lake.set_option('data_inlining_row_limit', 1000)",
    "CREATE TABLE t AS SELECT * FROM plate_reads",
    "USE lake",
    "SELECT 1; SELECT * FROM lake.plate_reads",
]


def test_escape_attempts_are_refused_and_logged_as_refused(world: World, anpr: RunAnpr) -> None:
    corpus = [
        s.format(data=world.data, lake=world.lake, root=world.root, target=TARGET) for s in ESCAPES
    ]
    stdin = "".join(f"{s};\n" for s in corpus) + "SELECT count(*) AS n FROM plate_reads;\n"
    result = anpr_stdin(world.env, ["sql", "--reason", "control", "--format", "csv"], stdin)
    assert result.returncode == 2
    assert result.stdout.strip().splitlines()[-1] == "30"  # the session still works
    entries = list(world.log.entries())
    refused = [e for e in entries if e["kind"] == "query.refused"]
    # "SELECT 1; SELECT ..." is one text to the shell: refused as a whole.
    assert len(refused) == len(corpus)
    # Stored as templates, literals as keyed pseudonyms (pipeline/access/redact.py).
    key = read_key(world.state / "access" / "audit.key", "access.audit_key_file")
    stored = [redact_sql(s.rstrip(), world.pseudo(), key)["sql"] for s in corpus]
    assert [e["sql"] for e in refused] == stored
    assert TARGET not in world.log_text()
    assert sum(e["kind"] == "query.begin" for e in entries) == 1
    assert not (world.root / "out.csv").exists()
    assert world.log.verify().ok


def test_sql_input_that_is_not_utf8_is_one_line_exit_2_and_logged(world: World) -> None:
    stdin = f"SELECT count(*) FROM plate_reads WHERE plate = '{TARGET}\xff';\n".encode("latin-1")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "sql", "--reason", "control"],
        env=world.env,
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "Traceback" not in err
    assert err.splitlines() == [
        "anpr: error: standard input is not UTF-8 text (byte 56 of a line)"
    ], err
    (entry,) = list(world.log.entries())
    assert (entry["kind"], entry["reason"], entry["sql"]) == ("query.refused", "control", None)
    assert "not UTF-8" in entry["why"]
    assert TARGET not in world.log_text()


def anpr_stdin(
    env: dict[str, str], args: list[str], stdin: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_locked_session_itself_cannot_loosen_its_settings(world: World) -> None:
    # Defence in depth below the statement check: what DuckDB itself refuses once locked.
    pseudo = Pseudonymiser(b"k" * 32)
    with AccessSession.open(
        world.lake,
        "analyst",
        now=NOW,
        analyst_max_age_days=90,
        retention_months=6,
        pseudo=pseudo,
        storage=world.storage,
    ) as session:
        con = session.con
        for sql in (
            "SET enable_external_access = true",
            "SET lock_configuration = false",
            "SET allowed_directories = ['/']",
            "SET disabled_filesystems = ''",
            "INSERT INTO lake.plate_reads SELECT * FROM lake.plate_reads",
            f"COPY (SELECT 1) TO '{world.root}/x.csv'",
            "SELECT * FROM read_csv('/etc/passwd')",
            "INSTALL httpfs",
        ):
            with pytest.raises(duckdb.Error):
                con.execute(sql)


def _tamper(world: World, anpr: RunAnpr, edit: Callable[[list[str]], list[str]]) -> str:
    path = world.root / "tampered.jsonl"
    lines = world.log_text().splitlines()
    path.write_text("".join(f"{line}\n" for line in edit(lines)))
    (world.root / "tampered.jsonl.head.json").write_text(world.log.head_record() or "")
    result = anpr(world.env, "audit", "verify", "--log", str(path))
    assert result.returncode == 1, result.stdout
    return result.stdout


def test_audit_verify_catches_edits_deletions_reorders_and_truncation(
    world: World, anpr: RunAnpr
) -> None:
    for n in range(3):
        query = ["query", "--user", "ann", "--reason", "control", f"SELECT {n} AS n"]
        assert anpr(world.env, *query).returncode == 0
    intact = anpr(world.env, "audit", "verify")  # root reads the log: checked here
    assert intact.returncode == 0
    assert "6 entries" in intact.stdout

    def one_byte(lines: list[str]) -> list[str]:
        lines[2] = lines[2].replace('"user":"ann"', '"user":"anm"')
        return lines

    assert "line 3 (seq 2)" in _tamper(world, anpr, one_byte)
    assert "line 4 (seq 3)" in _tamper(world, anpr, lambda ls: ls[:3] + ls[4:])
    assert "line 2 (seq 1)" in _tamper(world, anpr, lambda ls: [ls[0], ls[2], ls[1], *ls[3:]])
    assert "line 5 (seq 4)" in _tamper(world, anpr, lambda ls: ls[:4])


def _dpo(world: World, anpr: RunAnpr, *args: str) -> str:
    result = anpr(world.env, "subject", *args, "--user", "dora")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_erase_leaves_no_byte_of_the_plate_under_the_lake(world: World, anpr: RunAnpr) -> None:
    # A rectification (old value kept in the versions table) and a restriction hold it too.
    _dpo(world, anpr, "rectify", "--event-id", "ev-NEW-000003", "--plate", "NEW99999",
         "--reason", "misread")  # fmt: skip
    _dpo(world, anpr, "restrict", "--plate", TARGET, "--until", "2099-01-01")
    assert world.holding([TARGET])  # before: it is everywhere
    refused = anpr(
        world.env, "subject", "erase", "--plate", TARGET, "--reason", "x", "--user", "ann"
    )
    assert refused.returncode == 2
    out = _dpo(world, anpr, "erase", "--plate", TARGET, "--reason", "art. 17 request")
    assert "erased" in out
    assert world.holding([TARGET]) == {}
    kept = world.holding(["NEW00004", "OLD00001", "NEW99999"])
    assert set(kept) == {"NEW00004", "OLD00001", "NEW99999"}
    with world.open_lake() as lake:
        counts = lake.con.execute(
            "SELECT (SELECT count(*) FROM plate_reads), (SELECT count(*) FROM "
            "plate_read_versions), (SELECT count(*) FROM subject_restrictions)"
        ).fetchone()
    # 51 reads less: its other recent read, the one naming it as an OCR candidate, the old one
    # (the rectified read now carries another plate); its version and restriction rows.
    assert counts == (51 - 3, 0, 0)
    entries = list(world.log.entries())
    assert [e["request"] for e in entries if e["kind"] == "subject.end"] == [
        "rectify", "restrict", "erase"
    ]  # fmt: skip
    assert TARGET not in world.log_text()
    assert [e["kind"] for e in entries].count("subject.refused") == 1


def test_rectify_keeps_the_original_in_the_versions_table(world: World, anpr: RunAnpr) -> None:
    _dpo(world, anpr, "rectify", "--event-id", "ev-NEW-000017", "--plate", "qxt 12346",
         "--reason", "misread 5 as 6", "--case", "DSAR-9")  # fmt: skip
    dpo = ["query", "--user", "dora", "--reason", "dsar", "--case", "DSAR-9", "--format", "json"]
    versions = _json(anpr(world.env, *dpo, "SELECT * FROM plate_read_versions"))
    assert len(versions) == 1
    version = versions[0]
    assert (version["event_id"], version["old_plate"], version["new_plate"]) == (
        "ev-NEW-000017", TARGET, "QXT12346"
    )  # fmt: skip
    assert version["changed_by"] == "dora"
    assert version["reason"] == "misread 5 as 6"
    assert version["old_plate_raw"] == "NEW 00017" or version["old_plate_raw"].startswith("QXT")
    # It ages out with the read: same collection time, so retention deletes both together.
    read = _json(
        anpr(world.env, *dpo, "SELECT * FROM plate_reads WHERE event_id = 'ev-NEW-000017'")
    )
    assert read[0]["plate"] == "QXT12346"
    assert read[0]["captured_at"] == version["captured_at"]
    # Unknown event ids and non-dpo users are refused.
    missing = anpr(world.env, "subject", "rectify", "--event-id", "nope", "--plate", "AB1",
                   "--reason", "x", "--user", "dora")  # fmt: skip
    assert missing.returncode == 2


def test_restricted_rows_are_seen_by_the_dpo_only(world: World, anpr: RunAnpr) -> None:
    out = _dpo(world, anpr, "restrict", "--plate", TARGET, "--until", "2099-01-01")
    assert "capped at the expiry" in out  # never longer than the newest row may be kept
    sql = f"SELECT count(*) AS n FROM plate_reads WHERE plate = '{TARGET}'"
    pseudo = world.pseudo().one(TARGET)
    ann = ["--user", "ann", "--reason", "control", "--format", "json"]
    ivan = ["--user", "ivan", "--reason", "investigation", "--case", "C-7", "--format", "json"]
    dora = ["--user", "dora", "--reason", "dsar", "--case", "D-1", "--format", "json"]
    assert _json(anpr(world.env, "query", *ivan, sql)) == [{"n": 0}]
    seen = _json(anpr(world.env, "query", *ann, "SELECT plate_pseudonym FROM plate_reads"))
    assert pseudo not in {r["plate_pseudonym"] for r in seen}
    assert len(seen) == 28
    assert _json(anpr(world.env, "query", *dora, sql)) == [{"n": 3}]
    restriction = _json(anpr(world.env, "query", *dora, "SELECT * FROM subject_restrictions"))
    until = datetime.fromisoformat(str(restriction[0]["restricted_until"]))
    assert until <= RECENT + timedelta(minutes=5 * 17) + timedelta(days=185)
    # Only the dpo's view lists restrictions at all.
    assert anpr(world.env, "query", *ivan, "SELECT * FROM subject_restrictions").returncode == 2
    _dpo(world, anpr, "unrestrict", "--plate", TARGET)
    assert _json(anpr(world.env, "query", *ivan, sql)) == [{"n": 3}]


def test_subject_access_reports_rows_and_who_saw_them(world: World, anpr: RunAnpr) -> None:
    ivan = ["--user", "ivan", "--reason", "investigation", "--case", "C-7", "--format", "csv"]
    assert (
        anpr(world.env, "query", *ivan, "SELECT * FROM plate_reads WHERE lane = 1").returncode == 0
    )
    assert anpr(world.env, "query", *ivan, "SELECT 1 AS x").returncode == 0
    reports = world.root / "reports"
    out = _dpo(world, anpr, "access", "--plate", TARGET.lower(), "--out", str(reports))
    path = Path(out.strip().rsplit(": ", 1)[1])
    assert oct(path.stat().st_mode)[-3:] == "600"
    report = json.loads(path.read_text())
    assert len(report["tables"]["plate_reads"]) == 4  # 3 reads and 1 OCR candidate
    who = [e for e in report["activity_log_entries"] if e["kind"] == "query.end"]
    assert len(who) == 1  # the first query returned it, the second did not
    csv_out = _dpo(world, anpr, "access", "--plate", TARGET, "--format", "csv", "--out",
                   str(reports))  # fmt: skip
    csv_text = Path(csv_out.strip().rsplit(": ", 1)[1]).read_text()
    assert csv_text.startswith("source,row,column,value\n")
    assert TARGET in csv_text
    kinds = [e.get("request") for e in world.log.entries() if e["kind"] == "subject.end"]
    assert kinds == ["access", "access"]
    prom = (world.state / "metrics" / "access.prom").read_text()
    assert 'anpr_subject_requests_total{kind="access"} 2.0' in prom


def test_statistics_computed_after_a_restriction_leave_the_plate_out(
    world: World, anpr: RunAnpr
) -> None:
    # Every statistic reads plate_reads through this one source (pipeline/maintain/stats.py).
    def passages_of_target() -> int:
        with world.open_lake() as lake:
            rows = lake.con.execute(
                f"SELECT count(*) FROM {plate_reads_source()} WHERE plate = ?", [TARGET]
            ).fetchone()
        assert rows is not None
        return int(rows[0])

    assert passages_of_target() == 3
    _dpo(world, anpr, "restrict", "--plate", TARGET, "--until", "2099-01-01")
    assert passages_of_target() == 0
    _dpo(world, anpr, "unrestrict", "--plate", TARGET)
    assert passages_of_target() == 3


def test_versions_and_restrictions_age_out_with_the_reads(world: World, anpr: RunAnpr) -> None:
    _dpo(world, anpr, "rectify", "--event-id", "ev-OLD-000002", "--plate", "OLD77777",
         "--reason", "misread")  # fmt: skip
    _dpo(world, anpr, "restrict", "--plate", TARGET, "--until", "2099-01-01")
    # Just past six months after the old reads: they, and the version of one, must go; the
    # restriction covers a recent read too, so it stays until that one expires.
    as_of = OLD + timedelta(days=186)
    result = anpr(world.env, "maintain", "--only", "retention", "--no-topic-check",
                  "--as-of", as_of.isoformat(), timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    with world.open_lake() as lake:
        left = lake.con.execute(
            "SELECT (SELECT count(*) FROM plate_read_versions), "
            "(SELECT count(*) FROM subject_restrictions), "
            "(SELECT count(*) FROM plate_reads WHERE captured_at < ?)",
            [OLD + timedelta(days=1)],
        ).fetchone()
    assert left == (0, 1, 0)
    assert world.holding(["OLD77777", "OLD00002"]) == {}
