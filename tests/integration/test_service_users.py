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
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from osusers import ROOT_NEEDED, interpreter, run_as

from pipeline.kafka import local
from pipeline.service.ca import issue, make_ca
from pipeline.service.client import is_listening

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
            subprocess.run(
                [
                    "useradd",
                    "--no-create-home",
                    "--user-group",
                    "--shell",
                    "/usr/sbin/nologin",
                    name,
                ],
                check=True,
                capture_output=True,
            )
            created.append(name)
        (base / "home").mkdir()
        (base / "home").chmod(0o755)
        for name in names.values():
            home = base / "home" / name
            home.mkdir()
            _chown(home, name, 0o700)
        srv, run, etc = base / "srv", base / "run", base / "etc"
        srv.mkdir()
        _chown(srv, svc, 0o700)
        run.mkdir()
        _chown(run, svc, 0o755)
        etc.mkdir()
        tls = etc / "tls"
        tls.mkdir()
        for folder in (etc, tls):
            folder.chmod(0o755)
        ca = make_ca(tls, "service-ca")
        issue(tls, ca, "server", "127.0.0.1", server=True)
        _chown(tls / "server.key", svc, 0o600)
        issue(tls, ca, "analyst", names["analyst"], server=False)
        foreign = make_ca(tls, "foreign-ca")
        issue(tls, foreign, "forged-dpo", names["dpo"], server=False)
        for path in tls.iterdir():
            if path.name != "server.key":
                path.chmod(0o644)  # throwaway keys: any user of the test may present them
        state = srv / "state"
        state.mkdir(mode=0o700)
        (state / "cache").mkdir(mode=0o700)
        # The broker's jars, as `make setup` fetched them, owned by the account that runs it.
        shutil.copytree(kafka_jars.resolve().parents[1], state / "cache" / "kafka")
        for path in [state, *state.rglob("*")]:  # as `anpr kafka fetch` makes them
            shutil.chown(path, svc, svc)
            path.chmod(0o700 if path.is_dir() else 0o600)
        tls_port, bootstrap = local.free_port(), f"127.0.0.1:{local.free_port()}"
        users = "\n".join(f'"{names[r]}" = "{r}"' for r in ROLES)
        config = etc / "serve.toml"
        config.write_text(
            f'[kafka]\nbootstrap_servers = "{bootstrap}"\n'
            f"[topics]\npartitions = 2\n"
            "[ingest]\nmetrics_port = 0\n[passengers]\nmetrics_port = 0\n"
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
        w = World(
            base,
            svc,
            names,
            config,
            srv / "lake",
            state,
            run / "query.sock",
            tls_port,
            tls,
            server=None,
        )  # type: ignore[arg-type]

        def as_service(*args: str, timeout: float = 240) -> None:
            done = run_as(svc, "--config", str(config), *args, home=w.home(svc), timeout=timeout)
            assert done.returncode == 0, (args, done.stderr[-2000:])

        as_service("kafka", "start", "--timeout", "180")
        try:
            as_service("topics", "create")
            start = START.isoformat().replace("+00:00", "Z")
            as_service("simulate", "plates", "--count", str(READS), "--start", start)
            as_service(
                "simulate",
                "passengers",
                "--plate-reads",
                str(READS),
                "--start",
                start,
                "--count",
                "40",
            )
            as_service("ingest", "plates", "--until-idle", "5")
            as_service("ingest", "passengers", "--until-idle", "5")
            as_service("maintain")
            server = subprocess.Popen(
                [
                    "setpriv",
                    f"--reuid={svc}",
                    f"--regid={svc}",
                    "--init-groups",
                    interpreter()[0],
                    "-m",
                    "pipeline",
                    "--config",
                    str(config),
                    "serve",
                ],
                env={
                    "PATH": "/usr/bin:/bin",
                    "HOME": str(w.home(svc)),
                    "LANG": "C.UTF-8",
                    "PYTHONDONTWRITEBYTECODE": "1",
                    "XDG_CACHE_HOME": str(w.home(svc) / "c"),
                    **interpreter()[1],
                },
                cwd=w.home(svc),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            _wait_for_socket(w.socket, server)
            yield World(**{**w.__dict__, "server": server})
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=60)
            run_as(svc, "--config", str(config), "kafka", "stop", home=w.home(svc))
    finally:
        for name in created:
            subprocess.run(["userdel", name], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _wait_for_socket(path: Path, server: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not is_listening(path):
        if server.poll() is not None:
            output = server.stdout.read() if server.stdout else ""
            pytest.fail(f"anpr serve exited {server.returncode}: {output}")
        if time.monotonic() > deadline:
            pytest.fail(f"anpr serve did not listen on {path} within {timeout} s")
        time.sleep(0.2)


def _client(w: World, role: str, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    user = w.users[role]
    env = {"ANPR_SERVE_SOCKET": str(w.socket), **kwargs.pop("env", {})}  # type: ignore[dict-item]
    return run_as(user, *args, home=w.home(user), env=env, **kwargs)  # type: ignore[arg-type]


COUNT = "SELECT count(*) AS n FROM plate_reads"


# --- the files ---------------------------------------------------------------------------


def _tree(*roots: Path) -> list[Path]:
    return [p for root in roots for p in [root, *root.rglob("*")] if not p.is_symlink()]


def test_every_file_and_folder_under_the_lake_and_state_is_0600_or_0700(world: World) -> None:
    # (Kafka writes its checkpoint files read-only, 0400: stricter still.)
    allowed = {True: {0o700}, False: {0o600, 0o400}}
    wrong = [
        f"{p} {stat.S_IMODE(p.lstat().st_mode):04o}"
        for p in _tree(world.lake, world.state)
        if stat.S_IMODE(p.lstat().st_mode) not in allowed[p.is_dir()]
    ]
    assert not wrong
    assert any(p.suffix == ".parquet" for p in _tree(world.lake))
    assert any(p.name.endswith(".log") for p in _tree(world.state / "kafka"))
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
    duck = _client(
        world, "analyst", python=("-c", f"import duckdb; print(duckdb.sql({sql!r}).fetchall())")
    )
    assert duck.returncode != 0
    assert "Permission denied" in duck.stderr or "No files found" in duck.stderr, duck.stderr


# --- every client command, each as its user ------------------------------------------------


def test_every_client_command_answers_by_the_services_rules(world: World) -> None:
    analyst = _client(world, "analyst", "query", "--reason", "control", "--format", "csv", COUNT)
    assert analyst.returncode == 0, analyst.stderr
    assert int(analyst.stdout.splitlines()[1]) > 0
    hidden = _client(
        world, "analyst", "query", "--reason", "control", "SELECT plate FROM plate_reads LIMIT 1"
    )
    assert hidden.returncode == 2
    assert "plate" in hidden.stderr
    shell = _client(
        world,
        "analyst",
        "sql",
        "--reason",
        "control",
        "--format",
        "csv",
        stdin=f"{COUNT};\nSELECT count(*) AS m FROM traffic_stats;\n",
    )
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.startswith('"n"\n')
    needs_case = _client(world, "investigator", "query", "--reason", "control", COUNT)
    assert needs_case.returncode == 2
    assert "--case" in needs_case.stderr
    clear = _client(
        world,
        "investigator",
        "query",
        "--reason",
        "investigation",
        "--case",
        "2026-0042",
        "--format",
        "json",
        "SELECT plate FROM plate_reads ORDER BY captured_at LIMIT 1",
    )
    assert clear.returncode == 0, clear.stderr
    plate = json.loads(clear.stdout)[0]["plate"]
    people = _client(
        world,
        "investigator",
        "query",
        "--reason",
        "investigation",
        "--case",
        "2026-0042",
        "--format",
        "csv",
        "SELECT count(*) AS n FROM passengers",
    )
    assert people.returncode == 0, people.stderr
    assert _client(world, "analyst", "audit", "verify").returncode == 0
    assert (
        _client(
            world, "analyst", "audit", "report", "--since", "2026-01-01", "--until", "2030-01-01"
        ).returncode
        == 2
    )
    report = _client(
        world,
        "dpo",
        "audit",
        "report",
        "--since",
        "2026-01-01",
        "--until",
        "2030-01-01",
        "--format",
        "csv",
    )
    assert report.returncode == 0, report.stderr
    assert world.users["analyst"] in report.stdout
    assert _client(world, "analyst", "subject", "access", "--plate", plate).returncode == 2
    access = _client(world, "dpo", "subject", "access", "--plate", plate)
    assert access.returncode == 0, access.stderr
    assert "rows and" in access.stdout
    # The service keeps no copy of the report: the dpo's client wrote it, for the dpo only.
    report = Path(access.stdout.strip().rsplit(": ", 1)[1])
    report = report if report.is_absolute() else world.home(world.users["dpo"]) / report
    assert report.stat().st_uid == pwd.getpwnam(world.users["dpo"]).pw_uid
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert plate in report.read_text()
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
    assert (world.users["dpo"], "subject.begin") in kinds
    ends = [e for e in world.log_entries() if e["kind"] == "subject.end"]
    assert [(e["request"], e["outcome"]) for e in ends] == [
        ("access", "ok"),
        ("restrict", "ok"),
        ("unrestrict", "ok"),
        ("erase", "ok"),
    ]


# --- what the caller says changes nothing ---------------------------------------------------


def test_a_forged_name_forged_rules_and_a_private_log_change_nothing(world: World) -> None:
    dpo, analyst = world.users["dpo"], world.users["analyst"]
    home = world.home(analyst)
    forged_toml = home / "anpr.toml"
    forged_toml.write_text(f'[access]\nusers = {{ "{analyst}" = "dpo" }}\nuser_flag = true\n')
    shutil.chown(forged_toml, analyst, analyst)
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
            assert {e["user"] for e in new if "user" in e} == {analyst}
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
    with_cert = {
        **remote,
        "ANPR_SERVE_CLIENT_CERT": str(tls / "analyst.pem"),
        "ANPR_SERVE_CLIENT_KEY": str(tls / "analyst.key"),
    }
    # Run by the outsider (no role as an OS user): the certificate alone makes it the analyst.
    done = _client(
        world, "outsider", "query", "--reason", "control", "--format", "csv", COUNT, env=with_cert
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.splitlines()[1]) > 0
    begun = [e for e in world.log_entries() if e["kind"] == "query.begin"][-1]
    assert (begun["user"], world.log_entries()[-1]["kind"]) == (
        world.users["analyst"],
        "query.end",
    )

    forged = {
        **remote,
        "ANPR_SERVE_CLIENT_CERT": str(tls / "forged-dpo.pem"),
        "ANPR_SERVE_CLIENT_KEY": str(tls / "forged-dpo.key"),
    }
    before = len(world.log_entries())
    refused = _client(
        world,
        "outsider",
        "audit",
        "report",
        "--since",
        "2026-01-01",
        "--until",
        "2030-01-01",
        env=forged,
    )
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
