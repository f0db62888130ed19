"""``anpr cluster``: the local production-shaped set (three Kafka brokers, PostgreSQL, S3Proxy)."""

from __future__ import annotations

import argparse

from pipeline.cli._common import EXIT_FAILURE, EXIT_OK, Commands, group, progress_line, sub
from pipeline.config import Settings


def add_parser(commands: Commands) -> None:
    actions = group(
        commands,
        "cluster",
        "run a production-shaped set locally: 3 Kafka brokers, PostgreSQL, S3Proxy",
        "Start, stop or check the local production-shaped set for development and tests:\n"
        "a three-node KRaft Kafka cluster (replication factor 3, min.insync.replicas 2),\n"
        "PostgreSQL from Debian's postgresql-15 package for the lake's catalog (initdb in\n"
        "<state>/postgres, run as the system user anpr-db when started as root) and S3Proxy\n"
        "(filesystem backend in <state>/s3) for the lake's data files. Every part listens on\n"
        "127.0.0.1 on free ports chosen at the first start.\n\n"
        "`start` writes <state>/cluster/anpr.toml: run the pipeline on the set with\n"
        "`anpr --config <state>/cluster/anpr.toml ...`. Passwords stay in files it names.",
    )
    start = sub(
        actions,
        "start",
        "start every part that is not running; wait until all answer (idempotent)",
        "Start the parts of the set that are not running (a killed broker, a stopped\n"
        "database) and return once every part answers a client.",
        run_start,
    )
    start.add_argument("--timeout", type=float, default=180.0, help="seconds to wait")
    sub(actions, "stop", "stop every part cleanly", "Stop every part of the set.", run_stop)
    sub(
        actions,
        "status",
        "exit 0 if every part answers, 1 if not",
        "Report which parts of the set answer.",
        run_status,
    )
    sub(
        actions,
        "fetch",
        "download the Kafka and S3Proxy jars into the cache",
        "Fetch the Kafka and S3Proxy jars from Maven Central into the cache directory.\n"
        "Does nothing (and needs no network) when they are already there.",
        run_fetch,
    )


def run_fetch(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.cluster import control

    progress_line("checking the Kafka and S3Proxy jars")
    kafka, s3 = control.fetch(settings.state.dir)
    print(f"jars ready in {kafka} and {s3}")
    return EXIT_OK


def run_start(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.cluster import control

    info = control.start(settings.state.dir, timeout=args.timeout)
    print(f"kafka     {info.bootstrap}")
    print(f"postgres  {info.catalog.conninfo()}")
    print(f"s3        http://{info.store.endpoint} {info.data_path}")
    print(f"settings  {control.settings_file(settings.state.dir)}")
    return EXIT_OK


def run_stop(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.cluster import control

    for name, was in control.stop(settings.state.dir).items():
        print(f"{name}: {'stopped' if was else 'was not running'}")
    return EXIT_OK


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.cluster import control

    parts = control.status(settings.state.dir)
    for name, up in parts.items():
        print(f"{name}: {'up' if up else 'down'}")
    return EXIT_OK if all(parts.values()) else EXIT_FAILURE
