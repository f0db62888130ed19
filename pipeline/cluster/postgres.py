"""A local PostgreSQL server for the lake's catalog (development and tests), from Debian's
``postgresql-15`` package: ``initdb`` and ``pg_ctl`` on a folder under the state dir.

PostgreSQL refuses to run as root, so when we are root the server runs as the system user
``anpr-db`` (created here when missing, no home, no shell); otherwise as ourselves. That user
must enter every folder above the server's, but the state dir is private (0700,
``files.check_private``), so as root the server's folder is outside it:
``/var/tmp/anpr-postgres/<hash of the state dir>`` (search-only folders above it), linked from
``<state_dir>/postgres``. Otherwise it is ``<state_dir>/postgres`` itself. Layout::

    data/          the database cluster (owned by the server's user, 0700)
    run/           its Unix socket and lock file
    logs/postgres.log
    password       the catalog user's password (0600), read by the lake through a file setting
    query-password the query sessions' user's password (0600), likewise

The server listens on 127.0.0.1 only, on a free port chosen by the first start and kept in
``data/postgresql.conf``; the pipeline logs in as ``anpr`` (owner of every lake database),
query sessions as ``anpr_query`` (``SELECT`` on DuckLake's schema only: :func:`grant_queries`),
each with a password (scram-sha-256).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from pipeline.errors import BrokerError, MissingToolError
from pipeline.files import write_atomic
from pipeline.localproc import free_port, locked, tail, wait_gone

logger = logging.getLogger(__name__)

SERVICE_USER = "anpr-db"
DB_USER = "anpr"
QUERY_USER = "anpr_query"  # query sessions' login (docs/adr/0008-query-confinement.md)
DATABASE = "anpr_lake"
APT_POSTGRES = "install it with `apt-get install postgresql-15` (`make tools` does)"
_PORT_LINE = re.compile(r"^port = (\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Server:
    """A running local PostgreSQL: where it answers and the file holding the password."""

    root: Path
    host: str
    port: int

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    @property
    def query_password_file(self) -> Path:
        return self.root / "query-password"

    def conninfo(self, database: str = DATABASE, user: str = DB_USER) -> str:
        """libpq connection string without the password (that stays in its file)."""
        return f"host={self.host} port={self.port} user={user} dbname={database}"

    def query_conninfo(self, database: str = DATABASE) -> str:
        """The query sessions' login to ``database`` (``lake.query_catalog``)."""
        return self.conninfo(database, QUERY_USER)

    def connect(self, database: str = DATABASE) -> psycopg.Connection[tuple[object, ...]]:
        password = self.password_file.read_text(encoding="utf-8").strip()
        return psycopg.connect(self.conninfo(database), password=password, connect_timeout=5)


SHARED_PARENT = Path("/var/tmp/anpr-postgres")  # noqa: S108 (root's; see the module doc)


def server_root(state_dir: Path) -> Path:
    """The server's folder for ``state_dir`` (see the module doc). A real folder found at
    ``<state_dir>/postgres`` (made before, or not as root) stays where it is."""
    inside = state_dir.resolve() / "postgres"
    if os.geteuid() != 0 or (inside.is_dir() and not inside.is_symlink()):
        return inside
    return SHARED_PARENT / hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:16]


def _link_outside(state_dir: Path, root: Path) -> None:
    """Make the shared parent enterable (not listable) and link the server's folder from the
    state dir, so that an operator finds it there."""
    if root.parent != SHARED_PARENT:
        return
    SHARED_PARENT.mkdir(parents=True, exist_ok=True)
    os.chmod(SHARED_PARENT, 0o711)  # noqa: S103 (search only: nobody else can list it)
    link = state_dir.resolve() / "postgres"
    if not link.is_symlink():
        link.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        link.symlink_to(root)


def remove(state_dir: Path) -> None:
    """Delete the server's folder (data, logs, password) after :func:`stop`; for temporary
    sets, whose state dir is removed with it."""
    root = server_root(state_dir)
    if root.parent == SHARED_PARENT:
        shutil.rmtree(root, ignore_errors=True)
        link = state_dir.resolve() / "postgres"
        if link.is_symlink():
            link.unlink()


def bin_dir() -> Path:
    """The folder of ``initdb`` and ``pg_ctl``: Debian keeps them out of PATH, per version."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("pg_ctl")
    if found is None:
        raise MissingToolError("pg_ctl", APT_POSTGRES)
    return Path(found).resolve().parent


def service_uid() -> int | None:
    """The uid the server runs as: ``anpr-db`` (created if missing) when we are root, else
    None (ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER).pw_uid
    except KeyError:
        pass
    result = subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            SERVICE_USER,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 and "already exists" not in result.stderr:
        raise BrokerError(f"could not create the system user {SERVICE_USER}: {result.stderr}")
    logger.info("created system user %s for the local PostgreSQL server", SERVICE_USER)
    return pwd.getpwnam(SERVICE_USER).pw_uid


def _check_searchable(folder: Path, uid: int) -> None:
    """Fail clearly when ``uid`` cannot reach ``folder`` (PostgreSQL would fail obscurely)."""
    for parent in folder.parents:
        mode = parent.stat()
        if mode.st_uid != uid and not mode.st_mode & stat.S_IXOTH:
            raise BrokerError(
                f"the PostgreSQL server runs as {SERVICE_USER}, which cannot enter {parent} "
                f"(mode {stat.filemode(mode.st_mode)}); use a state dir below searchable "
                "folders (ANPR_STATE_DIR)"
            )


def _as(uid: int | None, argv: list[str], cwd: Path, timeout: float) -> str:
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=timeout,
            check=False,
            user=uid,
            group=None if uid is None else pwd.getpwuid(uid).pw_gid,
            extra_groups=None if uid is None else [],
        )
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(f"{Path(argv[0]).name} took longer than {timeout:.0f} s") from exc
    if result.returncode != 0:
        raise BrokerError(f"{Path(argv[0]).name} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def _own(path: Path, uid: int | None) -> None:
    if uid is not None:
        os.chown(path, uid, pwd.getpwuid(uid).pw_gid)


def _init(root: Path, uid: int | None, timeout: float) -> None:
    """initdb once, then the settings that belong to the data folder (port, socket)."""
    data, run = root / "data", root / "run"
    for folder in (root / "logs", run, data):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _own(folder, uid)
    if (data / "PG_VERSION").exists():
        return
    password = secrets.token_urlsafe(24)
    write_atomic(root / "password", password + "\n")
    pwfile = run / "initdb.pw"  # readable by the server's user, removed right after
    write_atomic(pwfile, password + "\n")
    _own(pwfile, uid)
    try:
        _as(
            uid,
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(data),
                "-U",
                DB_USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
            ],
            root,
            timeout,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    conf = data / "postgresql.conf"
    with conf.open("a", encoding="utf-8") as handle:
        handle.write(
            "\n# Written by pipeline/cluster/postgres.py\n"
            f"port = {free_port()}\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{run}'\n"
            # Every ingest worker, maintain and query service holds a few DuckDB connections.
            "max_connections = 300\n"
            "shared_buffers = 64MB\n"
        )
    logger.info("initialised PostgreSQL cluster in %s", data)


def _port(root: Path) -> int:
    text = (root / "data" / "postgresql.conf").read_text(encoding="utf-8")
    ports = _PORT_LINE.findall(text)
    if not ports:
        raise BrokerError(f"no port in {root / 'data' / 'postgresql.conf'}")
    return int(ports[-1])


def _postmaster_pid(root: Path) -> int | None:
    # postmaster.pid's first line is the server's pid while it runs.
    try:
        first = (root / "data" / "postmaster.pid").read_text(encoding="utf-8").split("\n", 1)[0]
    except (FileNotFoundError, NotADirectoryError):
        return None
    return int(first) if first.strip().isdigit() else None


def _ready(server: Server) -> bool:
    try:
        with server.connect("postgres"):
            return True
    except (psycopg.Error, OSError):
        return False


def running(state_dir: Path) -> Server | None:
    """The running local server, or None."""
    root = server_root(state_dir)
    pid = _postmaster_pid(root)
    if pid is None or not _is_ours(pid, root):
        return None
    server = Server(root, "127.0.0.1", _port(root))
    return server if _ready(server) else None


def _is_ours(pid: int, root: Path) -> bool:
    with contextlib.suppress(OSError):
        exe = Path(f"/proc/{pid}/exe").resolve()
        return exe.name == "postgres" and os.stat(root / "data").st_ino > 0
    return False


def start(state_dir: Path, *, timeout: float = 60.0) -> Server:
    """Start the local server (or find it running), with the database ``anpr_lake``."""
    root = server_root(state_dir)
    deadline = time.monotonic() + timeout
    uid = service_uid()
    _link_outside(state_dir, root)
    with locked(root / ".lock"):
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if uid is not None:
            _check_searchable(root, uid)
            # The server's user must enter its own root; the password file stays 0600 root's.
            os.chmod(root, 0o711)  # noqa: S103 (search only: nobody can list or read)
        found = running(state_dir)
        if found is not None:
            _create_database(found)  # a server of an earlier version gets the query role too
            return found
        _init(root, uid, timeout)
        server = Server(root, "127.0.0.1", _port(root))
        _as(
            uid,
            [
                str(bin_dir() / "pg_ctl"),
                "start",
                "-D",
                str(root / "data"),
                "-l",
                str(root / "logs" / "postgres.log"),
                "-w",
                "-t",
                str(max(int(deadline - time.monotonic()), 1)),
            ],
            root,
            timeout,
        )
        while not _ready(server):
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"PostgreSQL did not answer on port {server.port}\n"
                    f"{tail(root / 'logs' / 'postgres.log')}"
                )
            time.sleep(0.1)
        _create_database(server)
        logger.info("PostgreSQL ready on 127.0.0.1:%d", server.port)
        return server


def _create_database(server: Server) -> None:
    with server.connect("postgres") as conn:
        conn.autocommit = True
        _query_role(server, conn)
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
        if found is None:
            # DATABASE is a constant identifier, not input.
            conn.execute(f"CREATE DATABASE {DATABASE}")
    grant_queries(server, DATABASE)


def _query_role(server: Server, conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """The login ``anpr_query`` with the password of its file (made on first start)."""
    if not server.query_password_file.exists():
        write_atomic(server.query_password_file, secrets.token_urlsafe(24) + "\n")
    password = server.query_password_file.read_text(encoding="utf-8").strip()
    found = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [QUERY_USER]).fetchone()
    conn.execute(
        sql.SQL("{} ROLE {} LOGIN NOINHERIT PASSWORD {}").format(
            sql.SQL("ALTER" if found else "CREATE"),
            sql.Identifier(QUERY_USER),
            sql.Literal(password),
        )
    )


# What query sessions may do in a lake database: connect, and read DuckLake's tables in
# ``public``, those there now and those the pipeline's login creates later (DuckLake adds
# tables as the lake grows: inlined data, new lake tables' metadata). No other schema (the
# activity log's, ``anpr_audit``), no temporary tables, no write. The README gives the same
# statements to an operator of another server.
QUERY_GRANTS = (
    "REVOKE ALL ON DATABASE {database} FROM PUBLIC",
    "GRANT CONNECT ON DATABASE {database} TO {query}",
    "GRANT USAGE ON SCHEMA public TO {query}",
    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {query}",
    "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT ON TABLES TO {query}",
)


def grant_queries(server: Server, database: str) -> None:
    """Give :data:`QUERY_USER` what :data:`QUERY_GRANTS` says in ``database`` (idempotent)."""
    names = {
        "database": sql.Identifier(database),
        "query": sql.Identifier(QUERY_USER),
        "owner": sql.Identifier(DB_USER),
    }
    with server.connect(database) as conn:
        conn.autocommit = True
        for statement in QUERY_GRANTS:
            conn.execute(sql.SQL(statement).format(**names))


def create_database(server: Server, name: str) -> None:
    """A new lake database ``name`` (a plain identifier), readable by query sessions."""
    with server.connect("postgres") as conn:
        conn.autocommit = True
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    grant_queries(server, name)


def stop(state_dir: Path, *, timeout: float = 60.0, immediate: bool = False) -> bool:
    """Stop the server if it runs; True if it did. ``immediate`` stops it the way a crash
    would (no checkpoint; the next start replays the WAL), for failure tests."""
    root = server_root(state_dir)
    pid = _postmaster_pid(root)
    if pid is None or not _is_ours(pid, root):
        return False
    with locked(root / ".lock"):
        _as(
            service_uid(),
            [
                str(bin_dir() / "pg_ctl"),
                "stop",
                "-D",
                str(root / "data"),
                "-m",
                "immediate" if immediate else "fast",
                "-w",
                "-t",
                str(int(timeout)),
            ],
            root,
            timeout + 5,
        )
        return True


def kill(state_dir: Path) -> int:
    """SIGKILL the server and every process of it at once, like a crash of its host; return
    the postmaster's pid. The next :func:`start` recovers from the WAL."""
    root = server_root(state_dir)
    pid = _postmaster_pid(root)
    if pid is None or not _is_ours(pid, root):
        raise BrokerError("the local PostgreSQL server is not running")
    # A backend left alive would keep the old shared memory and block the next start.
    family = [pid, *_children(pid)]
    for member in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)
    for member in family:
        wait_gone(member, 30.0)
    # A killed postmaster nobody reaps (no init in a container) stays a zombie, which the next
    # postmaster would take for a live server named in the stale lock file.
    (root / "data" / "postmaster.pid").unlink(missing_ok=True)
    for lock in (root / "run").glob(".s.PGSQL.*.lock"):
        lock.unlink(missing_ok=True)
    return pid


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            # Field 4 of /proc/<pid>/stat is the parent pid; the name (field 2) has no ")".
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found
