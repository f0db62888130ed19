"""The local broker's pure parts: no broker, no java, no Maven."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from pipeline.errors import BrokerError, MissingToolError, UsageError
from pipeline.kafka import local

POM = local.DEFAULT_POM
TEMPLATE = (local.DEPLOY_DIR / "server.properties.template").read_text(encoding="utf-8")


def _java_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] not in "#!")
    return {key.strip(): value.strip() for key, value in pairs}


# --- bootstrap parsing --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:9092", "127.0.0.1", 9092),
        (" localhost:1 ", "localhost", 1),
        ("[::1]:65535", "::1", 65535),
        ("PLAINTEXT://broker-1.example:9093", "broker-1.example", 9093),
    ],
)
def test_parse_endpoint(text: str, host: str, port: int) -> None:
    assert local.parse_endpoint(text) == local.Endpoint(host, port)


@pytest.mark.parametrize(
    "text", ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", ":9092", "[::1]9092", "a b:1", "h:x"]
)
def test_parse_endpoint_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        local.parse_endpoint(text)


def test_parse_bootstrap_list_and_empty() -> None:
    assert [str(e) for e in local.parse_bootstrap("a:1, [::1]:2,")] == ["a:1", "[::1]:2"]
    with pytest.raises(UsageError):
        local.parse_bootstrap(" , ")


@pytest.mark.parametrize("bootstrap", ["127.0.0.1:9092", "127.1.2.3:9092", "localhost:9092"])
def test_local_endpoint_accepts_loopback(bootstrap: str) -> None:
    assert local.local_endpoint(bootstrap).port == 9092


@pytest.mark.parametrize(
    "bootstrap",
    [
        "0.0.0.0:9092",
        "10.0.0.5:9092",
        "kafka.example.com:9092",
        "localhost.evil.example:9092",
        "127.0.0.1:9092,127.0.0.1:9093",
    ],
)
def test_local_endpoint_rejects_anything_but_one_loopback_address(bootstrap: str) -> None:
    with pytest.raises(UsageError):
        local.local_endpoint(bootstrap)


def test_start_rejects_non_loopback_before_touching_anything(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="loopback"):
        local.start(tmp_path, "192.168.1.10:9092", jars_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- server.properties --------------------------------------------------------------------


def test_rendered_properties_are_single_node_kraft(tmp_path: Path) -> None:
    text = local.render_server_properties(
        TEMPLATE,
        endpoint=local.Endpoint("127.0.0.1", 19092),
        controller_port=19093,
        log_dirs=tmp_path / "data",
    )
    props = _java_properties(text)

    assert "${" not in text
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"
    assert props["num.partitions"] == "1"
    assert local.read_controller_port(text) == 19093


def test_rendered_properties_bracket_ipv6_and_escape_backslashes() -> None:
    text = local.render_server_properties(
        TEMPLATE,
        endpoint=local.Endpoint("::1", 19092),
        controller_port=19093,
        log_dirs=Path("/tmp/odd\\dir"),
    )
    props = _java_properties(text)
    assert props["listeners"] == "PLAINTEXT://[::1]:19092,CONTROLLER://[::1]:19093"
    assert props["log.dirs"] == "/tmp/odd\\\\dir"


def test_render_refuses_same_port_and_unknown_placeholders() -> None:
    endpoint = local.Endpoint("127.0.0.1", 9092)
    with pytest.raises(UsageError):
        local.render_server_properties(
            TEMPLATE, endpoint=endpoint, controller_port=9092, log_dirs=Path("/x")
        )
    with pytest.raises(KeyError):
        local.render_server_properties(
            "a=${nope}", endpoint=endpoint, controller_port=9093, log_dirs=Path("/x")
        )


def test_read_controller_port_absent() -> None:
    assert local.read_controller_port("listeners=PLAINTEXT://127.0.0.1:9092\n") is None


# --- small pure helpers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ("no version here", None),
    ],
)
def test_parse_java_major(output: str, major: int | None) -> None:
    assert local.parse_java_major(output) == major


def test_cluster_ids_look_like_kafka_uuids() -> None:
    ids = {local.random_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id)
        assert not cluster_id.startswith("-")


def test_pom_names_a_kafka_4_version() -> None:
    assert local.pom_kafka_version(POM.read_text(encoding="utf-8")).startswith("4.")
    with pytest.raises(UsageError):
        local.pom_kafka_version("<project/>")


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert local.tail(log, 3) == "line 97\nline 98\nline 99"
    assert local.tail(tmp_path / "missing.log") == ""


# --- tools and the jar cache --------------------------------------------------------------


class FakeRunner:
    """Stands in for subprocess: records argv, answers `java -version`, fakes Maven's copy."""

    def __init__(self, *, java_version: str = "17.0.2", mvn_rc: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.java_version = java_version
        self.mvn_rc = mvn_rc

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        if argv[-1] == "-version":
            err = f'openjdk version "{self.java_version}" 2025-01-01\n'
            return subprocess.CompletedProcess(argv, 0, "", err)
        if self.mvn_rc == 0:
            out = Path(next(a for a in argv if a.startswith("-DoutputDirectory="))[18:])
            (out / "kafka_2.13-4.0.0.jar").write_bytes(b"PK")
        return subprocess.CompletedProcess(argv, self.mvn_rc, "", "[ERROR] no network")

    @property
    def mvn_calls(self) -> int:
        return sum("dependency:copy-dependencies" in argv for argv in self.calls)


@pytest.fixture
def tool_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only fake `java` and `mvn` executables (they are never run)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("java", "mvn"):
        exe = bin_dir / tool
        exe.write_text("#!/bin/sh\nexit 99\n")
        exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    return bin_dir


def _write_marker(cache: Path, pom: Path) -> Path:
    version_dir = cache / local.pom_kafka_version(pom.read_text(encoding="utf-8"))
    (version_dir / "lib").mkdir(parents=True)
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    (version_dir / local.MARKER_NAME).write_text(digest + "\n")
    return version_dir / "lib"


def test_ensure_jars_with_matching_marker_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = _write_marker(tmp_path / "cache", POM)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no mvn, no java: must not matter
    runner = FakeRunner()

    assert local.ensure_jars(tmp_path / "cache", pom=POM, run=runner) == lib
    assert runner.calls == []


def test_ensure_jars_cold_fetches_once_then_uses_the_marker(
    tmp_path: Path, tool_path: Path
) -> None:
    runner = FakeRunner()
    messages: list[str] = []

    lib = local.ensure_jars(tmp_path / "cache", pom=POM, run=runner, progress=messages.append)
    again = local.ensure_jars(tmp_path / "cache", pom=POM, run=runner)

    assert lib == again
    assert [p.name for p in lib.iterdir()] == ["kafka_2.13-4.0.0.jar"]
    assert runner.mvn_calls == 1
    mvn_argv = next(a for a in runner.calls if "dependency:copy-dependencies" in a)
    assert mvn_argv[0] == str(tool_path / "mvn")
    assert mvn_argv[-2:] == ["-f", str(POM.resolve())]
    assert messages  # the slow path says what it is doing
    # Only lib/ and the marker are left: no staging folder from the copy.
    assert sorted(p.name for p in lib.parent.iterdir()) == [local.MARKER_NAME, "lib"]


def test_ensure_jars_refetches_when_the_pom_changes(tmp_path: Path, tool_path: Path) -> None:
    runner = FakeRunner()
    pom = tmp_path / "pom.xml"
    pom.write_text(POM.read_text(encoding="utf-8"))
    local.ensure_jars(tmp_path / "cache", pom=pom, run=runner)
    pom.write_text(pom.read_text(encoding="utf-8") + "<!-- changed -->\n")

    local.ensure_jars(tmp_path / "cache", pom=pom, run=runner)

    assert runner.mvn_calls == 2


def test_ensure_jars_failure_leaves_no_marker(tmp_path: Path, tool_path: Path) -> None:
    with pytest.raises(BrokerError, match="no network"):
        local.ensure_jars(tmp_path / "cache", pom=POM, run=FakeRunner(mvn_rc=1))
    version_dir = tmp_path / "cache" / local.pom_kafka_version(POM.read_text(encoding="utf-8"))
    assert list(version_dir.iterdir()) == []


def test_missing_mvn_names_the_debian_package(tmp_path: Path, tool_path: Path) -> None:
    (tool_path / "mvn").unlink()
    with pytest.raises(MissingToolError, match=r"apt-get install maven") as info:
        local.ensure_jars(tmp_path / "cache", pom=POM, run=FakeRunner())
    assert info.value.tool == "mvn"


def test_missing_java_names_the_debian_package(tool_path: Path) -> None:
    (tool_path / "java").unlink()
    with pytest.raises(MissingToolError, match=r"openjdk-17-jre-headless") as info:
        local.check_java(run=FakeRunner())
    assert info.value.tool == "java"


@pytest.mark.parametrize(("version", "ok"), [("11.0.2", False), ("1.8.0_392", False), ("17", True)])
def test_java_older_than_17_is_refused(tool_path: Path, version: str, ok: bool) -> None:
    runner = FakeRunner(java_version=version)
    if ok:
        assert local.check_java(run=runner) == 17
    else:
        with pytest.raises(MissingToolError, match="Java 17"):
            local.check_java(run=runner)


def test_java_home_wins_over_path(
    tmp_path: Path, tool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("#!/bin/sh\n")
    (home / "bin" / "java").chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(home))
    assert local.java_executable() == str(home / "bin" / "java")


# --- pid file and ports, without a broker -------------------------------------------------


def test_stop_without_a_broker_returns_false(tmp_path: Path) -> None:
    assert local.stop(tmp_path) is False
    assert local.stop(tmp_path / "never-created") is False


def test_stop_never_signals_a_process_that_is_not_our_broker(tmp_path: Path) -> None:
    paths = local.BrokerPaths.of(tmp_path)
    paths.root.mkdir(parents=True)
    paths.pid.write_text(f"{os.getpid()}\n")  # alive, but pytest, not kafka.Kafka

    assert local.stop(tmp_path) is False
    assert not paths.pid.exists()


def test_start_reports_a_port_taken_by_someone_else(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(BrokerError, match="already in use"):
            local.start(
                tmp_path,
                f"127.0.0.1:{port}",
                jars_dir=tmp_path,
                controller_port=local.free_port(),
            )


def test_start_clears_a_stale_pid_file_and_wants_jars(tmp_path: Path) -> None:
    paths = local.BrokerPaths.of(tmp_path)
    paths.root.mkdir(parents=True)
    paths.pid.write_text(f"{os.getpid()}\n")  # not a broker: stale

    with pytest.raises(UsageError, match="kafka fetch"):
        local.start(tmp_path, f"127.0.0.1:{local.free_port()}", jars_dir=tmp_path / "none")
    assert not paths.pid.exists()


def test_status_false_when_nothing_listens() -> None:
    assert local.status(f"127.0.0.1:{local.free_port()}", timeout=5) is False
