"""The attack corpus (tests/attacks.py) run through the query service as every role: each
statement is refused and logged, or answered from the role's views only (issue 15, item 1)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from lakehelp import Person, passengers, plate_reads, write_people, write_reads

from pipeline.access import statement
from pipeline.access.session import AccessSession
from pipeline.config import load_settings
from pipeline.lake.catalog import Lake
from pipeline.pseudonym import Pseudonymiser
from pipeline.service.handlers import Service
from pipeline.service.peers import Peer
from tests.attacks import WRAPPING_FORMS, corpus

NOW = datetime.now(UTC).replace(microsecond=0)
USERS = {"ann": "analyst", "ivan": "investigator", "stan": "statistics", "dora": "dpo"}
# Plates by age: NEW within the analyst window, OLD past it (within the legal limit), ANC
# past the legal limit. Surnames and documents likewise for passengers.
PLATES = {"NEW": NOW - timedelta(days=5), "OLD": NOW - timedelta(days=100),
          "ANC": NOW - timedelta(days=400)}  # fmt: skip
PEOPLE = [
    Person("QWNEWSURNAME", "DOCNEW0001", date(1980, 1, 2), "NEWPLT01", NOW - timedelta(days=5)),
    Person("QWANCSURNAME", "DOCANC0001", date(1970, 3, 4), "ANCPLT01", NOW - timedelta(days=400)),
]


@dataclass(frozen=True)
class World:
    root: Path
    service: Service
    places: dict[str, str]

    def forbidden(self, role: str) -> list[str]:
        """Text that must never appear in an answer to ``role``."""
        paths = [self.places["lake"], "catalog.sqlite", "ducklake-", "pseudonym.key"]
        ancient = ["ANCPLT", "QWANCSURNAME", "DOCANC0001", "ANC0"]
        clear = ["NEWPLT", "OLDPLT", "QWNEWSURNAME", "DOCNEW0001"]
        return {
            "analyst": paths + ancient + clear,
            "statistics": paths + ancient + clear,
            "investigator": paths + ancient,
            "dpo": paths,
        }[role]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("attacks")
    lake_dir, state = root / "lake", root / "state"
    with Lake.open(lake_dir) as lake:
        for prefix, when in PLATES.items():
            times = [when + timedelta(minutes=i) for i in range(5)]
            plates = [f"{prefix}PLT{i:02d}" for i in range(5)]
            write_reads(lake, plate_reads(times, prefix=prefix, plates=plates))
        write_people(lake, passengers(PEOPLE))
    data = lake_dir / "data"
    one = next((data / "main" / "plate_reads").rglob("*.parquet"))
    places = {
        "lake": str(lake_dir), "data": str(data), "state": str(state), "root": str(root),
        "plates": f"{data}/main/plate_reads/**/*.parquet",
        "people": f"{data}/main/passengers/**/*.parquet", "file": str(one),
    }  # fmt: skip
    env = {
        "ANPR_LAKE_PATH": str(lake_dir),
        "ANPR_STATE_DIR": str(state),
        "ANPR_ACCESS_USERS": ",".join(f"{u}={r}" for u, r in USERS.items()),
    }
    service = Service(load_settings(None, env=env), clock=lambda: NOW)
    try:
        yield World(root, service, places)
    finally:
        service.close()


CLASSES = sorted(corpus({}).keys())


def test_the_corpus_is_large_and_covers_every_class() -> None:
    classes = corpus({})
    assert sum(len(v) for v in classes.values()) >= 300
    assert all(len(v) >= 10 for v in classes.values()), {k: len(v) for k, v in classes.items()}


@pytest.mark.parametrize("user", sorted(USERS))
@pytest.mark.parametrize("kind", CLASSES)
def test_every_attack_is_refused_and_logged_or_answered_from_the_views(
    world: World, user: str, kind: str
) -> None:
    role = USERS[user]
    peer = Peer(user, "unix", "test")
    forbidden = world.forbidden(role)
    answered = 0
    for sql in corpus(world.places)[kind]:
        before = _counts(world)
        reply = world.service.handle(
            peer, {"op": "query", "args": {"sql": sql, "reason": "control", "case": "CASE-1"}}
        )
        after = _counts(world)
        logged = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        # The head counts outcomes per user's role and reason: "queries|analyst|control|ok".
        logged = {k.rsplit("|", 1)[-1]: n for k, n in logged.items() if n}
        if reply.exit == 0:
            answered += 1
            assert logged == {"ok": 1}, sql
            assert reply.table is not None
            text = repr(reply.table.to_pylist())
            leaked = [f for f in forbidden if f in text]
            assert not leaked, (sql[:200], leaked)
        else:
            assert reply.exit == 2, (sql[:200], reply.error)
            assert logged in ({"refused": 1}, {"failed": 1}), (
                sql[:200],
                logged,
            )
    assert answered <= len(corpus(world.places)[kind]) // 4  # most of a class is refused


def _counts(world: World) -> dict[str, int]:
    head = world.service.log.head()
    return dict(head.counts) if head is not None else {}


def test_the_plan_check_alone_refuses_what_reads_outside_the_views(world: World) -> None:
    # Layer 2 without layer 1: every single SELECT of the corpus that DuckDB can bind on the
    # analyst's session is refused by the plan check unless it reads only the views' tables.
    with AccessSession.open(
        Path(world.places["lake"]), "analyst", now=NOW, analyst_max_age_days=90,
        retention_months=6, pseudo=Pseudonymiser(b"k" * 32),
    ) as session:  # fmt: skip
        con = session.con
        checked = 0
        for sqls in corpus(world.places).values():
            for sql in sqls:
                if len(sql) > statement.MAX_SQL_CHARS or "\x00" in sql:
                    continue
                try:
                    kinds = [s.type for s in con.extract_statements(sql)]
                except duckdb.Error:
                    continue
                if kinds != [duckdb.StatementType.SELECT]:
                    continue
                try:
                    reads = statement.plan_reads(con, sql)
                except statement.QueryRefused:
                    continue  # does not bind: nothing runs
                checked += 1
                outside = [r for r in reads if r not in session.reads.scans]
                with_views = not outside
                if with_views:
                    continue
                with pytest.raises(statement.QueryRefused):
                    statement.check_plan(con, sql, session.reads)
        assert checked >= 300


# Lake folders of tables the role's views do not read.
OTHER_TABLES = {"ann": ("people",), "stan": ("plates", "people")}


@pytest.mark.parametrize("user", sorted(OTHER_TABLES))
def test_without_both_checks_duckdb_itself_reads_no_other_tables_files(
    world: World, user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Layer 3 alone (docs/adr/0008): with the syntax and plan checks switched off, the locked
    # connection still answers from the role's views, but the files of a table its views do
    # not read (passengers for the analyst, everything for statistics) and the data folder
    # itself fail inside DuckDB, by table function and by replacement scan alike; so do the
    # catalog file and the state folder's keys and log.
    monkeypatch.setattr(AccessSession, "check", lambda self, sql: sql)
    peer = Peer(user, "unix", "test")
    args = {"reason": "control", "case": "CASE-1"}
    # The statistics role has no view in this lake (no statistics computed): a generator.
    view = "plate_reads" if user == "ann" else "range(3)"
    own = world.service.handle(
        peer, {"op": "query", "args": {**args, "sql": f"SELECT count(*) AS n FROM {view}"}}
    )
    assert own.exit == 0, own.error
    assert own.table is not None
    assert own.table.to_pylist()[0]["n"] > 0
    lake, state = Path(world.places["lake"]), Path(world.places["state"])
    # The catalog file (DuckDB allows what is attached when external access goes off: the
    # lake attaches after) and the service's own files, each there to be read.
    files = [lake / "catalog.sqlite"]
    files += [state / "access" / n for n in ("pseudonym.key", "audit.key", "activity.jsonl")]
    assert all(f.is_file() for f in files)
    attempts = [f"SELECT * FROM glob('{world.places['data']}/**')"]
    attempts += [f"SELECT * FROM read_blob('{f}')" for f in files]
    attempts.append(f"SELECT * FROM read_text('{files[0]}')")
    for folder in OTHER_TABLES[user]:
        attempts += [
            f"SELECT * FROM read_parquet('{world.places[folder]}')",
            f"SELECT * FROM '{world.places[folder]}'",
            f"SELECT * FROM read_blob('{world.places[folder]}')",
        ]
    for sql in attempts:
        before = _counts(world)
        reply = world.service.handle(peer, {"op": "query", "args": {**args, "sql": sql}})
        after = _counts(world)
        assert reply.exit == 2, sql
        assert "disabled by configuration" in str(reply.error), (sql, reply.error)
        logged = {k.rsplit("|", 1)[-1]: after[k] - before.get(k, 0) for k in after}
        assert {k: n for k, n in logged.items() if n} == {"failed": 1}, sql


def test_without_both_checks_no_role_reads_another_sessions_spills(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Layer 3 alone: DuckDB lets a locked session read its own temporary folder, so each
    # session has a private one under the state folder. The analyst, checks off, reaches
    # neither a file spilled in the investigator's session's folder nor the folder of all.
    monkeypatch.setattr(AccessSession, "check", lambda self, sql: sql)
    peer = Peer("ann", "unix", "test")
    args = {"reason": "control", "case": "CASE-1"}
    parent = Path(world.places["state"]) / "access" / "query-tmp"
    # Held out of the pool, the investigator's session (and its folder) stays open throughout.
    with world.service.pool.session("investigator") as theirs:
        folder = theirs.lake.temp_dir
        assert folder is not None
        assert folder.parent == parent
        spill = folder / "duckdb_temp_storage-0.tmp"
        spill.write_text("NEWPLT01")  # as if the investigator's query had spilled its rows
        mine = world.service.handle(
            peer,
            {
                "op": "query",
                "args": {**args, "sql": "SELECT current_setting('temp_directory') AS t"},
            },
        )
        assert mine.exit == 0, mine.error
        assert mine.table is not None
        own = Path(mine.table.to_pylist()[0]["t"])
        assert own.parent == parent
        assert own != folder
        attempts = [
            f"SELECT * FROM read_text('{spill}')",
            f"SELECT * FROM read_blob('{spill}')",
            f"SELECT * FROM glob('{folder}/*')",
            f"SELECT * FROM glob('{parent}/**')",
        ]
        for sql in attempts:
            reply = world.service.handle(peer, {"op": "query", "args": {**args, "sql": sql}})
            assert reply.exit == 2, sql
            assert "disabled by configuration" in str(reply.error), (sql, reply.error)
        spill.unlink()


# Shapes that keep a subject value findable: their answers must name the subject.
PRESERVING_FORMS = (
    "SELECT {c} FROM {v}",
    "SELECT upper({c}), lower({c}) FROM {v}",
    "SELECT {c}::BLOB FROM {v}",
    "SELECT '#' || {c} FROM {v}",
    "SELECT concat({c}, 'x'), concat('x', {c}) FROM {v}",
    "SELECT string_agg({c}, '') FROM {v}",
    "SELECT list({c}), max({c}), arg_max({c}, captured_at) FROM {v}",
    "SELECT struct_pack(p := {c}), to_json({c}) FROM {v}",
    "SELECT first_value({c}) OVER (ORDER BY captured_at), lag({c}, 0) OVER () FROM {v}",
    "SELECT CASE WHEN lane > 0 THEN {c} END FROM {v}",
    "WITH w(x) AS (SELECT {c} FROM {v}) SELECT upper(x) FROM w",
    "SELECT x.h FROM range(1) r, LATERAL (SELECT lower({c}) AS h FROM {v}) x",
    "SELECT unnest([{c}]) FROM {v}",
)


@pytest.mark.parametrize("user", ["ann", "ivan"])
def test_every_wrapping_is_refused_or_names_its_subject(world: World, user: str) -> None:
    # Issue 15, item 7: over one subject's rows, each result shape is either refused (and
    # logged as refused) or its query.end entry names the subject's keyed pseudonym.
    plate = "NEWPLT01"
    pseudonym = world.service.pseudo.one(plate)
    column = "plate_pseudonym" if user == "ann" else "plate"
    literal = pseudonym if user == "ann" else plate
    rows = f"(SELECT * FROM plate_reads WHERE {column} = '{literal}')"
    peer = Peer(user, "unix", "test")
    outcomes = {"refused": 0, "named": 0}
    for form in (*WRAPPING_FORMS, *PRESERVING_FORMS):
        sql = form.replace("{c}", column).replace("{v}", rows)
        reply = world.service.handle(
            peer, {"op": "query", "args": {"sql": sql, "reason": "control", "case": "CASE-1"}}
        )
        last = list(world.service.log.entries())[-1]
        if reply.exit == 0:
            assert last["kind"] == "query.end", sql
            assert pseudonym in last["pseudonyms"], sql
            outcomes["named"] += 1
        else:
            assert last["kind"] == "query.refused", (sql, reply.error)
            assert "whose rows" in last["why"], (sql, last["why"])
            outcomes["refused"] += 1
    assert outcomes["refused"] >= len(WRAPPING_FORMS)
    assert outcomes["named"] >= len(PRESERVING_FORMS) - (0 if user == "ann" else 3)
