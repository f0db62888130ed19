"""On a PostgreSQL catalog, query sessions log in as their own database role, which reads
DuckLake's schema and nothing else (docs/adr/0008-query-confinement.md, layer 3): with both
statement checks off, ``postgres_query`` on the metadata database reaches neither the activity
log's schema nor any write, while the views answer and the service's own log writes go on.

Only PostgreSQL runs here (no brokers, no object store): the data files are a local folder.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from lakehelp import Person, passengers, plate_reads, write_people, write_reads

from pipeline.access.logstore import SCHEMA
from pipeline.access.session import AccessSession
from pipeline.cluster import postgres
from pipeline.config import load_settings
from pipeline.errors import ConfigError
from pipeline.lake.backend import METADATA_SCHEMA, Storage
from pipeline.lake.catalog import CATALOG_INDEXES, Lake
from pipeline.lake.postgres_catalog import unsample_values
from pipeline.maintain.verify import sampled_values
from pipeline.pseudonym import Pseudonymiser
from pipeline.service.handlers import Service
from pipeline.service.peers import Peer

NOW = datetime.now(UTC).replace(microsecond=0)
USERS = {"ivan": "investigator", "dora": "dpo"}
ARGS = {"reason": "control", "case": "CASE-1"}
META = "__ducklake_metadata_lake"


@dataclass(frozen=True)
class Catalog:
    server: postgres.Server
    database: str
    env: dict[str, str]

    def owner(self) -> psycopg.Connection[tuple[object, ...]]:
        """The pipeline's own login (owner of the database)."""
        return self.server.connect(self.database)

    def query_login(self) -> psycopg.Connection[tuple[object, ...]]:
        password = self.server.query_password_file.read_text(encoding="utf-8").strip()
        return psycopg.connect(
            self.server.query_conninfo(self.database), password=password, autocommit=True
        )


@pytest.fixture(scope="module")
def catalog() -> Iterator[Catalog]:
    # A private state dir below /tmp, as `anpr cluster` makes one (PostgreSQL's folder moves
    # out of it when we are root).
    state = Path(tempfile.mkdtemp(prefix="anpr-pgrole-", dir="/tmp"))
    root = state / "hosts"
    try:
        server = postgres.start(state)
        name = f"q{uuid.uuid4().hex[:12]}"
        postgres.create_database(server, name)  # grants first, DuckLake's tables after
        env = {
            "ANPR_LAKE_PATH": str(root / "lake"),
            "ANPR_STATE_DIR": str(root / "state"),
            "ANPR_ACCESS_USERS": ",".join(f"{u}={r}" for u, r in USERS.items()),
            "ANPR_LAKE_CATALOG": f"postgres:{server.conninfo(name)}",
            "ANPR_LAKE_CATALOG_PASSWORD_FILE": str(server.password_file),
            "ANPR_LAKE_QUERY_CATALOG": f"postgres:{server.query_conninfo(name)}",
            "ANPR_LAKE_QUERY_CATALOG_PASSWORD_FILE": str(server.query_password_file),
        }
        with Lake.from_settings(load_settings(None, env=env).lake) as lake:
            times = [NOW - timedelta(days=2, minutes=i) for i in range(5)]
            write_reads(lake, plate_reads(times, prefix="QRL"))
            person = Person("QWROLESURNAME", "DOCROLE001", NOW.date(), "QRL00001", times[0])
            write_people(lake, passengers([person]))
        yield Catalog(server, name, env)
    finally:
        postgres.stop(state, immediate=True)
        postgres.remove(state)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def service(catalog: Catalog) -> Iterator[Service]:
    served = Service(load_settings(None, env=catalog.env), clock=lambda: NOW)
    try:
        yield served
    finally:
        served.close()


def _entries(catalog: Catalog) -> int:
    with catalog.owner() as conn:
        if conn.execute(f"SELECT to_regclass('{SCHEMA}.entries')").fetchone() == (None,):
            return 0  # made by the service's first append
        (count,) = conn.execute(f"SELECT count(*) FROM {SCHEMA}.entries").fetchone() or (0,)
    return int(str(count))


def _catalog_indexes(catalog: Catalog) -> dict[str, tuple[str, str]]:
    """Our indexes in the PostgreSQL catalog: name -> (table, definition)."""
    with catalog.owner() as conn:
        return {
            str(name): (str(table), str(definition))
            for name, table, definition in conn.execute(
                "SELECT indexname, tablename, indexdef FROM pg_indexes "
                "WHERE schemaname = %s AND indexname LIKE 'anpr%%'",
                [METADATA_SCHEMA],
            ).fetchall()
        }


def test_the_pipeline_indexes_the_postgresql_catalog_for_its_commits(catalog: Catalog) -> None:
    """The catalog indexes a commit needs (ADR 0006), also on a lake made before them."""
    found = _catalog_indexes(catalog)
    assert set(found) == {name for name, _, _ in CATALOG_INDEXES}
    for name, table, columns in CATALOG_INDEXES:
        assert found[name][0] == table
        assert found[name][1].endswith(f"({columns})"), found[name][1]
    with catalog.owner() as conn:
        for name, _, _ in CATALOG_INDEXES:
            conn.execute(f"DROP INDEX {METADATA_SCHEMA}.{name}")
    assert _catalog_indexes(catalog) == {}
    settings = load_settings(None, env=catalog.env)
    with Lake.from_settings(settings.lake, read_only=True) as reader:  # never writes the catalog
        assert reader.con.execute("SELECT count(*) FROM plate_reads").fetchone() == (5,)
    assert _catalog_indexes(catalog) == {}
    with Lake.from_settings(settings.lake):
        pass
    assert _catalog_indexes(catalog) == found


def test_planner_statistics_of_value_columns_are_turned_off_only_by_their_owner(
    catalog: Catalog,
) -> None:
    """A login that may not alter DuckLake's tables leaves their value columns' planner
    statistics as they were, says so and fails no purge; verify reports them until the
    owner's purge turns them off (ADR 0005)."""
    storage = Storage.from_settings(load_settings(None, env=catalog.env).lake)
    with catalog.owner() as conn:
        conn.autocommit = True
        conn.execute("ANALYZE")  # as autovacuum would have: the value columns hold samples
    before = sampled_values(storage)
    assert before is not None
    assert {"ducklake_file_column_stats.min_value"} <= set(before)
    deadline = time.monotonic() + 30
    with catalog.query_login() as conn:
        refused = unsample_values(conn, deadline)
    assert (refused.changed, set(refused.left)) == (0, set(before))
    assert sampled_values(storage) == before
    with catalog.owner() as conn:
        conn.autocommit = True
        done = unsample_values(conn, deadline)
        assert (done.changed, done.left) == (len(before), ())
        conn.execute("ANALYZE")
        assert unsample_values(conn, deadline).changed == 0  # idempotent
    assert sampled_values(storage) == []


@pytest.mark.parametrize("user", sorted(USERS))
def test_without_both_checks_a_query_session_reaches_no_log_and_writes_nothing(
    catalog: Catalog, service: Service, user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AccessSession, "check", lambda self, sql: sql)
    peer = Peer(user, "unix", "test")

    def ask(sql: str) -> tuple[int, str, list[dict[str, object]]]:
        reply = service.handle(peer, {"op": "query", "args": {**ARGS, "sql": sql}})
        rows = reply.table.to_pylist() if reply.table is not None else []
        return reply.exit, str(reply.error), rows

    before = _entries(catalog)
    assert ask("SELECT count(*) AS n FROM plate_reads")[::2] == (0, [{"n": 5}])
    # DuckLake's tables, those made after the grant included (inlined offsets rows).
    with catalog.owner() as conn:
        inlined = [
            str(name)
            for (name,) in conn.execute(
                "SELECT relname FROM pg_class WHERE relname LIKE 'ducklake\\_inlined\\_data\\_%' "
                "AND relkind = 'r'"
            ).fetchall()
        ]
    assert inlined
    for table in ["ducklake_snapshot", *inlined]:
        done, error, rows = ask(
            f"SELECT count(*) AS n FROM postgres_query('{META}', 'SELECT * FROM {table}')"
        )
        assert done == 0, error
        assert rows[0]["n"] > 0
    # The activity log's schema: PostgreSQL refuses the query role.
    for table in ("entries", "head"):
        done, error, _ = ask(
            f"SELECT * FROM postgres_query('{META}', 'SELECT * FROM {SCHEMA}.{table}')"
        )
        assert done == 2
        assert f"permission denied for schema {SCHEMA}" in error, error
    # No write, whichever function sends it. DuckLake's READ ONLY transaction stops only the
    # plain ones: a statement that ends it or sets it READ WRITE first meets PostgreSQL's
    # privileges (as the pipeline's login those two wrote the catalog: ADR 0008).
    insert = "INSERT INTO ducklake_metadata VALUES (''k'', ''v'', NULL, NULL)"
    writes = {
        # postgres_query runs inside a COPY: no INSERT fits there.
        f"SELECT * FROM postgres_query('{META}', '{insert} RETURNING key')": "syntax error",
        f"CALL postgres_execute('{META}', '{insert}')": "read-only transaction",
        f"CALL postgres_execute('{META}', 'UPDATE {SCHEMA}.head SET record = NULL')": (
            f"permission denied for schema {SCHEMA}"
        ),
        f"CALL postgres_execute('{META}', 'SET TRANSACTION READ WRITE; {insert}')": (
            "permission denied for table ducklake_metadata"
        ),
        f"CALL postgres_execute('{META}', 'COMMIT; {insert}')": (
            "permission denied for table ducklake_metadata"
        ),
    }
    for sql, why in writes.items():
        done, error, _ = ask(sql)
        assert done == 2, sql
        assert why in error, (sql, error)
    with catalog.owner() as conn:
        assert conn.execute(
            "SELECT count(*) FROM ducklake_metadata WHERE key = 'k'"
        ).fetchone() == (0,)
    # The service's own login went on writing the log: a begin and an end per answered query,
    # a begin and a failed end per refused one, all chained.
    assert _entries(catalog) == before + 2 * (1 + 1 + len(inlined) + 2 + len(writes))
    assert service.log.verify().ok


def test_the_query_role_reads_public_only_and_writes_nowhere(catalog: Catalog) -> None:
    # The grants themselves, on a plain connection as the query role: what a statement that
    # got past every layer of DuckDB could still send.
    denied = psycopg.errors.InsufficientPrivilege
    with catalog.query_login() as conn:
        assert conn.execute("SELECT count(*) FROM ducklake_table").fetchone() != (0,)
        for sql in (
            f"SELECT * FROM {SCHEMA}.entries",
            "INSERT INTO ducklake_metadata VALUES ('k', 'v', NULL, NULL)",
            "DELETE FROM ducklake_snapshot",
            "CREATE TABLE public.anpr_probe (x int)",
            "CREATE TEMPORARY TABLE anpr_probe (x int)",
            "CREATE SCHEMA anpr_probe",
        ):
            with pytest.raises(denied):
                conn.execute(sql)


def test_a_query_session_refuses_a_login_that_may_do_more(catalog: Catalog) -> None:
    # lake.query_catalog naming the pipeline's own login: refused at session open.
    env = {
        **catalog.env,
        "ANPR_LAKE_QUERY_CATALOG": catalog.env["ANPR_LAKE_CATALOG"],
        "ANPR_LAKE_QUERY_CATALOG_PASSWORD_FILE": catalog.env["ANPR_LAKE_CATALOG_PASSWORD_FILE"],
    }
    service = Service(load_settings(None, env=env), clock=lambda: NOW)
    try:
        reply = service.handle(
            Peer("ivan", "unix", "test"),
            {"op": "query", "args": {**ARGS, "sql": "SELECT 1 AS one"}},
        )
    finally:
        service.close()
    assert reply.exit == 2
    # The local server's pipeline login is the cluster's superuser: every power named.
    assert str(reply.error) == (
        "lake.query_catalog: its role is an administrator, owns the database, may create "
        "schemas or temporary tables, may create tables, may use a schema other than public "
        "(the activity log's), may write a table; a query session's login may only read "
        "DuckLake's schema public (README: a login for query sessions)"
    )
    # No query login at all: the service does not start.
    env.pop("ANPR_LAKE_QUERY_CATALOG")
    with pytest.raises(ConfigError) as caught:
        Service(load_settings(None, env=env), clock=lambda: NOW)
    assert caught.value.key == "lake.query_catalog"


@pytest.mark.parametrize(
    ("grant", "power"),
    [
        (f"GRANT USAGE ON SCHEMA {SCHEMA} TO {postgres.QUERY_USER}", "may use a schema other"),
        (f"GRANT INSERT ON ducklake_metadata TO {postgres.QUERY_USER}", "may write a table"),
        (f"GRANT CREATE ON SCHEMA public TO {postgres.QUERY_USER}", "may create tables"),
    ],
)
def test_one_privilege_too_many_refuses_the_session_naming_it(
    catalog: Catalog, grant: str, power: str
) -> None:
    with catalog.owner() as conn:
        conn.autocommit = True
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        conn.execute(grant)
        try:
            with pytest.raises(ConfigError) as caught:
                AccessSession.open(
                    Path(catalog.env["ANPR_LAKE_PATH"]), "investigator", now=NOW,
                    analyst_max_age_days=90, retention_months=6, pseudo=Pseudonymiser(b"k" * 32),
                    storage=Storage.from_settings(load_settings(None, env=catalog.env).lake),
                )  # fmt: skip
        finally:
            conn.execute(grant.replace("GRANT", "REVOKE").replace(" TO ", " FROM "))
    assert str(caught.value).startswith(f"lake.query_catalog: its role {power}")
