"""A local S3-compatible object store: S3Proxy with its filesystem backend (development, tests).

Its jars come from Maven Central through ``pipeline/data/s3proxy/pom.xml``, cached like the
Kafka jars. Everything it owns lives under ``<state_dir>/s3``::

    s3proxy.properties  endpoint, credentials and backend folder (0600: it holds the secret)
    secret              the secret access key (0600), read by the lake through a file setting
    data/<bucket>/      the objects, one file each (jclouds' filesystem blob store)
    logs/s3proxy.log    its output
    s3proxy.pid         written once it answered an HTTP request

Why S3Proxy: ``docs/adr/0005-beyond-one-machine.md``.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline import data
from pipeline.errors import BrokerError
from pipeline.files import write_atomic
from pipeline.kafka.local import JarSet, ensure_jars, java_executable
from pipeline.localproc import (
    cmdline,
    free_port,
    locked,
    port_free,
    read_pid,
    spawn,
    tail,
    terminate,
)

logger = logging.getLogger(__name__)

DEPLOY_DIR = data.path("s3proxy")
S3PROXY_JARS = JarSet("S3Proxy", "s3proxy.version", "s3proxy-*.jar")
MAIN_CLASS = "org.gaul.s3proxy.Main"
ACCESS_KEY_ID = "anpr-local"
BUCKET = "anpr-lake"
REGION = "us-east-1"  # S3Proxy accepts any region in a signature; DuckDB needs one


@dataclass(frozen=True)
class ObjectStore:
    """Where a running local object store answers, and the files holding its credentials."""

    root: Path
    host: str
    port: int

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def secret_file(self) -> Path:
        return self.root / "secret"

    @property
    def bucket_dir(self) -> Path:
        """The bucket's folder: an object ``k`` of the bucket is the file ``bucket_dir / k``."""
        return self.root / "data" / BUCKET


def store_root(state_dir: Path) -> Path:
    return state_dir.resolve() / "s3"


def fetch(cache_dir: Path) -> Path:
    """The S3Proxy jars (Maven runs only when the cache does not match the pom)."""
    return ensure_jars(cache_dir, pom=DEPLOY_DIR / "pom.xml", jars=S3PROXY_JARS)


def _is_ours(pid: int, properties: Path) -> bool:
    argv = cmdline(pid)
    return MAIN_CLASS in argv and str(properties) in argv


def _answers(host: str, port: int) -> bool:
    """True once S3Proxy answers HTTP (an anonymous request gets 403, which is an answer)."""
    try:
        conn = http.client.HTTPConnection(host, port, timeout=1.0)
        try:
            conn.request("GET", "/")
            return conn.getresponse().status > 0
        finally:
            conn.close()
    except OSError:
        return False


def _properties(root: Path, port: int, secret: str) -> str:
    return (
        f"s3proxy.endpoint=http://127.0.0.1:{port}\n"
        "s3proxy.authorization=aws-v2-or-v4\n"
        f"s3proxy.identity={ACCESS_KEY_ID}\n"
        f"s3proxy.credential={secret}\n"
        "jclouds.provider=filesystem\n"
        f"jclouds.filesystem.basedir={root / 'data'}\n"
    )


def start(state_dir: Path, *, jars_dir: Path, timeout: float = 90.0) -> ObjectStore:
    """Start S3Proxy (or find it running) with the bucket ``anpr-lake``; return its address.

    The port is a free one chosen at the first start and kept in the properties file.
    """
    root = store_root(state_dir)
    props = root / "s3proxy.properties"
    pid_file = root / "s3proxy.pid"
    deadline = time.monotonic() + timeout
    with locked(root / ".lock"):
        port, secret = _read_config(props)
        store = ObjectStore(root, "127.0.0.1", port or free_port())
        pid = read_pid(pid_file)
        if pid is not None and _is_ours(pid, props):
            if _answers(store.host, store.port):
                return store
            raise BrokerError(f"S3Proxy pid {pid} runs but does not answer on {store.endpoint}")
        pid_file.unlink(missing_ok=True)
        if not port_free(store.host, store.port):
            raise BrokerError(f"S3Proxy port {store.endpoint} is in use by another process")
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The bucket is a folder of the filesystem backend: making it needs no S3 request.
        store.bucket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret = secret or secrets.token_urlsafe(24)
        write_atomic(store.secret_file, secret + "\n")
        write_atomic(props, _properties(root, store.port, secret))
        argv = [
            java_executable(),
            "-Xmx256m",
            "-XX:+UseSerialGC",
            f"-Dlogback.configurationFile={DEPLOY_DIR / 'logback.xml'}",
            "-cp",
            f"{jars_dir.resolve()}/*",
            MAIN_CLASS,
            "--properties",
            str(props),
        ]
        log = root / "logs" / "s3proxy.log"
        proc = spawn(argv, log=log, cwd=root)
        while not _answers(store.host, store.port):
            code = proc.poll()
            if code is not None or time.monotonic() > deadline:
                if code is None:
                    terminate(proc.pid, 10.0, "S3Proxy")
                raise BrokerError(f"S3Proxy did not start on {store.endpoint}\n{tail(log)}")
            time.sleep(0.1)
        write_atomic(pid_file, f"{proc.pid}\n")
        logger.info("S3Proxy pid %d ready on %s", proc.pid, store.endpoint)
        return store


def _read_config(props: Path) -> tuple[int | None, str | None]:
    port: int | None = None
    secret: str | None = None
    with contextlib.suppress(FileNotFoundError):
        for line in props.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            if key == "s3proxy.endpoint":
                port = int(value.rsplit(":", 1)[1])
            elif key == "s3proxy.credential":
                secret = value
    return port, secret


def running(state_dir: Path) -> ObjectStore | None:
    """The running local object store, or None."""
    root = store_root(state_dir)
    props = root / "s3proxy.properties"
    pid = read_pid(root / "s3proxy.pid")
    port, _ = _read_config(props)
    if pid is None or port is None or not _is_ours(pid, props):
        return None
    store = ObjectStore(root, "127.0.0.1", port)
    return store if _answers(store.host, store.port) else None


def stop(state_dir: Path, *, timeout: float = 30.0) -> bool:
    """Stop S3Proxy if it runs; True if it did."""
    root = store_root(state_dir)
    if not root.is_dir():
        return False
    with locked(root / ".lock"):
        pid = read_pid(root / "s3proxy.pid")
        (root / "s3proxy.pid").unlink(missing_ok=True)
        if pid is None or not _is_ours(pid, root / "s3proxy.properties"):
            return False
        terminate(pid, timeout, "S3Proxy")
        return True
