"""``anpr kafka``: a local single-node broker for development and tests."""

from __future__ import annotations

import argparse

from pipeline.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    Commands,
    group,
    jars_dir,
    private_data,
    progress_line,
    sub,
)
from pipeline.config import Settings


def add_parser(commands: Commands) -> None:
    actions = group(
        commands,
        "kafka",
        "run a local Apache Kafka broker for development and tests",
        "Control a local single-node Apache Kafka 4.x broker (KRaft, broker and controller\n"
        "in one JVM) on loopback. Its jars come from Maven Central through Maven, once,\n"
        "into a cache under the state directory; afterwards it starts offline. Data, logs\n"
        "and the pid file live under ANPR_STATE_DIR (default ./.anpr). The port comes from\n"
        "ANPR_KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092).\n\n"
        "For a production cluster, do not use this: point ANPR_KAFKA_BOOTSTRAP_SERVERS at\n"
        "it and pass security settings through (see README).",
    )
    start = sub(
        actions,
        "start",
        "start the broker and wait until it answers (idempotent)",
        "Start the local broker and return once a client can reach it. If it is already\n"
        "running, exit 0 at once. Fails with the tail of the broker log after --timeout.",
        run_start,
    )
    start.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it")
    sub(
        actions,
        "stop",
        "stop the broker this tool started",
        "Stop the local broker (by its pid file) and wait for it to exit.",
        run_stop,
    )
    sub(
        actions,
        "status",
        "exit 0 if the broker answers, 1 if not",
        "Report whether the broker at the bootstrap address answers.",
        run_status,
    )
    sub(
        actions,
        "fetch",
        "download the broker jars into the cache (done by `make setup`)",
        "Fetch the Kafka broker jars from Maven Central into the cache directory.\n"
        "Does nothing (and needs no network) when they are already there.",
        run_fetch,
    )


def run_fetch(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.kafka import local

    path = local.ensure_jars(jars_dir(settings), progress=progress_line)
    print(f"kafka jars ready in {path}")
    return EXIT_OK


def run_start(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.kafka import local

    private_data(settings, lake=False)  # the broker's segments hold plates and passengers
    jars = local.ensure_jars(jars_dir(settings), progress=progress_line)
    pid = local.start(
        settings.state.dir, settings.kafka.bootstrap_servers, jars_dir=jars, timeout=args.timeout
    )
    print(f"kafka running at {settings.kafka.bootstrap_servers} (pid {pid})")
    return EXIT_OK


def run_stop(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.kafka import local

    stopped = local.stop(settings.state.dir)
    print("kafka stopped" if stopped else "kafka was not running")
    return EXIT_OK


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.kafka import local

    if local.status(settings.kafka.bootstrap_servers):
        print(f"kafka answers at {settings.kafka.bootstrap_servers}")
        return EXIT_OK
    print(f"kafka does not answer at {settings.kafka.bootstrap_servers}")
    return EXIT_FAILURE
