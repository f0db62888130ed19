"""``anpr simulate``: synthetic camera traffic and ferry passenger lists to Kafka."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator

from pipeline.cli._common import (
    EXIT_OK,
    Commands,
    formats,
    group,
    registry,
    sub,
    utc_time,
)
from pipeline.config import Settings
from pipeline.errors import UsageError


def add_parser(commands: Commands) -> None:
    kinds = group(
        commands,
        "simulate",
        "send synthetic camera traffic to Kafka",
        "Generate synthetic traffic. All plates are random; none is a real vehicle's.",
        dest="kind",
        metavar="KIND",
    )
    plates = sub(
        kinds,
        "plates",
        "plate reads from the registered cameras",
        "Send synthetic plate reads (canonical plate_read/1) to anpr.plate-reads, keyed by\n"
        "site id: a diurnal curve, weekend shopping round trips Norway-Sweden, foreign plates\n"
        "in their countries' formats, front and rear cameras per lane, a few retransmissions,\n"
        "and, with --bad-ratio, hostile input (broken JSON, unknown sites, impossible times).",
        run_plates,
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
        type=utc_time,
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
        type=formats,
        default=("canonical",),
        help="comma-separated camera formats that send: canonical, openalpr, "
        "platerecognizer, hikvision, genetec (cameras registered with each)",
    )

    passengers = sub(
        kinds,
        "passengers",
        "passenger and crew lists of ferry departures",
        "Send synthetic passenger lists to anpr.passengers, keyed carrier:voyage, mixed\n"
        "passenger_list/1 JSON and UN/EDIFACT PAXLST (varied separators, some with UNG\n"
        "groups, some with a crew list in the same interchange). Departures are built from the\n"
        "vehicles that `anpr simulate plates` with the same --seed, --start and --plate-reads\n"
        "sends leaving Norway through ferry terminals, so plates in the lists match plate\n"
        "reads at the terminal before departure. Names are invented syllables: no real person.",
        run_passengers,
        epilog="example (the two feeds match):\n"
        "  anpr simulate plates --count 20000 --start 2026-11-20T00:00:00Z --seed 5\n"
        "  anpr simulate passengers --plate-reads 20000 --start 2026-11-20T00:00:00Z --seed 5",
    )
    passengers.add_argument("--count", type=int, default=1000, help="departures at most")
    passengers.add_argument(
        "--plate-reads", type=int, default=10_000, help="plate reads of the matching plate run"
    )
    passengers.add_argument(
        "--start", type=utc_time, required=True, help="the --start of the matching plate run"
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
        type=formats,
        default=("canonical",),
        help="the --formats of the plate run (which cameras send decides the traffic)",
    )


def run_plates(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.kafka.clients import make_producer
    from pipeline.simulate.produce import simulate_plates

    if args.count < 0 or not 0.0 <= args.bad_ratio <= 1.0 or args.rate < 0:
        raise UsageError("--count and --rate must be >= 0 and --bad-ratio within 0..1")
    producer = make_producer(settings, **{"linger.ms": 20, "batch.size": 1_000_000})
    with _progress_bar("simulating plate reads", args.count) as advance:
        summary = simulate_plates(
            producer,
            settings.topics.plate_reads,
            registry(settings),
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


def run_passengers(args: argparse.Namespace, settings: Settings) -> int:
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
            registry(settings),
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
