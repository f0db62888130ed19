"""``anpr demo``: the main job, end to end, in a few minutes."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli._common import (
    EXIT_OK,
    Commands,
    jars_dir,
    private_data,
    progress_line,
    registry,
    sub,
)
from pipeline.config import Settings
from pipeline.errors import UsageError


def add_parser(commands: Commands) -> None:
    demo = sub(
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
        run,
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


def run(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console

    from pipeline.demo import DemoOptions, run_demo
    from pipeline.kafka import local

    if not 1 <= args.days <= 14 or args.passages_per_hour <= 0:
        raise UsageError("--days must be within 1..14 and --passages-per-hour above 0")
    if not 0.0 <= args.bad_ratio <= 1.0:
        raise UsageError("--bad-ratio must be within 0..1")
    private_data(settings)
    run_demo(
        settings,
        registry(settings),
        DemoOptions(
            days=args.days,
            passages_per_hour=args.passages_per_hour,
            bad_ratio=args.bad_ratio,
            keep_running=args.keep_running,
            seed=args.seed,
            config=args.config,
            report_dir=args.report_dir,
        ),
        jars_dir=lambda: local.ensure_jars(jars_dir(settings), progress=progress_line),
        console=Console(),
    )
    return EXIT_OK
