"""The ``anpr`` command: parse arguments, configure logging, call the stage entry points.

Exit codes: 0 success, 2 usage or configuration error, 1 any other failure.
Nothing here holds pipeline logic: each module of this package registers one command (group)
and its handlers import their stage package only when called, so `anpr --help` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline import __version__
from pipeline.cli import (
    access,
    cluster,
    config,
    demo,
    ingest,
    kafka,
    live,
    maintain,
    schemas,
    serve,
    simulate,
    subject,
    topics,
)
from pipeline.cli._common import EXIT_FAILURE, EXIT_USAGE, Command, Formatter, Handler
from pipeline.config import ENV_PREFIX, load_settings
from pipeline.errors import PipelineError, UsageError
from pipeline.files import private_files

ACCESS_ENV_PREFIX = f"{ENV_PREFIX}ACCESS_"

# In the order `anpr --help` lists them.
COMMANDS: tuple[Command, ...] = (
    kafka,
    cluster,
    topics,
    config,
    simulate,
    ingest,
    access,
    subject,
    serve,
    schemas,
    demo,
    maintain,
    live,
)

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


def build_parser() -> argparse.ArgumentParser:
    """The ``anpr`` parser with every command; imports no stage package."""
    parser = argparse.ArgumentParser(
        prog="anpr", description=_MAIN_HELP, epilog=_MAIN_EPILOG, formatter_class=Formatter
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
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


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


def _ignored_access_variables() -> None:
    """Say so when a client's environment tries to set access rules: only the service's
    configuration sets them (ADR 0004)."""
    names = sorted(n for n in os.environ if n.startswith(ACCESS_ENV_PREFIX))
    if names:
        print(
            f"anpr: note: {', '.join(names)} ignored: access rules are the query service's "
            "own configuration",
            file=sys.stderr,
        )


def main(argv: Sequence[str] | None = None) -> int:
    # Whatever the caller's umask: files 0600, folders 0700. Every writer of personal data
    # (ingest, maintain, serve, the local broker it starts) inherits this.
    private_files()
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.log_level)
    try:
        client = getattr(args, "client", False)
        if client:
            _ignored_access_variables()
        settings = load_settings(
            args.config,
            overrides=_overrides(args),
            ignore_sections=("access",) if client else (),
        )
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
