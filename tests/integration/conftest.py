"""One real Kafka broker per test session, started by the same code as `anpr kafka start`.

Environment:
    ANPR_STATE_DIR     the broker jars are taken from its cache/kafka, where `anpr kafka fetch`
                       (run by `make setup`) put them (default: <repo>/.anpr)

Every test under tests/integration is marked ``integration`` automatically, so
``pytest -m "not integration"`` runs without java or Maven.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.codec.vendors import VENDOR_RULES
from pipeline.config import Settings
from pipeline.errors import MissingToolError
from pipeline.kafka import local
from pipeline.reference.sites import DEFAULT_REGISTRY, SiteRegistry, load_registry
from pipeline.service.client import is_listening

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

MakeTopic = Callable[..., str]
RunAnpr = Callable[..., "subprocess.CompletedProcess[str]"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Hooks in a sub-folder conftest still see every collected item, so filter by path.
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def private_umask() -> Iterator[None]:
    """Lakes and state the tests build in-process are private, as `anpr` makes them (files
    0600, folders 0700): the commands refuse a lake or state folder open to other users."""
    previous = os.umask(0o077)
    yield
    os.umask(previous)


@pytest.fixture(scope="session")
def kafka_jars() -> Path:
    cache = Path(os.environ.get("ANPR_STATE_DIR", REPO / ".anpr")) / "cache" / "kafka"
    try:
        return local.ensure_jars(cache)
    except MissingToolError as exc:
        # A failure, not a skip: a suite that skips its broker tests would pass CI untested.
        pytest.fail(f"integration tests need the Kafka broker jars (run `make setup`): {exc}")


@dataclass(frozen=True)
class LocalBroker:
    bootstrap: str
    state_dir: Path
    pid: int


@pytest.fixture(scope="session")
def kafka_broker(
    kafka_jars: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalBroker]:
    """The session's single-node Kafka broker, on free loopback ports, state in a tmp dir."""
    state_dir = tmp_path_factory.mktemp("kafka-session")
    bootstrap = f"127.0.0.1:{local.free_port()}"
    pid = local.start(state_dir, bootstrap, jars_dir=kafka_jars, timeout=120)
    try:
        yield LocalBroker(bootstrap, state_dir, pid)
    finally:
        local.stop(state_dir)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: LocalBroker) -> str:
    """``host:port`` of the session's broker: what most tests need."""
    return kafka_broker.bootstrap


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


def _wait_for_topic(admin: AdminClient, name: str, partitions: int, timeout: float) -> None:
    """Poll metadata until every partition of ``name`` has a leader, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        topic = admin.list_topics(topic=name, timeout=5).topics.get(name)
        if (
            topic is not None
            and topic.error is None
            and len(topic.partitions) == partitions
            and all(p.leader >= 0 for p in topic.partitions.values())
        ):
            return
        time.sleep(0.05)
    pytest.fail(f"topic {name} not ready after {timeout} s")


@pytest.fixture
def make_topic(kafka_admin: AdminClient) -> Iterator[MakeTopic]:
    """Factory: ``make_topic(partitions=1, config=None) -> name`` of a new, unique topic.

    The topics are deleted when the test ends.
    """
    created: list[str] = []

    def factory(partitions: int = 1, config: Mapping[str, str] | None = None) -> str:
        name = f"test-{uuid.uuid4().hex}"
        futures = kafka_admin.create_topics(
            [
                NewTopic(
                    name, num_partitions=partitions, replication_factor=1, config=dict(config or {})
                )
            ],
            operation_timeout=30,
        )
        futures[name].result(timeout=30)
        created.append(name)
        _wait_for_topic(kafka_admin, name, partitions, timeout=30)
        return name

    yield factory
    if created:
        for future in kafka_admin.delete_topics(created, operation_timeout=30).values():
            future.result(timeout=30)


@pytest.fixture(scope="session")
def anpr() -> RunAnpr:
    """``anpr(env, *args, timeout=60)``: run the real CLI to completion, output as text."""

    def run(
        env: Mapping[str, str], *args: str, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipeline", *args],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture(scope="session")
def registry() -> SiteRegistry:
    """The site registry shipped in pipeline/data/sites.toml (the one `anpr` uses by default)."""
    return load_registry(DEFAULT_REGISTRY, VENDOR_RULES)


@contextlib.contextmanager
def running_service(
    env: Mapping[str, str], socket_path: Path, *config: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``anpr [--config FILE] serve`` as a child with ``env`` (its own, trusted settings),
    once it accepts connections on ``socket_path``; stopped (SIGTERM) on exit."""
    with tempfile.TemporaryFile() as log:
        yield from _serve(env, socket_path, config, log)


def _serve(
    env: Mapping[str, str], socket_path: Path, config: tuple[str, ...], log: IO[bytes]
) -> Iterator[subprocess.Popen[bytes]]:
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *config, "serve"],
        env={**env, "ANPR_SERVE_SOCKET": str(socket_path)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while not is_listening(socket_path):
            if server.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"anpr serve did not start: {log.read().decode()[-3000:]}")
            time.sleep(0.1)
        yield server
    finally:
        server.terminate()
        server.wait(timeout=60)


@contextlib.contextmanager
def service_thread(settings: Settings) -> Iterator[str]:
    """The query service for ``settings`` on a thread of this process, anchoring its log;
    yields the ``host:port`` of its TLS listener. Stopped and closed on exit."""
    from pipeline.access.anchors import AnchorPublisher  # noqa: PLC0415  (service tests only)
    from pipeline.service.handlers import Service  # noqa: PLC0415
    from pipeline.service.server import Server  # noqa: PLC0415

    service = Service(settings, anchors=AnchorPublisher.from_settings(settings))
    server = Server(service, settings.serve)
    server.bind()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    host, port = server.tls_address or ("", 0)
    try:
        yield f"{host}:{port}"
    finally:
        server.stop()
        thread.join(timeout=60)
        service.close()
