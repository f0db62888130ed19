"""The ``anpr`` command: parse arguments, configure logging, call the stage entry points.

Exit codes: 0 success, 2 usage or configuration error, 1 any other failure.
Nothing here holds pipeline logic; each command is a few lines that call into a stage package.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline import __version__
from pipeline.config import Settings, load_settings
from pipeline.errors import PipelineError, UsageError

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
  anpr query --purpose "training" "SELECT site_id, count(*) FROM plate_reads GROUP BY 1"

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
    _sub(actions, "stop", "stop the broker this tool started", "Stop the local broker (by its pid file) and wait for it to exit.", _kafka_stop)
    _sub(actions, "status", "exit 0 if the broker answers, 1 if not", "Report whether the broker at the bootstrap address answers.", _kafka_status)
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
