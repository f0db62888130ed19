"""Control of a local single-node Apache Kafka 4 broker (KRaft, broker and controller in one JVM).

The broker runs from the jars that Maven copies from Maven Central
(``pipeline/data/kafka/pom.xml``); there is no Kafka distribution to download and no Docker.
Everything a running broker owns lives under ``<state_dir>/kafka``::

    server.properties   rendered from kafka/server.properties.template (pipeline.data) on start
    data/               log.dirs (topic data and the KRaft metadata log; meta.properties)
    logs/               server.log (log4j2) and stdout.log (the JVM's own output)
    kafka.pid           the broker's pid, written only after it answered a client

Example::

    jars = ensure_jars(Path(".anpr/cache/kafka"))
    pid = start(Path(".anpr"), "127.0.0.1:9092", jars_dir=jars)
    assert status("127.0.0.1:9092")
    stop(Path(".anpr"))
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from pipeline import data
from pipeline.errors import BrokerError, MissingToolError, UsageError
from pipeline.files import write_atomic
from pipeline.localproc import (
    cmdline,
    free_port,
    locked,
    port_free,
    read_pid,
    spawn,
    tail,
    terminate,
    wait_gone,
)

logger = logging.getLogger(__name__)

DEPLOY_DIR = data.path("kafka")
"""Where the pom, the log4j2 configuration and the server.properties template live."""

DEFAULT_POM = DEPLOY_DIR / "pom.xml"
MIN_JAVA = 17
MARKER_NAME = ".complete"

APT_MAVEN = "install it with `apt-get install maven`"
APT_JAVA = "install it with `apt-get install openjdk-17-jre-headless`"

# Measured on 2 cores (median of 3 starts from an empty state dir, format included): serial
# GC 3.4 s, G1 3.9 s; restarts 2.3 s vs 2.7 s. A broker with a few hundred MB of heap gains
# nothing from G1's concurrent work, and the serial collector needs no extra threads.
JVM_OPTIONS: tuple[str, ...] = (
    "-XX:+UseSerialGC",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
# Only the one-shot storage formatter stops at the C1 compiler: it saves ~0.5 s of JIT work
# there, but would cost the long-running broker its steady-state throughput.
FORMAT_JVM_OPTIONS: tuple[str, ...] = ("-XX:TieredStopAtLevel=1",)

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]
"""Runs an argv and returns its completed process (injectable so tests can see the calls)."""


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


# --------------------------------------------------------------------------------------------
# Pure parts: bootstrap parsing, property rendering, version parsing.


@dataclass(frozen=True)
class Endpoint:
    """One ``host:port`` of a bootstrap list."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_SCHEME = re.compile(r"^[A-Za-z_]+://")


def parse_endpoint(text: str) -> Endpoint:
    """Parse ``host:port``, ``[v6]:port`` or ``SCHEME://host:port``.

    >>> parse_endpoint("127.0.0.1:9092")
    Endpoint(host='127.0.0.1', port=9092)
    """
    raw = _SCHEME.sub("", text.strip())
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise UsageError(f"bootstrap server {text!r}: expected [host]:port")
        port_text = rest[1:]
    else:
        host, sep, port_text = raw.rpartition(":")
        if not sep:
            raise UsageError(f"bootstrap server {text!r}: expected host:port")
    if not host or not re.fullmatch(r"[A-Za-z0-9.:_-]+", host):
        raise UsageError(f"bootstrap server {text!r}: bad host")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"bootstrap server {text!r}: port must be 1-65535")
    return Endpoint(host, int(port_text))


def parse_bootstrap(bootstrap: str) -> list[Endpoint]:
    """Parse a comma-separated bootstrap list; an empty list is a usage error."""
    endpoints = [parse_endpoint(part) for part in bootstrap.split(",") if part.strip()]
    if not endpoints:
        raise UsageError("bootstrap servers: empty")
    return endpoints


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``; no DNS lookup is made."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_endpoint(bootstrap: str) -> Endpoint:
    """The one loopback ``host:port`` a local broker listens on, or :class:`UsageError`.

    The local broker speaks PLAINTEXT without authentication, so it may only listen on
    the loopback interface.
    """
    endpoints = parse_bootstrap(bootstrap)
    if len(endpoints) != 1:
        raise UsageError(f"a local broker has one address, got {bootstrap!r}")
    endpoint = endpoints[0]
    if not is_loopback(endpoint.host):
        raise UsageError(
            f"the local broker listens only on loopback (127.0.0.1, ::1, localhost), "
            f"not {endpoint.host!r}"
        )
    return endpoint


def _properties_escape(value: str) -> str:
    # java.util.Properties treats a backslash as an escape character in values.
    return value.replace("\\", "\\\\")


def render_server_properties(
    template: str, *, endpoint: Endpoint, controller_port: int, log_dirs: Path
) -> str:
    """Fill the server.properties template; a missing or unknown placeholder raises KeyError."""
    if controller_port == endpoint.port:
        raise UsageError(f"controller port {controller_port} equals the client port")
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return string.Template(template).substitute(
        host=host,
        port=endpoint.port,
        controller_port=controller_port,
        log_dirs=_properties_escape(str(log_dirs)),
    )


def read_controller_port(properties: str) -> int | None:
    """The CONTROLLER listener's port in a rendered server.properties, if there is one."""
    for line in properties.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "listeners":
            match = re.search(r"CONTROLLER://[^,]*:(\d+)", value)
            if match:
                return int(match.group(1))
    return None


def parse_java_major(version_output: str) -> int | None:
    """The major version in ``java -version`` output (``1.8.0_x`` is 8), or None."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2) is not None:
        return int(match.group(2))
    return major


def pom_kafka_version(pom_text: str) -> str:
    """The ``<kafka.version>`` property of the pom; it names the jar cache folder."""
    return pom_version(pom_text, "kafka.version")


def pom_version(pom_text: str, prop: str) -> str:
    """The version property ``prop`` of a pom (``kafka.version``, ``s3proxy.version``)."""
    name = re.escape(prop)
    match = re.search(rf"<{name}>\s*([0-9A-Za-z.\-]+)\s*</{name}>", pom_text)
    if not match:
        raise UsageError(f"pom has no <{prop}> property")
    return match.group(1)


def random_cluster_id() -> str:
    """A KRaft cluster id, made the way Kafka's ``Uuid.randomUuid()`` makes one.

    Done here rather than with ``kafka-storage random-uuid`` to save a JVM start.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        # Kafka refuses ids that start with "-": they look like command-line options.
        if not text.startswith("-"):
            return text


# --------------------------------------------------------------------------------------------
# Tools: java and mvn.


def java_executable() -> str:
    """``$JAVA_HOME/bin/java`` when set, else ``java`` on PATH, else MissingToolError."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home) / "bin" / "java", os.X_OK):
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise MissingToolError("java", APT_JAVA)
    return found


def check_java(*, run: Runner = _run) -> int:
    """Check that java is installed and at least version 17; return its major version."""
    java = java_executable()
    result = run([java, "-version"])
    major = parse_java_major(result.stderr + result.stdout)
    if major is None:
        raise MissingToolError("java", f"cannot read the version of {java}; {APT_JAVA}")
    if major < MIN_JAVA:
        raise MissingToolError(
            "java", f"Kafka 4 needs Java {MIN_JAVA} or newer, found {major}; {APT_JAVA}"
        )
    return major


@dataclass(frozen=True)
class JarSet:
    """A program run from the jars Maven copies for a pom: what to call it, which version
    property names its cache folder, which jar proves the copy complete."""

    name: str
    version_property: str
    expect: str


KAFKA_JARS = JarSet("Kafka", "kafka.version", "kafka_*.jar")


def ensure_jars(
    cache_dir: Path,
    *,
    pom: Path | None = None,
    progress: Callable[[str], None] | None = None,
    run: Runner = _run,
    jars: JarSet = KAFKA_JARS,
) -> Path:
    """Return a folder holding every jar the broker needs, running Maven only the first time.

    The jars go to ``<cache_dir>/<kafka.version>/lib``. A marker file next to it holds the
    SHA-256 of the pom they came from; while it matches, this returns at once without running
    Maven or Java (a second ``make setup`` makes no network access). Maven writes into a
    temporary folder that is renamed into place only after it succeeded, so an interrupted
    download is never mistaken for a complete one.
    """
    pom = (pom or DEFAULT_POM).resolve()
    say = progress or (lambda message: logger.info("%s", message))
    try:
        pom_bytes = pom.read_bytes()
    except FileNotFoundError as exc:
        raise UsageError(f"{jars.name} pom not found: {pom}") from exc
    digest = hashlib.sha256(pom_bytes).hexdigest()
    version_dir = cache_dir.resolve() / pom_version(
        pom_bytes.decode("utf-8"), jars.version_property
    )
    lib = version_dir / "lib"
    marker = version_dir / MARKER_NAME
    if _jars_ready(lib, marker, digest):
        logger.debug("%s jars up to date in %s", jars.name, lib)
        return lib

    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingToolError("mvn", APT_MAVEN)
    check_java(run=run)
    version_dir.mkdir(parents=True, exist_ok=True)
    # Two `make setup`s (or test sessions) at once: the second waits and then finds the jars.
    with locked(cache_dir.resolve() / ".lock"):
        if _jars_ready(lib, marker, digest):
            return lib
        _fetch(mvn, pom, version_dir, jars, run=run, say=say)
    write_atomic(marker, digest + "\n")
    return lib


def _jars_ready(lib: Path, marker: Path, digest: str) -> bool:
    with contextlib.suppress(FileNotFoundError):
        return marker.read_text(encoding="utf-8").strip() == digest and lib.is_dir()
    return False


def _fetch(
    mvn: str,
    pom: Path,
    version_dir: Path,
    jars: JarSet,
    *,
    run: Runner,
    say: Callable[[str], None],
) -> None:
    lib = version_dir / "lib"
    (version_dir / MARKER_NAME).unlink(missing_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="lib.", dir=version_dir))
    say(f"fetching {jars.name} {version_dir.name} jars with Maven into {lib}")
    started = time.monotonic()
    try:
        result = run(
            [
                mvn,
                "-q",
                "-B",
                "-Dstyle.color=never",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-f",
                str(pom),
            ]
        )
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            raise BrokerError(f"mvn dependency:copy-dependencies failed:\n{output}")
        if not any(staging.glob(jars.expect)):
            raise BrokerError(f"mvn finished but no {jars.expect} is in {staging}")
        if lib.exists():
            shutil.rmtree(lib)
        staging.rename(lib)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    say(f"{jars.name} jars ready in {time.monotonic() - started:.1f} s")


# --------------------------------------------------------------------------------------------
# The broker process.


@dataclass(frozen=True)
class BrokerPaths:
    """Files of one local broker under ``<state_dir>/kafka``."""

    root: Path

    @classmethod
    def of(cls, state_dir: Path) -> BrokerPaths:
        return cls(state_dir.resolve() / "kafka")

    @property
    def properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pid(self) -> Path:
        return self.root / "kafka.pid"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def stdout(self) -> Path:
        return self.logs / "stdout.log"

    @property
    def server_log(self) -> Path:
        return self.logs / "server.log"


def _is_our_broker(pid: int, paths: BrokerPaths) -> bool:
    """True if ``pid`` is a live JVM running kafka.Kafka with this state dir's properties."""
    # A zombie has an empty cmdline, so it never counts as ours.
    argv = cmdline(pid)
    return "kafka.Kafka" in argv and str(paths.properties) in argv


def _tcp_open(endpoint: Endpoint, timeout: float) -> bool:
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout):
            return True
    except OSError:
        return False


def _admin_config(bootstrap: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        # A broker that is not up yet is the expected case while probing; librdkafka would
        # otherwise print "Connection refused" to stderr on every retry.
        "log_level": 2,
        "error_cb": lambda err: logger.debug("probe: %s", err),
    }
    config.update(extra or {})
    return config


def _answers(admin: Any, timeout: float, *, brokers: int = 1) -> bool:
    try:
        metadata = admin.list_topics(timeout=max(timeout, 0.1))
    except KafkaException:
        return False
    return len(metadata.brokers) >= brokers and metadata.controller_id >= 0


def status(
    bootstrap: str, *, timeout: float = 5.0, config: Mapping[str, Any] | None = None
) -> bool:
    """True if a Kafka broker at ``bootstrap`` answers a metadata request within ``timeout``.

    Works for any cluster (pass security settings in ``config``); a refused TCP connection
    answers False at once instead of waiting out the timeout.
    """
    endpoints = parse_bootstrap(bootstrap)
    if not any(_tcp_open(e, min(timeout, 2.0)) for e in endpoints):
        return False
    return _answers(AdminClient(_admin_config(bootstrap, config)), timeout)


def _broker_log_tail(paths: BrokerPaths) -> str:
    parts = []
    for path in (paths.server_log, paths.stdout):
        text = tail(path)
        if text:
            parts.append(f"--- {path} (last lines) ---\n{text}")
    return "\n".join(parts) or f"(no broker log in {paths.logs})"


def _java_command(
    java: str,
    jars_dir: Path,
    paths: BrokerPaths,
    main: Sequence[str],
    *,
    heap_mb: int,
    extra: Sequence[str] = (),
) -> list[str]:
    return [
        java,
        f"-Xmx{heap_mb}m",
        f"-Xms{min(heap_mb, 128)}m",
        *JVM_OPTIONS,
        *extra,
        f"-Dkafka.logs.dir={paths.logs}",
        f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'log4j2.properties'}",
        "-cp",
        f"{jars_dir.resolve()}/*",
        *main,
    ]


def _format_argv(java: str, jars_dir: Path, paths: BrokerPaths, cluster_id: str) -> list[str]:
    # One node alone formats with ``--standalone`` (it is the only voter); a cluster node's
    # voters come from controller.quorum.voters in its properties instead.
    standalone = ["--standalone"] if cluster_id == "" else []
    return _java_command(
        java,
        jars_dir,
        paths,
        [
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            cluster_id or random_cluster_id(),
            "--config",
            str(paths.properties),
            *standalone,
        ],
        heap_mb=256,
        extra=FORMAT_JVM_OPTIONS,
    )


def _format_storage(java: str, jars_dir: Path, paths: BrokerPaths, timeout: float) -> None:
    """Format the KRaft storage once; ``--standalone`` makes this node the only voter."""
    if (paths.data / "meta.properties").exists():
        return
    argv = _format_argv(java, jars_dir, paths, "")
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=max(timeout, 1.0), check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(f"formatting Kafka storage took longer than {timeout:.0f} s") from exc
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise BrokerError(f"formatting Kafka storage in {paths.data} failed:\n{output}")
    logger.info("formatted Kafka storage in %s", paths.data)


def _controller_port(paths: BrokerPaths, host: str) -> int:
    # The controller's address is recorded in the metadata log at format time, so it must stay
    # the same for the life of the state dir: reuse the one rendered last time.
    with contextlib.suppress(FileNotFoundError):
        port = read_controller_port(paths.properties.read_text(encoding="utf-8"))
        if port is not None:
            return port
    return free_port(host)


def _wait_ready(
    procs: Mapping[BrokerPaths, subprocess.Popen[bytes]],
    bootstrap: str,
    deadline: float,
    *,
    brokers: int = 1,
    listening: Sequence[Endpoint] = (),
) -> None:
    """Wait until ``brokers`` brokers answer on ``bootstrap`` and every one of ``listening``
    accepts connections (a killed node stays in the metadata for seconds, so a restarted one
    must be seen on its own port); fail if one of ``procs`` exits."""
    admin = AdminClient(_admin_config(bootstrap))
    last = next(iter(procs))
    while True:
        for paths, proc in procs.items():
            code = proc.poll()
            if code is not None:
                raise BrokerError(
                    f"Kafka broker exited with code {code} while starting\n"
                    f"{_broker_log_tail(paths)}"
                )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerError(
                f"Kafka broker did not answer on {bootstrap} in time\n{_broker_log_tail(last)}"
            )
        if all(_tcp_open(e, 1.0) for e in listening) and _answers(
            admin, min(1.0, remaining), brokers=brokers
        ):
            return
        # list_topics returns early on "connection refused"; do not spin on it.
        time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))


WARMUP_GROUP = "anpr-local-broker-warmup"


def _warm_group_coordinator(bootstrap: str, paths: BrokerPaths, deadline: float) -> None:
    """Make the broker create ``__consumer_offsets`` now rather than for the first consumer.

    A classic-protocol consumer (librdkafka's default, and aiokafka/faust) that finds no
    coordinator backs off for ~3 s before asking again; a describe request makes the broker
    create the topic, and it answers NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS until
    the coordinator is loaded.
    """
    admin = AdminClient(_admin_config(bootstrap))
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerError(
                f"Kafka broker on {bootstrap} has no group coordinator in time\n"
                f"{_broker_log_tail(paths)}"
            )
        if _offsets_topic_led(admin, remaining):
            return
        # Short attempts: against a cluster, librdkafka may keep one request waiting for a
        # coordinator that a later request finds at once. The future is waited for without a
        # timeout of its own: librdkafka ends it at request_timeout, and abandoning a pending
        # admin request can trip an assertion inside librdkafka.
        attempt = min(remaining, 5.0)
        future = admin.describe_consumer_groups([WARMUP_GROUP], request_timeout=attempt)
        try:
            future[WARMUP_GROUP].result()
        except KafkaException as exc:
            logger.debug("group coordinator not ready yet: %s", exc)
            time.sleep(0.05)
        else:
            return


def _offsets_topic_led(admin: Any, timeout: float) -> bool:
    """True once ``__consumer_offsets`` exists and every partition of it has a leader."""
    try:
        topic = admin.list_topics("__consumer_offsets", timeout=max(min(timeout, 5.0), 0.1))
    except KafkaException:
        return False
    meta = topic.topics.get("__consumer_offsets")
    if meta is None or meta.error is not None or not meta.partitions:
        return False
    return all(p.leader >= 0 for p in meta.partitions.values())


def start(
    state_dir: Path,
    bootstrap: str,
    *,
    jars_dir: Path,
    timeout: float = 60.0,
    heap_mb: int = 512,
    controller_port: int | None = None,
) -> int:
    """Start the local broker (or find it running) and return its pid once a client can use it.

    ``bootstrap`` is the one loopback ``host:port`` clients use. The controller listens on
    ``controller_port`` on the same host: by default the one this state dir used before, or a
    free port on first start (formatting records it, so it stays with the state dir).

    Raises :class:`BrokerError`, with the tail of the broker log, when the broker does not
    answer within ``timeout`` seconds or exits while starting, and when a port is taken.
    """
    endpoint = local_endpoint(bootstrap)
    paths = BrokerPaths.of(state_dir)
    deadline = time.monotonic() + timeout
    with locked(paths.lock):
        pid = read_pid(paths.pid)
        if pid is not None:
            if _is_our_broker(pid, paths):
                if status(str(endpoint), timeout=max(0.1, min(5.0, deadline - time.monotonic()))):
                    logger.info("Kafka broker already running (pid %d)", pid)
                    return pid
                raise BrokerError(
                    f"Kafka broker pid {pid} is running but does not answer on {endpoint}; "
                    f"stop it first\n{_broker_log_tail(paths)}"
                )
            logger.info("removing stale Kafka pid file (pid %d is gone)", pid)
            paths.pid.unlink(missing_ok=True)

        cport = controller_port or _controller_port(paths, endpoint.host)
        for name, port in (("client", endpoint.port), ("controller", cport)):
            if not port_free(endpoint.host, port):
                raise BrokerError(
                    f"{name} port {endpoint.host}:{port} is already in use by another process; "
                    f"pick another port or stop that process"
                )
        if not any(jars_dir.glob("kafka_*.jar")):
            raise UsageError(f"no Kafka jars in {jars_dir}; run `anpr kafka fetch` first")
        java = java_executable()
        check_java()
        for folder in (paths.data, paths.logs):
            folder.mkdir(parents=True, exist_ok=True)
        template = (DEPLOY_DIR / "server.properties.template").read_text(encoding="utf-8")
        write_atomic(
            paths.properties,
            render_server_properties(
                template, endpoint=endpoint, controller_port=cport, log_dirs=paths.data
            ),
        )
        _format_storage(java, jars_dir, paths, deadline - time.monotonic())

        argv = _java_command(
            java, jars_dir, paths, ["kafka.Kafka", str(paths.properties)], heap_mb=heap_mb
        )
        logger.info("starting Kafka broker on %s (controller port %d)", endpoint, cport)
        started = time.monotonic()
        proc = spawn(argv, log=paths.stdout, cwd=paths.root)
        try:
            _wait_ready({paths: proc}, str(endpoint), deadline)
            _warm_group_coordinator(str(endpoint), paths, deadline)
        except BaseException:
            if proc.poll() is None:
                with contextlib.suppress(BrokerError):
                    terminate(proc.pid, 10.0, "Kafka broker")
            raise
        write_atomic(paths.pid, f"{proc.pid}\n")
        logger.info("Kafka broker pid %d ready in %.1f s", proc.pid, time.monotonic() - started)
        return proc.pid


def stop(state_dir: Path, *, timeout: float = 30.0) -> bool:
    """Stop the broker named in the pid file; True if one was running, False if none was.

    Only a process whose command line is kafka.Kafka with this state dir's server.properties
    is signalled, so a reused pid never kills a stranger.
    """
    paths = BrokerPaths.of(state_dir)
    if not paths.root.is_dir():
        return False
    with locked(paths.lock):
        pid = read_pid(paths.pid)
        if pid is None:
            return False
        if not _is_our_broker(pid, paths):
            logger.info("Kafka pid file names pid %d, which is not our broker; removing it", pid)
            paths.pid.unlink(missing_ok=True)
            return False
        logger.info("stopping Kafka broker pid %d", pid)
        terminate(pid, timeout, "Kafka broker")
        paths.pid.unlink(missing_ok=True)
        return True


# --------------------------------------------------------------------------------------------
# A local cluster of several nodes (`anpr kafka start --brokers 3`).

CLUSTER_TEMPLATE = DEPLOY_DIR / "cluster.properties.template"
CLUSTER_DIR = "kafka-cluster"


@dataclass(frozen=True)
class ClusterLayout:
    """Id and ports of a local cluster, chosen at its first start and kept in ``layout.json``:
    the metadata log records the voters' addresses when the nodes are formatted."""

    cluster_id: str
    host: str
    ports: tuple[int, ...]  # client port of node i + 1
    controller_ports: tuple[int, ...]

    @property
    def nodes(self) -> range:
        return range(1, len(self.ports) + 1)

    @property
    def bootstrap(self) -> str:
        return ",".join(str(Endpoint(self.host, port)) for port in self.ports)

    @property
    def voters(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return ",".join(
            f"{n}@{host}:{p}" for n, p in zip(self.nodes, self.controller_ports, strict=True)
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "cluster_id": self.cluster_id,
                "host": self.host,
                "ports": list(self.ports),
                "controller_ports": list(self.controller_ports),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ClusterLayout:
        raw = json.loads(text)
        return cls(
            str(raw["cluster_id"]),
            str(raw["host"]),
            tuple(int(p) for p in raw["ports"]),
            tuple(int(p) for p in raw["controller_ports"]),
        )


def cluster_root(state_dir: Path) -> Path:
    """``<state_dir>/kafka-cluster``: ``layout.json``, ``.lock`` and one ``node-<id>`` each."""
    return state_dir.resolve() / CLUSTER_DIR


def node_paths(state_dir: Path, node: int) -> BrokerPaths:
    """The files of cluster node ``node`` (1-based)."""
    return BrokerPaths(cluster_root(state_dir) / f"node-{node}")


def cluster_layout(state_dir: Path) -> ClusterLayout | None:
    """The layout of the local cluster in ``state_dir``, or None if it was never started."""
    try:
        return ClusterLayout.from_json((cluster_root(state_dir) / "layout.json").read_text())
    except FileNotFoundError:
        return None


def _new_layout(host: str, brokers: int) -> ClusterLayout:
    ports: list[int] = []
    while len(ports) < 2 * brokers:
        port = free_port(host)
        if port not in ports:
            ports.append(port)
    return ClusterLayout(random_cluster_id(), host, tuple(ports[:brokers]), tuple(ports[brokers:]))


def render_node_properties(template: str, layout: ClusterLayout, node: int, log_dirs: Path) -> str:
    """Fill the cluster template for ``node``; a missing or unknown placeholder raises KeyError."""
    host = f"[{layout.host}]" if ":" in layout.host else layout.host
    return string.Template(template).substitute(
        node_id=node,
        host=host,
        port=layout.ports[node - 1],
        controller_port=layout.controller_ports[node - 1],
        voters=layout.voters,
        log_dirs=_properties_escape(str(log_dirs)),
    )


def _running_node(state_dir: Path, node: int) -> int | None:
    paths = node_paths(state_dir, node)
    pid = read_pid(paths.pid)
    if pid is not None and _is_our_broker(pid, paths):
        return pid
    paths.pid.unlink(missing_ok=True)
    return None


def start_cluster(
    state_dir: Path,
    *,
    jars_dir: Path,
    brokers: int = 3,
    host: str = "127.0.0.1",
    timeout: float = 120.0,
    heap_mb: int = 384,
) -> ClusterLayout:
    """Start every node of the local cluster that is not running; return once all answer.

    Idempotent like :func:`start`: running nodes are left alone, so after a node was killed
    this starts only that one. Ports are free ports chosen on the first start and kept.
    """
    if brokers < 2:
        raise UsageError("a cluster has at least two brokers; use start() for one")
    if not is_loopback(host):
        raise UsageError(f"the local cluster listens only on loopback, not {host!r}")
    root = cluster_root(state_dir)
    deadline = time.monotonic() + timeout
    with locked(root / ".lock"):
        layout = cluster_layout(state_dir)
        if layout is None:
            layout = _new_layout(host, brokers)
            root.mkdir(parents=True, exist_ok=True)
            write_atomic(root / "layout.json", layout.to_json() + "\n")
        elif len(layout.ports) != brokers:
            raise UsageError(
                f"the local cluster in {root} has {len(layout.ports)} brokers, not {brokers}; "
                "stop it and remove that folder to change its size"
            )
        missing = [n for n in layout.nodes if _running_node(state_dir, n) is None]
        if not missing:
            if _answers(AdminClient(_admin_config(layout.bootstrap)), 5.0, brokers=brokers):
                logger.info("Kafka cluster already running at %s", layout.bootstrap)
                return layout
            raise BrokerError(f"Kafka cluster at {layout.bootstrap} runs but does not answer")
        if not any(jars_dir.glob("kafka_*.jar")):
            raise UsageError(f"no Kafka jars in {jars_dir}; run `anpr kafka fetch` first")
        java = java_executable()
        check_java()
        for node in missing:
            for port in (layout.ports[node - 1], layout.controller_ports[node - 1]):
                if not port_free(layout.host, port):
                    raise BrokerError(f"port {layout.host}:{port} of node {node} is in use")
        procs = _launch_nodes(state_dir, layout, missing, java, jars_dir, heap_mb, deadline)
        try:
            ports = [Endpoint(layout.host, layout.ports[n - 1]) for n in missing]
            _wait_ready(procs, layout.bootstrap, deadline, brokers=brokers, listening=ports)
            _warm_group_coordinator(layout.bootstrap, next(iter(procs)), deadline)
        except BaseException:
            for proc in procs.values():
                if proc.poll() is None:
                    with contextlib.suppress(BrokerError):
                        terminate(proc.pid, 10.0, "Kafka broker")
            raise
        for paths, proc in procs.items():
            write_atomic(paths.pid, f"{proc.pid}\n")
        logger.info("Kafka cluster ready at %s", layout.bootstrap)
        return layout


def _launch_nodes(
    state_dir: Path,
    layout: ClusterLayout,
    nodes: Sequence[int],
    java: str,
    jars_dir: Path,
    heap_mb: int,
    deadline: float,
) -> dict[BrokerPaths, subprocess.Popen[bytes]]:
    template = CLUSTER_TEMPLATE.read_text(encoding="utf-8")
    formats: list[tuple[BrokerPaths, subprocess.Popen[bytes]]] = []
    for node in nodes:
        paths = node_paths(state_dir, node)
        for folder in (paths.data, paths.logs):
            folder.mkdir(parents=True, exist_ok=True)
        write_atomic(paths.properties, render_node_properties(template, layout, node, paths.data))
        if not (paths.data / "meta.properties").exists():
            # The formatters run side by side: three JVM starts in sequence cost seconds.
            argv = _format_argv(java, jars_dir, paths, layout.cluster_id)
            formats.append((paths, spawn(argv, log=paths.logs / "format.log", cwd=paths.root)))
    for paths, proc in formats:
        try:
            code = proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            raise BrokerError(f"formatting Kafka storage in {paths.data} took too long") from exc
        if code != 0:
            raise BrokerError(
                f"formatting Kafka storage in {paths.data} failed:\n"
                f"{tail(paths.logs / 'format.log')}"
            )
    procs: dict[BrokerPaths, subprocess.Popen[bytes]] = {}
    for node in nodes:
        paths = node_paths(state_dir, node)
        argv = _java_command(
            java, jars_dir, paths, ["kafka.Kafka", str(paths.properties)], heap_mb=heap_mb
        )
        logger.info("starting Kafka node %d on %s", node, layout.ports[node - 1])
        procs[paths] = spawn(argv, log=paths.stdout, cwd=paths.root)
    return procs


def stop_cluster(state_dir: Path, *, timeout: float = 60.0) -> int:
    """Stop every node of the local cluster; return how many were running.

    All nodes get SIGTERM at once: stopped one after another, the last ones would lose their
    controller quorum and wait for it in their controlled shutdown.
    """
    root = cluster_root(state_dir)
    layout = cluster_layout(state_dir)
    if layout is None:
        return 0
    with locked(root / ".lock"):
        pids = {n: pid for n in layout.nodes if (pid := _running_node(state_dir, n)) is not None}
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for node, pid in pids.items():
            terminate(pid, timeout, "Kafka broker")
            node_paths(state_dir, node).pid.unlink(missing_ok=True)
    return len(pids)


def kill_node(state_dir: Path, node: int, sig: signal.Signals = signal.SIGKILL) -> int:
    """Send ``sig`` to cluster node ``node`` and wait until it is gone; return its pid.

    For failure tests: a SIGKILLed node loses whatever it had not replicated, and
    :func:`start_cluster` brings it back.
    """
    pid = _running_node(state_dir, node)
    if pid is None:
        raise BrokerError(f"Kafka node {node} is not running")
    os.kill(pid, sig)
    if not wait_gone(pid, 60.0):
        raise BrokerError(f"Kafka node {node} (pid {pid}) did not exit after {sig.name}")
    node_paths(state_dir, node).pid.unlink(missing_ok=True)
    return pid


def cluster_status(state_dir: Path, *, timeout: float = 5.0) -> dict[int, bool]:
    """Node id -> whether its process runs; empty if no cluster was ever started here."""
    layout = cluster_layout(state_dir)
    if layout is None:
        return {}
    return {n: _running_node(state_dir, n) is not None for n in layout.nodes}
