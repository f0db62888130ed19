"""``anpr maintain``: the nightly statistics, compaction and retention run."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from pipeline.cli._common import EXIT_OK, Commands, instant, lake_flag, private_data, sub
from pipeline.config import Settings

_DESCRIPTION = """\
Nightly maintenance of the lake, in this order (each step idempotent; a run killed at any
point is finished by the next):

  1. stats      anonymous statistics for every closed UTC day (ended more than
                maintain.late_grace_h ago) and every ISO week whose 30-day trip window
                closed: traffic_stats (passages per hour, site, direction, vehicle class,
                plate country) and trip_stats (round trips per week, exit site, entry site,
                duration). Cells from 1 to k-1 (maintain.k_anonymity, default 5) are
                suppressed, plus enough others that none can be derived from the totals.
  2. compact    closed days with many small files rewritten as few large ones, sorted.
  3. retention  every row of a personal-data table collected at or before as-of minus its
                limit (retention.months, at most 6; per table [retention.tables]) is
                deleted, whole UTC days (up to one day early, never late); then physically
                purged (files rewritten, snapshots expired, old and orphaned files removed,
                catalog vacuumed); the activity log loses entries older than
                access.log_retention_months (default 24), its hash chain kept, and the
                erasure ledger forgets erasures Kafka no longer holds; then the lake and the
                state folder are verified: nothing past its limit, no clear plate in the log
                or ledger, no report kept, no unknown file (each finding names the file).

A failing stats or compact step never blocks retention; the run then exits 1. Metrics go to
<state.dir>/metrics/maintain.prom (node_exporter textfile), a JSON report of counts (never
identifiers) to <lake>/reports/. Kafka topics carrying personal data are checked for a
retention.ms above the limit (warning + anpr_topic_retention_exceeded).
"""

_EPILOG = """\
examples:
  anpr maintain
  anpr maintain --dry-run
  anpr maintain --as-of 2026-05-01T00:00:00Z --only retention
"""


def add_parser(commands: Commands) -> None:
    parser = sub(
        commands,
        "maintain",
        "statistics, compaction and retention (the nightly job)",
        _DESCRIPTION,
        run,
        epilog=_EPILOG,
    )
    parser.add_argument(
        "--as-of",
        type=instant,
        default=None,
        help="behave as if run at this UTC time (ISO 8601 with offset); default: now",
    )
    parser.add_argument("--dry-run", action="store_true", help="print what each step would do")
    parser.add_argument(
        "--only",
        choices=["stats", "compact", "retention"],
        action="append",
        default=None,
        help="run only this step (repeatable); retention includes purge, verify and the "
        "activity log's retention",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="when another anpr maintain (on any host) holds the lake's maintenance lock, "
        "wait this long for it; default: exit 1 at once with a message naming the holder",
    )
    parser.add_argument(
        "--no-topic-check",
        action="store_true",
        help="skip reading Kafka topic retention (no broker reachable)",
    )
    lake_flag(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.access.identity import access_paths
    from pipeline.files import check_file_place
    from pipeline.lake.backend import Storage
    from pipeline.maintain.run import STEPS, MaintainOptions, maintain

    Storage.existing(settings.lake)  # before private_data makes an empty lake folder
    private_data(settings)
    check_file_place(access_paths(settings).activity_log, "activity log", write=True)
    options = MaintainOptions(
        as_of=args.as_of or datetime.now(UTC),
        dry_run=args.dry_run,
        only=frozenset(args.only or STEPS),
        check_topics=not args.no_topic_check,
        lock_wait_s=args.wait,
    )
    maintain(settings, options)
    return EXIT_OK
