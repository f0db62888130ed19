"""``anpr kafka``: a local broker (or a local three-node cluster) for development and tests."""

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
    start.add_argument(
        "--brokers",
        type=int,
        default=1,
        choices=(1, 3),
        help="3: a cluster of three broker/controller nodes on free ports (replication "
        "factor 3, min.insync.replicas 2; state in <state>/kafka-cluster); its bootstrap list "
        "is printed and written to <state>/kafka-cluster/layout.json",
    )
    sub(
        actions,
        "stop",
        "stop the broker (and the local cluster) this tool started",
        "Stop the local broker and the local cluster (by their pid files) and wait for them\n"
        "to exit.",
        run_stop,
    )
    status = sub(
        actions,
        "status",
        "exit 0 if the broker answers, 1 if not",
        "Report whether the broker at the bootstrap address answers (with --brokers 3:\n"
        "whether every node of the local cluster runs and the cluster answers).",
        run_status,
    )
    status.add_argument("--brokers", type=int, default=1, choices=(1, 3), help="as for start")
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
    if args.brokers > 1:
        # Longer default: three JVMs start side by side on a small machine.
        timeout = max(args.timeout, 120.0)
        layout = local.start_cluster(
            settings.state.dir, jars_dir=jars, brokers=args.brokers, timeout=timeout
        )
        print(f"kafka cluster running at {layout.bootstrap} ({args.brokers} brokers)")
        return EXIT_OK
    pid = local.start(
        settings.state.dir, settings.kafka.bootstrap_servers, jars_dir=jars, timeout=args.timeout
    )
    print(f"kafka running at {settings.kafka.bootstrap_servers} (pid {pid})")
    return EXIT_OK


def run_stop(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.kafka import local

    stopped = local.stop(settings.state.dir)
    nodes = local.stop_cluster(settings.state.dir)
    if nodes:
        print(f"kafka cluster stopped ({nodes} brokers)")
    print("kafka stopped" if stopped else "kafka was not running")
    return EXIT_OK


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.kafka import local

    if args.brokers > 1:
        layout = local.cluster_layout(settings.state.dir)
        nodes = local.cluster_status(settings.state.dir)
        if layout is not None and all(nodes.values()) and local.status(layout.bootstrap):
            print(f"kafka cluster answers at {layout.bootstrap}")
            return EXIT_OK
        print(f"kafka cluster is not up: nodes running {nodes}")
        return EXIT_FAILURE
    if local.status(settings.kafka.bootstrap_servers):
        print(f"kafka answers at {settings.kafka.bootstrap_servers}")
        return EXIT_OK
    print(f"kafka does not answer at {settings.kafka.bootstrap_servers}")
    return EXIT_FAILURE
