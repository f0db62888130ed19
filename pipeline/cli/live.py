"""``anpr live``: the faust-streaming live app (watchlist hits, live traffic, camera silence)."""

from __future__ import annotations

import argparse

from pipeline.cli._common import EXIT_OK, Commands, registry, sub
from pipeline.config import Settings

_DESCRIPTION = """\
Run the live app (faust-streaming, consumer group anpr-live) beside the ingest workers:

- watchlist: entries from the compacted topic anpr.watchlist (key = normalised plate,
  value = {"list", "reason", "added_by", "expires_at"}; a tombstone removes one). Entries
  without expires_at, already expired, or beyond live.watchlist_max_days are refused.
  A read of a listed plate sends a hit to anpr.watchlist-hits (match "exact"); a read that
  differs only by OCR confusions (0/O/Q/D, 1/I, 8/B, 5/S, 2/Z, 6/G) sends one with match
  "possible". The same read twice gives one hit (hit id = hash of event id, plate, list).
- live traffic: anpr_live_passages_total{site,direction} (rate() per minute).
- camera silence: anpr_camera_last_read_timestamp_seconds and anpr_camera_silent per
  camera, thresholds per site by day and night (the site registry, live.silence_*).

State (watchlist, hit ids already sent) lives in faust tables backed by changelog topics,
so a restart loses nothing. Metrics on /metrics (live.metrics_port, 9466); never a plate
in a label or a log line. SIGTERM or Ctrl-C stops it cleanly.

One instance per group is active: another one (on another host: same [lake] catalog) waits
on standby behind a lock in the catalog database and takes over when the active one dies.
"""


def add_parser(commands: Commands) -> None:
    live = sub(
        commands,
        "live",
        "the live app: watchlist hits, live traffic, camera silence (faust-streaming)",
        _DESCRIPTION,
        run,
        epilog="examples:\n"
        "  anpr live                         # run until stopped\n"
        "  anpr live --metrics-port 0        # no /metrics endpoint",
    )
    live.add_argument(
        "--metrics-port",
        dest="live__metrics_port",
        type=int,
        default=None,
        help="port of /metrics (default from settings, 9466); 0 disables it",
    )
    live.add_argument(
        "--group",
        dest="live__consumer_group",
        default=None,
        help="consumer group and faust app id (default from settings, anpr-live)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from prometheus_client import CollectorRegistry

    from pipeline.live.app import run_live
    from pipeline.metrics import LiveMetrics

    sites = registry(settings)  # validated before anything connects
    run_live(settings, registry=sites, metrics=LiveMetrics(CollectorRegistry()))
    return EXIT_OK
