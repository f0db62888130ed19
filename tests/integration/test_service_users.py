"""The access boundary with real OS users: one service account owns the data, the others ask.

The module creates five users (``useradd``; CI runs as root, anywhere else this fails rather
than skips): the service account, an analyst, an investigator, a dpo and an outsider with no
role. The broker, ingest, maintenance and ``anpr serve`` run as the service account; every
client command runs as the others (``setpriv``), with their own environment and folder.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.kafka import local

ROOT_NEEDED = (
    "these tests create OS users (useradd) and run commands as them (setpriv): run them as "
    "root, as CI does"
)
ROLES = ("analyst", "investigator", "dpo")
START = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
READS = 3000


@dataclass(frozen=True)
class World:
    base: Path
    service: str
    users: Mapping[str, str]  # role (or "outsider") -> user name
    config: Path
    lake: Path
    state: Path
    socket: Path
    tls_port: int
    tls: Path  # CA, server and client certificates
    server: subprocess.Popen[str]

    def home(self, user: str) -> Path:
        return self.base / "home" / user

    def log_entries(self) -> list[dict[str, object]]:
        path = self.state / "access" / "activity.jsonl"
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _run(
    user: str,
    *args: str,
    home: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float = 180,
    python: tuple[str, ...] = ("-m", "pipeline"),
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pipeline ARGS`` (or ``python PYTHON``) as ``user``, with a clean
    environment: a login would give them no more than this."""
    base_env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "XDG_CACHE_HOME": str(home / "cache"),
    }
    return subprocess.run(
        ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", sys.executable,
         *python, *args],
        env={**base_env, **(env or {})},
        cwd=cwd or home,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )  # fmt: skip


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}")  # fmt: skip
    return cert, key


def _issue(folder: Path, ca: tuple[Path, Path], name: str, cn: str, *, server: bool) -> None:
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}")  # fmt: skip
    ext = folder / f"{name}.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
        if server
        else "extendedKeyUsage=clientAuth\n"
    )
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip


def _chown(path: Path, user: str, mode: int) -> None:
    shutil.chown(path, user, user)
    path.chmod(mode)


@pytest.fixture(scope="module")
def world(kafka_jars: Path) -> Iterator[World]:
    if os.geteuid() != 0:
        pytest.fail(ROOT_NEEDED)
    tag = uuid.uuid4().hex[:6]
    names = {"service": f"anpr-svc-{tag}"}
    names |= {role: f"anpr-{role[:5]}-{tag}" for role in (*ROLES, "outsider")}
    created: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="anpr-users-", dir="/tmp"))
    base.chmod(0o755)  # everyone may pass; what is inside decides
    server: subprocess.Popen[str] | None = None
    svc = names["service"]
    try:
        for name in names.values():
            subprocess.run(["useradd", "--no-create-home", "--user-group", "--shell",
                            "/usr/sbin/nologin", name], check=True, capture_output=True)  # fmt: skip
            created.append(name)
        (base / "home").mkdir(mode=0o755)
        for name in names.values():
            home = base / "home" / name
            home.mkdir()
            _chown(home, name, 0o700)
        srv, run, etc = base / "srv", base / "run", base / "etc"
        srv.mkdir()
        _chown(srv, svc, 0o700)
        run.mkdir()
        _chown(run, svc, 0o755)
        etc.mkdir(mode=0o755)
        tls = etc / "tls"
        tls.mkdir(mode=0o755)
        ca = _make_ca(tls, "service-ca")
        _issue(tls, ca, "server", "127.0.0.1", server=True)
        _chown(tls / "server.key", svc, 0o600)
        _issue(tls, ca, "analyst", names["analyst"], server=False)
        foreign = _make_ca(tls, "foreign-ca")
        _issue(tls, foreign, "forged-dpo", names["dpo"], server=False)
        for key in tls.glob("*.key"):
            if key.name != "server.key":
                key.chmod(0o644)  # the test's throwaway keys: any user of the test may use them
        state = srv / "state"
        state.mkdir(mode=0o700)
        (state / "cache").mkdir(mode=0o700)
        (state / "cache" / "kafka").symlink_to(kafka_jars.resolve())
        for path in (state, state / "cache"):
            _chown(path, svc, 0o700)
        os.lchown(state / "cache" / "kafka", 0, 0)
        tls_port, bootstrap = local.free_port(), f"127.0.0.1:{local.free_port()}"
        users = "\n".join(f'"{names[r]}" = "{r}"' for r in ROLES)
        config = etc / "serve.toml"
        config.write_text(
            f'[kafka]\nbootstrap_servers = "{bootstrap}"\n'
            f'[topics]\npartitions = 2\n'
            f'[lake]\npath = "{srv / "lake"}"\n'
            f'[state]\ndir = "{state}"\n'
            f'[serve]\nsocket = "{run / "query.sock"}"\n'
            f'tls_listen = "127.0.0.1:{tls_port}"\n'
            f'tls_cert = "{tls / "server.pem"}"\ntls_key = "{tls / "server.key"}"\n'
            f'tls_client_ca = "{tls / "service-ca.pem"}"\n'
            f"[access]\nusers = {{ {', '.join(users.splitlines())} }}\n",
            encoding="utf-8",
        )
        config.chmod(0o644)
        w = World(base, svc, names, config, srv / "lake", state, run / "query.sock", tls_port,
                  tls, server=None)  # type: ignore[arg-type]  # fmt: skip

        def as_service(*args: str, timeout: float = 240) -> None:
            done = _run(svc, "--config", str(config), *args, home=w.home(svc), timeout=timeout)
            assert done.returncode == 0, (args, done.stderr[-2000:])

        as_service("kafka", "start", "--timeout", "180")
        try:
            as_service("topics", "create")
            start = START.isoformat().replace("+00:00", "Z")
            as_service("simulate", "plates", "--count", str(READS), "--start", start)
            as_service("simulate", "passengers", "--plate-reads", str(READS), "--start", start,
                       "--count", "40")  # fmt: skip
            as_service("ingest", "plates", "--until-idle", "5")
            as_service("ingest", "passengers", "--until-idle", "5")
            as_service("maintain")
            server = subprocess.Popen(
                ["setpriv", f"--reuid={svc}", f"--regid={svc}", "--init-groups", sys.executable,
                 "-m", "pipeline", "--config", str(config), "serve"],
                env={"PATH": "/usr/bin:/bin", "HOME": str(w.home(svc)), "LANG": "C.UTF-8",
                     "PYTHONDONTWRITEBYTECODE": "1", "XDG_CACHE_HOME": str(w.home(svc) / "c")},
                cwd=w.home(svc), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            _wait_for_socket(w.socket, server)
            yield World(**{**w.__dict__, "server": server})
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=60)
            _run(svc, "--config", str(config), "kafka", "stop", home=w.home(svc))
    finally:
        for name in created:
            subprocess.run(["userdel", name], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _wait_for_socket(path: Path, server: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"anpr serve exited {server.returncode}: {server.stdout.read()}")  # type: ignore[union-attr]
        if path.is_socket():
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.connect(str(path))
                return
            except OSError:
                pass
            finally:
                probe.close()
        time.sleep(0.2)
    pytest.fail(f"anpr serve did not listen on {path} within {timeout} s")


def _client(w: World, role: str, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    user = w.users[role]
    env = {"ANPR_SERVE_SOCKET": str(w.socket), **kwargs.pop("env", {})}  # type: ignore[dict-item]
    return _run(user, *args, home=w.home(user), env=env, **kwargs)  # type: ignore[arg-type]


COUNT = "SELECT count(*) AS n FROM plate_reads"


# --- the files ---------------------------------------------------------------------------


def _tree(*roots: Path) -> list[Path]:
    return [p for root in roots for p in [root, *root.rglob("*")] if not p.is_symlink()]


def test_every_file_and_folder_under_the_lake_and_state_is_0600_or_0700(world: World) -> None:
    wrong = [
        f"{p} {stat.S_IMODE(p.lstat().st_mode):04o}"
        for p in _tree(world.lake, world.state)
        if stat.S_IMODE(p.lstat().st_mode) != (0o700 if p.is_dir() else 0o600)
    ]
    assert not wrong
    owners = {p.lstat().st_uid for p in _tree(world.lake, world.state)}
    assert owners == {pwd.getpwnam(world.service).pw_uid}


def test_the_analyst_can_open_no_lake_or_state_file_and_duckdb_reads_no_parquet(
    world: World,
) -> None:
    files = [str(p) for p in _tree(world.lake, world.state) if p.is_file()]
    assert any(f.endswith(".parquet") for f in files)
    probe = (
        "import sys\nopened = []\nfor name in sys.stdin.read().splitlines():\n"
        "    try:\n        open(name, 'rb').close()\n        opened.append(name)\n"
        "    except OSError:\n        pass\nprint(len(opened), *opened)\n"
    )
    done = _client(world, "analyst", stdin="\n".join(files), python=("-c", probe))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "0", done.stdout
    sql = f"SELECT count(*) FROM read_parquet('{world.lake}/**/*.parquet')"
    duck = _client(world, "analyst", python=("-c", f"import duckdb; print(duckdb.sql({sql!r}).fetchall())"))
    assert duck.returncode != 0
    assert "Permission denied" in duck.stderr or "No files found" in duck.stderr, duck.stderr


# --- every client command, each as its user ------------------------------------------------


def test_every_client_command_answers_by_the_services_rules(world: World) -> None:
    analyst = _client(world, "analyst", "query", "--reason", "control", "--format", "csv", COUNT)
    assert analyst.returncode == 0, analyst.stderr
    assert int(analyst.stdout.splitlines()[1]) > 0
    hidden = _client(world, "analyst", "query", "--reason", "control",
                     "SELECT plate FROM plate_reads LIMIT 1")  # fmt: skip
    assert hidden.returncode == 2
    assert "plate" in hidden.stderr
    shell = _client(world, "analyst", "sql", "--reason", "control", "--format", "csv",
                    stdin=f"{COUNT};\nSELECT count(*) AS m FROM traffic_stats;\n")  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.startswith("n\n")
    needs_case = _client(world, "investigator", "query", "--reason", "control", COUNT)
    assert needs_case.returncode == 2
    assert "--case" in needs_case.stderr
    clear = _client(world, "investigator", "query", "--reason", "investigation", "--case",
                    "2026-0042", "--format", "json",
                    "SELECT plate FROM plate_reads ORDER BY captured_at LIMIT 1")  # fmt: skip
    assert clear.returncode == 0, clear.stderr
    plate = json.loads(clear.stdout)[0]["plate"]
    people = _client(world, "investigator", "query", "--reason", "investigation", "--case",
                     "2026-0042", "--format", "csv",
                     "SELECT count(*) AS n FROM passengers")  # fmt: skip
    assert people.returncode == 0, people.stderr
    assert _client(world, "analyst", "audit", "verify").returncode == 0
    assert _client(world, "analyst", "audit", "report", "--since", "2026-01-01",
                   "--until", "2030-01-01").returncode == 2  # fmt: skip
    report = _client(world, "dpo", "audit", "report", "--since", "2026-01-01", "--until",
                     "2030-01-01", "--format", "csv")  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert world.users["analyst"] in report.stdout
    assert _client(world, "analyst", "subject", "access", "--plate", plate).returncode == 2
    access = _client(world, "dpo", "subject", "access", "--plate", plate)
    assert access.returncode == 0, access.stderr
    assert "rows and" in access.stdout
    until = (datetime.now(UTC) + timedelta(days=7)).date().isoformat()
    for args in (
        ("restrict", "--plate", plate, "--until", until, "--reason", "disputed"),
        ("unrestrict", "--plate", plate),
        ("erase", "--plate", plate, "--reason", "the subject asked"),
    ):
        done = _client(world, "dpo", "subject", *args)
        assert done.returncode == 0, (args, done.stderr)
    outsider = _client(world, "outsider", "query", "--reason", "control", COUNT)
    assert outsider.returncode == 2
    assert "no role" in outsider.stderr
    kinds = {(e.get("user"), e["kind"]) for e in world.log_entries()}
    assert (world.users["outsider"], "access.refused") in kinds
    assert (world.users["dpo"], "subject.end") in kinds


# --- what the caller says changes nothing ---------------------------------------------------


def test_a_forged_name_forged_rules_and_a_private_log_change_nothing(world: World) -> None:
    dpo, analyst = world.users["dpo"], world.users["analyst"]
    home = world.home(analyst)
    forged_toml = home / "anpr.toml"
    forged_toml.write_text(f'[access]\nusers = {{ "{analyst}" = "dpo" }}\nuser_flag = true\n')
    private_log = home / "mine.jsonl"
    forged = {
        "LOGNAME": dpo,
        "USER": dpo,
        "ANPR_ACCESS_USERS": f"{analyst}=dpo",
        "ANPR_ACCESS_ACTIVITY_LOG": str(private_log),
        "ANPR_ACCESS_ANALYST_MAX_AGE_DAYS": "181",
    }
    wide = "SELECT count(*) AS n FROM activity_log"
    for args in (
        ("query", "--reason", "control", "--format", "csv", COUNT),
        ("query", "--reason", "control", wide),
        ("audit", "report", "--since", "2026-01-01", "--until", "2030-01-01"),
    ):
        honest = _client(world, "analyst", *args)
        before = len(world.log_entries())
        for extra in ((), ("--config", str(forged_toml))):
            lying = _client(world, "analyst", *extra, *args, env=forged)
            assert (lying.returncode, lying.stdout) == (honest.returncode, honest.stdout)
            new = world.log_entries()[before:]
            assert new, "the service's log got nothing"
            assert {e.get("user") for e in new} == {analyst}
            before += len(new)
    assert not private_log.exists()


# --- remote clients ------------------------------------------------------------------------


def test_a_client_certificate_gets_its_role_and_no_or_a_foreign_one_gets_nothing(
    world: World,
) -> None:
    tls = world.tls
    remote = {
        "ANPR_SERVE_REMOTE": f"127.0.0.1:{world.tls_port}",
        "ANPR_SERVE_SERVER_CA": str(tls / "service-ca.pem"),
    }
    with_cert = {**remote, "ANPR_SERVE_CLIENT_CERT": str(tls / "analyst.pem"),
                 "ANPR_SERVE_CLIENT_KEY": str(tls / "analyst.key")}  # fmt: skip
    # Run by the outsider (no role as an OS user): the certificate alone makes it the analyst.
    done = _client(world, "outsider", "query", "--reason", "control", "--format", "csv", COUNT,
                   env=with_cert)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.splitlines()[1]) > 0
    last = world.log_entries()[-1]
    assert (last["user"], last["kind"]) == (world.users["analyst"], "query.end")

    forged = {**remote, "ANPR_SERVE_CLIENT_CERT": str(tls / "forged-dpo.pem"),
              "ANPR_SERVE_CLIENT_KEY": str(tls / "forged-dpo.key")}  # fmt: skip
    before = len(world.log_entries())
    refused = _client(world, "outsider", "audit", "report", "--since", "2026-01-01",
                      "--until", "2030-01-01", env=forged)  # fmt: skip
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert _logged_refusal(world, before)["via"] == "tls"

    before = len(world.log_entries())
    context = ssl.create_default_context(cafile=str(tls / "service-ca.pem"))
    got = b""
    with socket.create_connection(("127.0.0.1", world.tls_port), timeout=30) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
                body = json.dumps({"v": 1, "op": "query", "args": {"sql": COUNT}}).encode()
                conn.sendall(len(body).to_bytes(4, "big") + body)
                got = conn.recv(1024)
        except (ssl.SSLError, ConnectionError):
            got = b""
    assert got == b""
    assert "certificate" in str(_logged_refusal(world, before)["why"]).lower()


def _logged_refusal(world: World, before: int) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        refusals = [e for e in world.log_entries()[before:] if e["kind"] == "auth.refused"]
        if refusals:
            return refusals[0]
        time.sleep(0.1)
    pytest.fail("the refused TLS connection was not logged")
