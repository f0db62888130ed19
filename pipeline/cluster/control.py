"""``anpr cluster start|stop|status``: the three-node Kafka cluster, PostgreSQL and S3Proxy as one
set, with a settings file that points the pipeline at it.

``start`` is idempotent (a running part is left alone, a dead one restarted) and returns once
every part answers a client; ``stop`` stops them cleanly. The settings go to
``<state_dir>/cluster/anpr.toml``: pass it as ``--config`` (or copy its sections) to run ingest,
maintain and the query service on the set. Secrets stay in their files, which it names.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.cluster import postgres, s3proxy
from pipeline.errors import BrokerError
from pipeline.files import write_atomic
from pipeline.kafka import local

logger = logging.getLogger(__name__)

BROKERS = 3
LAKE_PREFIX = "lake"  # objects go under s3://anpr-lake/lake/
# A run's name becomes topic names, a consumer group, a database name and an object prefix:
# lower-case letters and digits only, so it needs no quoting anywhere.
_RUN_NAME = re.compile(r"[a-z][a-z0-9]{0,39}")


@dataclass(frozen=True)
class ClusterInfo:
    """Where each part of a running set answers."""

    bootstrap: str
    catalog: postgres.Server
    store: s3proxy.ObjectStore

    @property
    def data_path(self) -> str:
        return f"s3://{s3proxy.BUCKET}/{LAKE_PREFIX}/"


def settings_file(state_dir: Path) -> Path:
    return state_dir.resolve() / "cluster" / "anpr.toml"


def settings_toml(info: ClusterInfo) -> str:
    """The settings that point the pipeline at ``info`` (no secret in it: file names only)."""
    return (
        "# Written by `anpr cluster start`: the local production-shaped set.\n"
        "[kafka]\n"
        f'bootstrap_servers = "{info.bootstrap}"\n\n'
        "[topics]\n"
        f"replication_factor = {BROKERS}\n\n"
        "[lake]\n"
        f'catalog = "postgres:{info.catalog.conninfo()}"\n'
        f'catalog_password_file = "{info.catalog.password_file}"\n'
        f'query_catalog = "postgres:{info.catalog.query_conninfo()}"\n'
        f'query_catalog_password_file = "{info.catalog.query_password_file}"\n'
        f'data_path = "{info.data_path}"\n'
        f's3_endpoint = "{info.store.endpoint}"\n'
        f's3_region = "{s3proxy.REGION}"\n'
        f's3_access_key_id = "{s3proxy.ACCESS_KEY_ID}"\n'
        f's3_secret_access_key_file = "{info.store.secret_file}"\n'
        "s3_use_ssl = false\n"
        's3_url_style = "path"\n'
    )


def fetch(state_dir: Path) -> tuple[Path, Path]:
    """The Kafka and the S3Proxy jars (Maven runs only when a cache is stale)."""
    cache = state_dir / "cache"
    return local.ensure_jars(cache / "kafka"), s3proxy.fetch(cache / "s3proxy")


def start(state_dir: Path, *, timeout: float = 180.0) -> ClusterInfo:
    """Start whatever part of the set is not running; return once all answer."""
    kafka_jars, s3_jars = fetch(state_dir)
    # Side by side: three JVMs and a database start in ~25 s together instead of ~40 s.
    with ThreadPoolExecutor(max_workers=3) as pool:
        kafka = pool.submit(
            local.start_cluster, state_dir, jars_dir=kafka_jars, brokers=BROKERS, timeout=timeout
        )
        catalog = pool.submit(postgres.start, state_dir, timeout=timeout)
        store = pool.submit(s3proxy.start, state_dir, jars_dir=s3_jars, timeout=timeout)
        info = ClusterInfo(kafka.result().bootstrap, catalog.result(), store.result())
    settings_file(state_dir).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(settings_file(state_dir), settings_toml(info))
    return info


def stop(state_dir: Path) -> dict[str, bool]:
    """Stop every part; name -> whether it was running."""
    return {
        "kafka": local.stop_cluster(state_dir) > 0,
        "postgres": postgres.stop(state_dir),
        "s3proxy": s3proxy.stop(state_dir),
    }


def discard(state_dir: Path) -> None:
    """Kill every part at once, for a throwaway set whose files are deleted next: a clean stop
    of three brokers (controlled shutdown) took half a minute on a busy machine and keeps
    nothing worth keeping here."""
    layout = local.cluster_layout(state_dir)
    for node in layout.nodes if layout is not None else ():
        with contextlib.suppress(BrokerError):  # not running
            local.kill_node(state_dir, node)
    # Not SIGKILL: a killed postmaster leaves its System V shared memory segment behind.
    postgres.stop(state_dir, immediate=True)
    s3proxy.stop(state_dir)


def status(state_dir: Path) -> dict[str, bool]:
    """Name -> whether that part answers (Kafka: every node's process runs)."""
    nodes = local.cluster_status(state_dir)
    return {
        "kafka": bool(nodes) and all(nodes.values()),
        "postgres": postgres.running(state_dir) is not None,
        "s3proxy": s3proxy.running(state_dir) is not None,
    }


@contextmanager
def temporary(prefix: str, *, timeout: float = 240.0) -> Iterator[tuple[Path, ClusterInfo]]:
    """A set in a fresh private state dir below /tmp, for tests and benchmarks; stopped and
    removed at the end. Yields the state dir and where each part answers."""
    state = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))  # 0700, as check_private wants
    try:
        yield state, start(state, timeout=timeout)
    finally:
        discard(state)
        postgres.remove(state)  # outside the state dir when we are root
        shutil.rmtree(state, ignore_errors=True)


def kafka_env(info: ClusterInfo, name: str) -> dict[str, str]:
    """ANPR_* for one isolated run on the set's brokers: topics and consumer group named after
    ``name``, replication factor 3, metrics on a free port."""
    if not _RUN_NAME.fullmatch(name):
        raise ValueError(f"run name {name!r} is not lower-case letters and digits")
    return {
        "ANPR_KAFKA_BOOTSTRAP_SERVERS": info.bootstrap,
        "ANPR_TOPICS_REPLICATION_FACTOR": str(BROKERS),
        "ANPR_TOPICS_PLATE_READS": f"{name}.plate-reads",
        "ANPR_TOPICS_PASSENGERS": f"{name}.passengers",
        "ANPR_TOPICS_DLQ": f"{name}.dlq",
        "ANPR_TOPICS_WATCHLIST": f"{name}.watchlist",
        "ANPR_TOPICS_WATCHLIST_HITS": f"{name}.watchlist-hits",
        "ANPR_INGEST_CONSUMER_GROUP": f"{name}-ingest",
        "ANPR_INGEST_METRICS_PORT": "0",
    }


def lake_env(info: ClusterInfo, name: str) -> dict[str, str]:
    """ANPR_LAKE_* for one isolated lake on the set: catalog database ``name`` (created here)
    and the object prefix ``name/``. Hosts add their own ANPR_LAKE_PATH and ANPR_STATE_DIR."""
    if not _RUN_NAME.fullmatch(name):
        raise ValueError(f"run name {name!r} is not lower-case letters and digits")
    postgres.create_database(info.catalog, name)
    return {
        "ANPR_LAKE_CATALOG": f"postgres:{info.catalog.conninfo(name)}",
        "ANPR_LAKE_CATALOG_PASSWORD_FILE": str(info.catalog.password_file),
        "ANPR_LAKE_QUERY_CATALOG": f"postgres:{info.catalog.query_conninfo(name)}",
        "ANPR_LAKE_QUERY_CATALOG_PASSWORD_FILE": str(info.catalog.query_password_file),
        "ANPR_LAKE_DATA_PATH": f"{info.data_path}{name}/",
        "ANPR_LAKE_S3_ENDPOINT": info.store.endpoint,
        "ANPR_LAKE_S3_REGION": s3proxy.REGION,
        "ANPR_LAKE_S3_ACCESS_KEY_ID": s3proxy.ACCESS_KEY_ID,
        "ANPR_LAKE_S3_SECRET_ACCESS_KEY_FILE": str(info.store.secret_file),
        "ANPR_LAKE_S3_USE_SSL": "false",
        "ANPR_LAKE_S3_URL_STYLE": "path",
    }
