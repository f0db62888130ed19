"""The ``anpr`` command: parse arguments, configure logging, call the stage entry points.

Exit codes: 0 success, 2 usage or configuration error, 1 any other failure.
Nothing here holds pipeline logic; each command is a few lines that call into a stage package.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import __version__
from pipeline.config import Settings, load_settings
from pipeline.errors import PipelineError, UsageError

if TYPE_CHECKING:
    from pipeline.ingest.worker import LakeIngestor
    from pipeline.lake.catalog import Lake
    from pipeline.metrics import IngestMetrics
    from pipeline.reference.sites import SiteRegistry

logger = logging.getLogger("pipeline.cli")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

Handler = Callable[[argparse.Namespace, Settings], int]

_MAIN_HELP = """\
ANPR border-passage pipeline.

Cameras publish plate reads to Kafka; ingest workers validate them and write a DuckLake
lake that analysts query with DuckDB. ANPR data may be kept at most 6 months after
collection; the nightly `anpr maintain` enforces that.

Configuration: --config FILE (default ./anpr.toml if present), overridden by
ANPR_<SECTION>_<KEY> environment variables (e.g. ANPR_KAFKA_BOOTSTRAP_SERVERS,
ANPR_LAKE_PATH, ANPR_STATE_DIR), overridden by flags.
"""

_MAIN_EPILOG = """\
first steps:
  anpr kafka start            start a local single-node Kafka broker (state in ./.anpr)
  anpr topics create          create the pipeline's topics
  anpr simulate plates --count 10000
  anpr ingest plates --until-idle 5
  anpr live                   watchlist hits, live traffic, camera silence
  anpr query --reason control "SELECT site_id, count(*) FROM plate_reads GROUP BY 1"

exit codes: 0 ok, 1 failure, 2 usage or configuration error.
"""


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep our paragraphs and examples as written, and show defaults."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anpr", description=_MAIN_HELP, epilog=_MAIN_EPILOG, formatter_class=_Formatter
    )
    parser.add_argument("--version", action="version", version=f"anpr {__version__}")
    parser.add_argument(
        "--config", type=Path, default=None, help="TOML settings file (default: ./anpr.toml)"
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("ANPR_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity on stderr; personal data is never logged at INFO or above",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_kafka(commands)
    _add_topics(commands)
    _add_config(commands)
    _add_simulate(commands)
    _add_ingest(commands)
    from pipeline.cli_access import register as _reg_access

    _reg_access(commands)
    _add_schemas(commands)
    _add_demo(commands)
    from pipeline.cli_maintain import register as _reg_maintain

    _reg_maintain(commands)
    from pipeline.cli_live import register as _reg_live

    _reg_live(commands)
    return parser


def _sub(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    description: str,
    handler: Handler,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    sub = commands.add_parser(
        name,
        help=help_text,
        description=description,
        epilog=epilog,
        formatter_class=_Formatter,
    )
    sub.set_defaults(handler=handler)
    return sub


# --- kafka -------------------------------------------------------------------------------


def _add_kafka(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kafka = commands.add_parser(
        "kafka",
        help="run a local Apache Kafka broker for development and tests",
        description=(
            "Control a local single-node Apache Kafka 4.x broker (KRaft, broker and controller\n"
            "in one JVM) on loopback. Its jars come from Maven Central through Maven, once,\n"
            "into a cache under the state directory; afterwards it starts offline. Data, logs\n"
            "and the pid file live under ANPR_STATE_DIR (default ./.anpr). The port comes from\n"
            "ANPR_KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092).\n\n"
            "For a production cluster, do not use this: point ANPR_KAFKA_BOOTSTRAP_SERVERS at\n"
            "it and pass security settings through (see README)."
        ),
        formatter_class=_Formatter,
    )
    actions = kafka.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = _sub(
        actions,
        "start",
        "start the broker and wait until it answers (idempotent)",
        "Start the local broker and return once a client can reach it. If it is already\n"
        "running, exit 0 at once. Fails with the tail of the broker log after --timeout.",
        _kafka_start,
    )
    start.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it")
    _sub(
        actions,
        "stop",
        "stop the broker this tool started",
        "Stop the local broker (by its pid file) and wait for it to exit.",
        _kafka_stop,
    )
    _sub(
        actions,
        "status",
        "exit 0 if the broker answers, 1 if not",
        "Report whether the broker at the bootstrap address answers.",
        _kafka_status,
    )
    _sub(
        actions,
        "fetch",
        "download the broker jars into the cache (done by `make setup`)",
        "Fetch the Kafka broker jars from Maven Central into the cache directory.\n"
        "Does nothing (and needs no network) when they are already there.",
        _kafka_fetch,
    )


def _jars_dir(settings: Settings) -> Path:
    return settings.state.dir / "cache" / "kafka"


def _kafka_fetch(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.kafka import local

    path = local.ensure_jars(_jars_dir(settings), progress=_progress_line)
    print(f"kafka jars ready in {path}")
    return EXIT_OK


def _kafka_start(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.kafka import local

    jars = local.ensure_jars(_jars_dir(settings), progress=_progress_line)
    pid = local.start(
        settings.state.dir, settings.kafka.bootstrap_servers, jars_dir=jars, timeout=args.timeout
    )
    print(f"kafka running at {settings.kafka.bootstrap_servers} (pid {pid})")
    return EXIT_OK


def _kafka_stop(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.kafka import local

    stopped = local.stop(settings.state.dir)
    print("kafka stopped" if stopped else "kafka was not running")
    return EXIT_OK


def _kafka_status(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.kafka import local

    if local.status(settings.kafka.bootstrap_servers):
        print(f"kafka answers at {settings.kafka.bootstrap_servers}")
        return EXIT_OK
    print(f"kafka does not answer at {settings.kafka.bootstrap_servers}")
    return EXIT_FAILURE


def _progress_line(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- topics ------------------------------------------------------------------------------


def _add_topics(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    topics = commands.add_parser(
        "topics",
        help="create the pipeline's Kafka topics",
        description="Manage the pipeline's Kafka topics.",
        formatter_class=_Formatter,
    )
    actions = topics.add_subparsers(dest="action", metavar="ACTION", required=True)
    _sub(
        actions,
        "create",
        "create missing topics (idempotent)",
        "Create anpr.plate-reads, anpr.passengers, anpr.dlq, anpr.watchlist (compacted) and\n"
        "anpr.watchlist-hits with the configured partitions. Topics holding personal data get\n"
        "retention.ms = topics.personal_retention_ms (default 7 days); a configured value at or\n"
        "above the legal limit is refused before anything is created. Existing topics are\n"
        "left unchanged and reported as such.",
        _topics_create,
    )


def _topics_create(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.kafka.admin import create_topics

    for name, state in sorted(create_topics(settings).items()):
        print(f"{name}: {state}")
    return EXIT_OK


# --- config ------------------------------------------------------------------------------


def _add_config(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _sub(
        commands,
        "config",
        "print the effective settings (secrets masked)",
        "Print the settings after the TOML file, ANPR_* variables and flags are applied.\n"
        "Secrets (passwords, keys, tokens) are shown as ********.",
        _config_show,
    )


def _config_show(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(settings.redacted(), indent=2, ensure_ascii=False))
    return EXIT_OK


# --- simulate ----------------------------------------------------------------------------


def _add_simulate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="send synthetic camera traffic to Kafka",
        description="Generate synthetic traffic. All plates are random; none is a real vehicle's.",
        formatter_class=_Formatter,
    )
    kinds = simulate.add_subparsers(dest="kind", metavar="KIND", required=True)
    plates = _sub(
        kinds,
        "plates",
        "plate reads from the registered cameras",
        "Send synthetic plate reads (canonical plate_read/1) to anpr.plate-reads, keyed by\n"
        "site id: a diurnal curve, weekend shopping round trips Norway-Sweden, foreign plates\n"
        "in their countries' formats, front and rear cameras per lane, a few retransmissions,\n"
        "and, with --bad-ratio, hostile input (broken JSON, unknown sites, impossible times).",
        _simulate_plates,
        epilog="examples:\n"
        "  anpr simulate plates --count 100000 --start 2026-11-01T00:00:00Z --bad-ratio 0.01\n"
        "  anpr simulate plates --rate 200 --count 12000      # a live minute-by-minute feed",
    )
    plates.add_argument("--count", type=int, default=10_000, help="reads to send")
    plates.add_argument(
        "--rate", type=float, default=0.0, help="reads per second; 0 sends as fast as possible"
    )
    plates.add_argument(
        "--start",
        type=_utc_time,
        default=None,
        help="capture time of the first read (RFC 3339, with zone); default: so that the "
        "backlog ends now, or with --rate, the wall clock",
    )
    plates.add_argument("--bad-ratio", type=float, default=0.0, help="share of hostile input")
    plates.add_argument("--seed", type=int, default=1, help="random seed (same seed, same feed)")
    plates.add_argument(
        "--passages-per-hour", type=float, default=1500.0, help="mean traffic over all sites"
    )
    plates.add_argument(
        "--formats",
        type=_formats,
        default=("canonical",),
        help="comma-separated camera formats that send: canonical, openalpr, "
        "platerecognizer, hikvision, genetec (cameras registered with each)",
    )

    passengers = _sub(
        kinds,
        "passengers",
        "passenger and crew lists of ferry departures",
        "Send synthetic passenger lists to anpr.passengers, keyed carrier:voyage, mixed\n"
        "passenger_list/1 JSON and UN/EDIFACT PAXLST (varied separators, some with UNG\n"
        "groups, some with a crew list in the same interchange). Departures are built from the\n"
        "vehicles that `anpr simulate plates` with the same --seed, --start and --plate-reads\n"
        "sends leaving Norway through ferry terminals, so plates in the lists match plate\n"
        "reads at the terminal before departure. Names are invented syllables: no real person.",
        _simulate_passengers,
        epilog="example (the two feeds match):\n"
        "  anpr simulate plates --count 20000 --start 2026-11-20T00:00:00Z --seed 5\n"
        "  anpr simulate passengers --plate-reads 20000 --start 2026-11-20T00:00:00Z --seed 5",
    )
    passengers.add_argument("--count", type=int, default=1000, help="departures at most")
    passengers.add_argument(
        "--plate-reads", type=int, default=10_000, help="plate reads of the matching plate run"
    )
    passengers.add_argument(
        "--start", type=_utc_time, required=True, help="the --start of the matching plate run"
    )
    passengers.add_argument("--seed", type=int, default=1, help="the --seed of the plate run")
    passengers.add_argument(
        "--paxlst-ratio", type=float, default=0.5, help="share of lists sent as PAXLST"
    )
    passengers.add_argument(
        "--bad-ratio",
        type=float,
        default=0.0,
        help="share of departures that send a broken list instead (rejected to the DLQ)",
    )
    passengers.add_argument(
        "--formats",
        type=_formats,
        default=("canonical",),
        help="the --formats of the plate run (which cameras send decides the traffic)",
    )


def _formats(text: str) -> tuple[str, ...]:
    from pipeline.codec.vendors import VENDORS

    chosen = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [f for f in chosen if f not in VENDORS]
    if not chosen or unknown:
        raise argparse.ArgumentTypeError(f"formats must be among {', '.join(VENDORS)}")
    return chosen


def _utc_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no zone: add Z or an offset like +01:00")
    return value


def _registry(settings: Settings) -> SiteRegistry:
    from pipeline.codec.vendors import VENDOR_RULES
    from pipeline.reference.sites import DEFAULT_REGISTRY, load_registry

    return load_registry(settings.ingest.sites_registry or DEFAULT_REGISTRY, VENDOR_RULES)


def _simulate_plates(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.kafka.clients import make_producer
    from pipeline.simulate.produce import simulate_plates

    if args.count < 0 or not 0.0 <= args.bad_ratio <= 1.0 or args.rate < 0:
        raise UsageError("--count and --rate must be >= 0 and --bad-ratio within 0..1")
    producer = make_producer(settings, **{"linger.ms": 20, "batch.size": 1_000_000})
    with _progress_bar("simulating plate reads", args.count) as advance:
        summary = simulate_plates(
            producer,
            settings.topics.plate_reads,
            _registry(settings),
            count=args.count,
            rate=args.rate,
            start=args.start,
            bad_ratio=args.bad_ratio,
            seed=args.seed,
            passages_per_hour=args.passages_per_hour,
            formats=args.formats,
            progress=advance,
        )
    print(
        f"sent {summary.produced} reads to {settings.topics.plate_reads} "
        f"({summary.hostile} hostile), captured {summary.first_captured_at} .. "
        f"{summary.last_captured_at}"
    )
    return EXIT_OK


def _simulate_passengers(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.kafka.clients import make_producer
    from pipeline.simulate.passengers import simulate_passengers

    ratios = (args.paxlst_ratio, args.bad_ratio)
    if args.count < 0 or args.plate_reads < 0 or not all(0.0 <= r <= 1.0 for r in ratios):
        raise UsageError(
            "--count and --plate-reads must be >= 0, --paxlst-ratio and --bad-ratio within 0..1"
        )
    producer = make_producer(settings, **{"message.max.bytes": 4 * 1024 * 1024})
    with _progress_bar("simulating departures", args.count) as advance:
        summary = simulate_passengers(
            producer,
            settings.topics.passengers,
            _registry(settings),
            count=args.count,
            start=args.start,
            seed=args.seed,
            plate_reads=args.plate_reads,
            paxlst_ratio=args.paxlst_ratio,
            formats=args.formats,
            bad_ratio=args.bad_ratio,
            progress=advance,
        )
    print(
        f"sent {summary.messages} lists ({summary.json_messages} JSON, "
        f"{summary.paxlst_messages} PAXLST, {summary.hostile} broken on purpose) with "
        f"{summary.people} people to {settings.topics.passengers}"
    )
    return EXIT_OK


# --- ingest ------------------------------------------------------------------------------


def _add_ingest(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ingest = commands.add_parser(
        "ingest",
        help="consume from Kafka into the lake (the hot path)",
        description="Run an ingest worker. Start several (here or on other machines) with the\n"
        "same consumer group to share the partitions.",
        formatter_class=_Formatter,
    )
    kinds = ingest.add_subparsers(dest="kind", metavar="KIND", required=True)
    plates = _sub(
        kinds,
        "plates",
        "plate reads from anpr.plate-reads into the plate_reads table",
        "Consume anpr.plate-reads (group anpr-ingest), validate and normalise each batch, and\n"
        "write rows plus the consumed offsets in one lake transaction: exactly once, across\n"
        "crashes and rebalances. Rejected messages go to anpr.dlq with a reason header; reads\n"
        "already past the retention limit are counted and never stored. SIGTERM or Ctrl-C\n"
        "finishes the current batch, commits it, and exits 0.",
        _ingest_plates,
        epilog="examples:\n"
        "  anpr ingest plates                      # run until stopped\n"
        "  anpr ingest plates --until-idle 10      # drain the backlog, then exit 0",
    )
    _ingest_flags(plates, "ingest", 9464)
    passengers = _sub(
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
        _ingest_passengers,
        epilog="examples:\n"
        "  anpr ingest passengers                      # run until stopped\n"
        "  anpr ingest passengers --until-idle 10      # drain the backlog, then exit 0",
    )
    _ingest_flags(passengers, "passengers", 9465)


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse type: ``kind`` of the text, refused (exit 2) unless above zero."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _ingest_flags(sub: argparse.ArgumentParser, section: str, port: int) -> None:
    sub.add_argument(
        "--until-idle",
        type=_positive(float),
        default=None,
        metavar="SECONDS",
        help="exit 0 once no message has arrived for this long (all committed)",
    )
    sub.add_argument(
        "--max-messages",
        type=_positive(int),
        default=None,
        metavar="N",
        help="exit after N messages",
    )
    sub.add_argument(
        "--metrics-port",
        dest=f"{section}__metrics_port",
        type=int,
        default=None,
        help=f"port of /metrics (default from settings, {port}); 0 disables it",
    )
    sub.add_argument("--lake", dest="lake__path", type=Path, default=None, help="lake path")
    sub.add_argument(
        "--batch-size", dest=f"{section}__batch_size", type=int, default=None, help="max batch"
    )


def _ingest_plates(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.ingest.worker import PlateIngestor

    registry = _registry(settings)  # validated before anything connects
    return _run_ingest(
        args,
        settings.ingest.metrics_port,
        lambda lake, metrics: PlateIngestor.connect(
            settings, lake=lake, registry=registry, metrics=metrics
        ),
        settings,
    )


def _ingest_passengers(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.ingest.passengers import PassengerIngestor

    return _run_ingest(
        args,
        settings.passengers.metrics_port,
        lambda lake, metrics: PassengerIngestor.connect(settings, lake=lake, metrics=metrics),
        settings,
    )


def _run_ingest(
    args: argparse.Namespace,
    metrics_port: int,
    make: Callable[[Lake, IngestMetrics], LakeIngestor[Any]],
    settings: Settings,
) -> int:
    import signal

    from prometheus_client import CollectorRegistry

    from pipeline.ingest.worker import RunLimits
    from pipeline.kafka.retention_check import check_at_start
    from pipeline.lake.catalog import Lake
    from pipeline.metrics import IngestMetrics, serve

    metrics_registry = CollectorRegistry()
    metrics = IngestMetrics(metrics_registry)
    check_at_start(settings, metrics_registry)  # topic retention above the legal limit?
    serve(metrics_registry, metrics_port)
    with Lake.open(settings.lake.path) as lake:
        ingestor = make(lake, metrics)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: ingestor.request_stop())
        totals = ingestor.run(RunLimits(args.until_idle, args.max_messages))
    print(
        f"consumed {totals.consumed}: stored {totals.written}, rejected {totals.rejected}, "
        f"expired on arrival {totals.expired}, duplicates {totals.duplicates} "
        f"in {totals.batches} batches"
    )
    return EXIT_OK


# --- demo --------------------------------------------------------------------------------


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = _sub(
        commands,
        "demo",
        "the main job, end to end, in a few minutes",
        "Start the local Kafka broker (or reuse it), create the topics, load a small\n"
        "watchlist, send the ferry departures' passenger lists (JSON and PAXLST), and run\n"
        "`anpr ingest plates`, `anpr ingest passengers` and `anpr live` as child processes\n"
        "while the cameras of every vendor format send --days of synthetic border traffic\n"
        "(road and ferry, about 1 % hostile input; --bad-ratio also breaks that share of the\n"
        "lists), compressed in time. Then run `anpr maintain` with --as-of stepping through\n"
        "the days, print a summary (rows per table, people by role and format, rejects by\n"
        "feed and reason, watchlist hits, statistics, retention), write an HTML report with\n"
        "charts, and print three queries to paste (the last: the ferry join, as investigator).\n\n"
        "Rerunning continues on the same broker, topics and lake with new traffic; nothing is\n"
        "stored twice. `make clean` starts over. Child process logs and the report go to\n"
        "<state.dir>/demo/.",
        _demo,
        epilog="examples:\n"
        "  anpr demo                          # about 4 days, ~200k reads\n"
        "  anpr demo --days 2 --passages-per-hour 300\n"
        "  anpr demo --keep-running           # leave the broker and anpr live up",
    )
    demo.add_argument("--days", type=int, default=4, help="days of traffic to simulate")
    demo.add_argument(
        "--passages-per-hour",
        type=float,
        default=1200.0,
        help="mean passages per hour over all crossings (each read by 1-2 cameras)",
    )
    demo.add_argument("--bad-ratio", type=float, default=0.01, help="share of hostile input")
    demo.add_argument("--seed", type=int, default=None, help="random seed (default: the clock)")
    demo.add_argument(
        "--report-dir",
        type=Path,
        default=None,
        help="where to write the report (default <state.dir>/demo/report)",
    )
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the broker and the live app up for exploration (prints how to stop them)",
    )


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console

    from pipeline.demo import DemoOptions, run_demo
    from pipeline.kafka import local

    if not 1 <= args.days <= 14 or args.passages_per_hour <= 0:
        raise UsageError("--days must be within 1..14 and --passages-per-hour above 0")
    if not 0.0 <= args.bad_ratio <= 1.0:
        raise UsageError("--bad-ratio must be within 0..1")
    run_demo(
        settings,
        _registry(settings),
        DemoOptions(
            days=args.days,
            passages_per_hour=args.passages_per_hour,
            bad_ratio=args.bad_ratio,
            keep_running=args.keep_running,
            seed=args.seed,
            config=args.config,
            report_dir=args.report_dir,
        ),
        jars_dir=lambda: local.ensure_jars(_jars_dir(settings), progress=_progress_line),
        console=Console(),
    )
    return EXIT_OK


# --- schemas -----------------------------------------------------------------------------


def _add_schemas(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schemas = commands.add_parser(
        "schemas",
        help="write or check the schema files under schemas/",
        description="The JSON Schema for producers (schemas/plate_read-1.schema.json) and the\n"
        "lake table descriptions are generated from pipeline/schemas.py, the one source of\n"
        "truth that the decoder enforces.",
        formatter_class=_Formatter,
    )
    actions = schemas.add_subparsers(dest="action", metavar="ACTION", required=True)
    _sub(actions, "write", "regenerate the files", "Regenerate schemas/*.json.", _schemas_write)
    _sub(
        actions,
        "check",
        "exit 1 if a file is stale",
        "Exit 1 naming every schemas/ file that differs from the code.",
        _schemas_check,
    )


def _schemas_write(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline import schema_files

    for path in schema_files.write():
        print(f"wrote {path}")
    return EXIT_OK


def _schemas_check(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline import schema_files

    stale = schema_files.stale()
    for name in stale:
        print(f"stale: schemas/{name} (run `anpr schemas write`)")
    return EXIT_FAILURE if stale else EXIT_OK


# --- progress ----------------------------------------------------------------------------


@contextlib.contextmanager
def _progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on a terminal; a line per 10 % when stderr is a file or pipe."""
    if sys.stderr.isatty():
        from rich.progress import Progress

        with Progress(transient=False) as progress:
            task = progress.add_task(description, total=total)
            yield lambda done: progress.update(task, completed=done)
        return
    step = max(total // 10, 1)
    state = {"next": step}

    def line(done: int) -> None:
        if done >= state["next"] or done == total:
            print(f"{description}: {done}/{total}", file=sys.stderr, flush=True)
            state["next"] = done + step

    yield line


# --- entry point -------------------------------------------------------------------------


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    """Flags that override settings: any argument whose dest is ``section__field``."""
    return {
        name.replace("__", ".", 1): value
        for name, value in vars(args).items()
        if "__" in name and not name.startswith("_")
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging(args.log_level)
    try:
        settings = load_settings(args.config, overrides=_overrides(args))
        handler: Handler = args.handler
        return handler(args, settings)
    except UsageError as exc:
        print(f"anpr: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PipelineError as exc:
        print(f"anpr: failed: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("anpr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
