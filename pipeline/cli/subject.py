"""``anpr subject``: data-subject requests (access, rectify, erase, restrict), dpo only."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipeline.cli._common import EXIT_OK, Commands, day, group, sub
from pipeline.cli.access import who_flags
from pipeline.config import Settings

if TYPE_CHECKING:
    from pipeline.access.requests import AccessContext
    from pipeline.lake.catalog import Lake

# The request's work, given who asks: (lake, plate, pseudonym, seq of the begin entry) -> fields
# of the end entry.
_Work = Callable[["AccessContext", "Lake", str, str, int], dict[str, Any]]


def add_parser(commands: Commands) -> None:
    kinds = group(
        commands,
        "subject",
        "data-subject requests: access, rectify, erase, restrict (dpo only)",
        "Answer a data subject's request about a plate. For the data protection\n"
        "officer (role dpo) only; every request is logged with the plate's keyed pseudonym,\n"
        "never the plate. Do not repeat the plate in --reason.",
        dest="kind",
        metavar="REQUEST",
    )
    access = sub(
        kinds,
        "access",
        "every row about a plate, and who looked at it, as a report file",
        "Write a report with every row about the plate in every lake table (plate, OCR\n"
        "candidates, versions, restrictions; restricted rows included) and every activity-log\n"
        "entry whose results included it. The file (mode 0600) goes to access.reports_dir;\n"
        "its path is printed.",
        _subject_access,
    )
    access.add_argument("--plate", required=True)
    access.add_argument("--format", choices=["json", "csv"], default="json")
    rectify = sub(
        kinds,
        "rectify",
        "correct a misread plate; the original is kept in plate_read_versions",
        "Set the plate of one read to the corrected value. The original (with who, when and\n"
        "why) is kept in plate_read_versions, partitioned by the read's capture time so it\n"
        "ages out with the read.",
        _subject_rectify,
    )
    rectify.add_argument("--event-id", required=True)
    rectify.add_argument("--plate", required=True, help="the correct plate")
    rectify.add_argument("--reason", required=True, help="why (free text)")
    erase = sub(
        kinds,
        "erase",
        "remove every row of a plate physically",
        "Delete every row about the plate in every table, then purge: rewrite the data files,\n"
        "expire snapshots, remove old files, compact the catalog. No byte of it is left under\n"
        "the lake path.",
        _subject_erase,
    )
    erase.add_argument("--plate", required=True)
    erase.add_argument("--reason", required=True, help="why (free text)")
    restrict = sub(
        kinds,
        "restrict",
        "hide a plate's rows from every role but dpo until a date",
        "Rows stay stored (until their normal expiry, never longer: --until is capped at the\n"
        "expiry of the newest row) but no view except the dpo's shows them, and statistics\n"
        "computed while the restriction holds leave them out.",
        _subject_restrict,
    )
    restrict.add_argument("--plate", required=True)
    restrict.add_argument("--until", type=day, required=True, help="YYYY-MM-DD (UTC midnight)")
    restrict.add_argument("--reason", default=None, help="why (free text)")
    unrestrict = sub(
        kinds,
        "unrestrict",
        "lift a restriction",
        "Lift a plate's restriction.",
        _unrestrict,
    )
    unrestrict.add_argument("--plate", required=True)
    for parser in (access, rectify, erase, restrict, unrestrict):
        who_flags(parser, purpose=False)


def _subject_request(args: argparse.Namespace, settings: Settings, kind: str, work: _Work) -> int:
    """Run ``work`` as a logged data-subject request (see ``access.requests``)."""
    from pipeline.access.requests import AccessContext, subject_request

    ctx = AccessContext.resolve(settings, args.user)
    try:
        subject_request(
            ctx,
            kind,
            args.plate,
            lambda lake, plate, subject, seq: work(ctx, lake, plate, subject, seq),
            case=args.case,
            event_id=getattr(args, "event_id", None),
            note=getattr(args, "reason", None),
        )
    finally:
        ctx.write_metrics()
    return EXIT_OK


def _subject_access(args: argparse.Namespace, settings: Settings) -> int:
    def work(ctx: AccessContext, lake: Lake, plate: str, subject: str, seq: int) -> dict[str, Any]:
        from pipeline.access.audit import mentions
        from pipeline.access.render import report_text, subject_report, write_private
        from pipeline.access.subjects import subject_access

        found = subject_access(lake, plate)
        activity = [e for e in ctx.log.entries() if mentions(e, subject)]
        now = datetime.now(UTC)
        report = subject_report(plate, found.tables, activity, generated_at=now)
        name = f"subject-access-{now:%Y%m%dT%H%M%SZ}-{seq}.{args.format}"
        path = write_private(ctx.paths.reports_dir, name, report_text(report, args.format))
        print(f"{found.rows} rows and {len(activity)} activity-log entries: {path}")
        return {"rows": found.rows, "log_entries": len(activity), "report": path.name}

    return _subject_request(args, settings, "access", work)


def _subject_rectify(args: argparse.Namespace, settings: Settings) -> int:
    def work(ctx: AccessContext, lake: Lake, plate: str, subject: str, seq: int) -> dict[str, Any]:
        from pipeline.access.subjects import rectify

        done = rectify(
            lake,
            args.event_id,
            plate,
            user=ctx.identity.user,
            reason=args.reason,
            now=datetime.now(UTC),
        )
        print(f"read {done.event_id} rectified; the original is in plate_read_versions")
        return {"rows": 1, "old_subject": ctx.pseudonymiser().one(done.old_plate)}

    return _subject_request(args, settings, "rectify", work)


def _subject_erase(args: argparse.Namespace, settings: Settings) -> int:
    def work(ctx: AccessContext, lake: Lake, plate: str, subject: str, seq: int) -> dict[str, Any]:
        from pipeline.access.render import delete_reports_naming
        from pipeline.access.subjects import erase
        from pipeline.erasure import ErasureLedger
        from pipeline.maintain.purge import purge

        done = erase(
            lake,
            plate,
            now=datetime.now(UTC),
            purge=lambda lk: purge(lk, now=datetime.now(UTC)),
            ledger=ErasureLedger.from_settings(settings),
        )
        reports = delete_reports_naming(ctx.paths.reports_dir, plate)
        print(
            f"erased {done.rows} rows ({done.deleted}) and purged the lake; "
            f"{reports} stored reports about it deleted"
        )
        return {"rows": done.rows, "deleted": done.deleted, "reports_deleted": reports}

    return _subject_request(args, settings, "erase", work)


def _subject_restrict(args: argparse.Namespace, settings: Settings) -> int:
    def work(ctx: AccessContext, lake: Lake, plate: str, subject: str, seq: int) -> dict[str, Any]:
        from pipeline.access.subjects import restrict

        done = restrict(
            lake,
            plate,
            args.until,
            user=ctx.identity.user,
            reason=args.reason,
            now=datetime.now(UTC),
            retention_months=settings.retention.months,
        )
        capped = " (capped at the expiry of its newest row)" if done.capped else ""
        print(f"restricted until {done.until.isoformat()}{capped}")
        return {"rows": 1, "until": done.until.isoformat(), "capped": done.capped}

    return _subject_request(args, settings, "restrict", work)


def _unrestrict(args: argparse.Namespace, settings: Settings) -> int:
    def work(ctx: AccessContext, lake: Lake, plate: str, subject: str, seq: int) -> dict[str, Any]:
        from pipeline.access.subjects import unrestrict

        removed = unrestrict(lake, plate)
        print("restriction lifted" if removed else "that plate was not restricted")
        return {"rows": removed}

    return _subject_request(args, settings, "unrestrict", work)
