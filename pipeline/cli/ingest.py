"""``anpr ingest``: the Kafka-to-lake workers (the hot path)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pipeline.cli._common import (
    EXIT_OK,
    Commands,
    group,
    lake_flag,
    positive,
    private_data,
    registry,
    sub,
)
from pipeline.config import Settings

if TYPE_CHECKING:
    from pipeline.ingest.worker import IngestTotals, RunLimits


def add_parser(commands: Commands) -> None:
    kinds = group(
        commands,
        "ingest",
        "consume from Kafka into the lake (the hot path)",
        "Run an ingest worker. Start several (here or on other machines) with the\n"
        "same consumer group to share the partitions.",
        dest="kind",
        metavar="KIND",
    )
    plates = sub(
        kinds,
        "plates",
        "plate reads from anpr.plate-reads into the plate_reads table",
        "Consume anpr.plate-reads (group anpr-ingest), validate and normalise each batch, and\n"
        "write rows plus the consumed offsets in one lake transaction: exactly once, across\n"
        "crashes and rebalances. Rejected messages go to anpr.dlq with a reason header; reads\n"
        "already past the retention limit are counted and never stored. SIGTERM or Ctrl-C\n"
        "finishes the current batch, commits it, and exits 0.",
        run_plates,
        epilog="examples:\n"
        "  anpr ingest plates                      # run until stopped\n"
        "  anpr ingest plates --until-idle 10      # drain the backlog, then exit 0",
    )
    _flags(plates, "ingest", 9464)
    passengers = sub(
        kinds,
        "passengers",
        "passenger and crew lists from anpr.passengers into the passengers table",
        "Consume anpr.passengers (group anpr-ingest-passengers): one message per departure,\n"
        "as passenger_list/1 JSON or UN/EDIFACT PAXLST (recognised by UNA/UNB). Each person\n"
        "becomes one row (names upper-cased, vehicle plate normalised like ANPR plates so the\n"
        "two tables join); fields not in passengers.kept_fields are dropped at ingest. Rows\n"
        "and offsets are committed in one lake transaction; rejected lists go to anpr.dlq\n"
        "with a reason (malformed_edifact, control_total_mismatch, malformed_json, ...).\n"
        "SIGTERM or Ctrl-C finishes the current batch, commits it, and exits 0.",
        run_passengers,
        epilog="examples:\n"
        "  anpr ingest passengers                      # run until stopped\n"
        "  anpr ingest passengers --until-idle 10      # drain the backlog, then exit 0",
    )
    _flags(passengers, "passengers", 9465)


def _flags(parser: argparse.ArgumentParser, section: str, port: int) -> None:
    parser.add_argument(
        "--until-idle",
        type=positive(float),
        default=None,
        metavar="SECONDS",
        help="exit 0 once no message has arrived for this long (all committed)",
    )
    parser.add_argument(
        "--max-messages",
        type=positive(int),
        default=None,
        metavar="N",
        help="exit after N messages",
    )
    parser.add_argument(
        "--metrics-port",
        dest=f"{section}__metrics_port",
        type=int,
        default=None,
        help=f"port of /metrics (default from settings, {port}); 0 disables it",
    )
    lake_flag(parser)
    parser.add_argument(
        "--batch-size", dest=f"{section}__batch_size", type=int, default=None, help="max batch"
    )


def run_plates(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.ingest import run

    sites = registry(settings)  # validated before anything connects
    private_data(settings)
    return _report(run.run_plates(settings, sites, _limits(args)))


def run_passengers(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.ingest import run

    private_data(settings)
    return _report(run.run_passengers(settings, _limits(args)))


def _limits(args: argparse.Namespace) -> RunLimits:
    from pipeline.ingest.worker import RunLimits

    return RunLimits(args.until_idle, args.max_messages)


def _report(totals: IngestTotals) -> int:
    print(
        f"consumed {totals.consumed}: stored {totals.written}, rejected {totals.rejected}, "
        f"expired on arrival {totals.expired}, duplicates {totals.duplicates}, "
        f"erased {totals.erased} in {totals.batches} batches"
    )
    return EXIT_OK
