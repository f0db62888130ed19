"""Data-subject requests inside the service (dpo only): access, rectify, erase, restrict.

Each runs through :func:`pipeline.access.requests.subject_request` (refused and logged for any
role but dpo; logged before and after with the plate's keyed pseudonym) and returns the line the
client prints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from pipeline.access.audit import mentions
from pipeline.access.render import report_text, subject_report
from pipeline.access.requests import AccessContext, subject_request
from pipeline.access.subjects import erase, rectify, restrict, subject_access, unrestrict
from pipeline.erasure import ErasureLedger
from pipeline.errors import UsageError
from pipeline.lake.catalog import Lake
from pipeline.maintain.purge import purge
from pipeline.service.wire import optional_arg, text_arg

Args = Mapping[str, Any]


@dataclass(frozen=True)
class Done:
    fields: dict[str, Any]  # for the subject.end entry
    line: str  # for the client to print
    files: Mapping[str, str] = field(default_factory=dict)  # name -> text, for the client


# (context, lake, plate, its pseudonym, seq of subject.begin, request arguments) -> Done
Work = Callable[[AccessContext, Lake, str, str, int, Args], Done]


def _access(ctx: AccessContext, lake: Lake, plate: str, subject: str, seq: int, args: Args) -> Done:
    fmt = args.get("format") or "json"
    if fmt not in ("json", "csv"):
        raise UsageError("--format is json or csv")
    found = subject_access(lake, plate)
    activity = [e for e in ctx.log.entries() if mentions(e, subject)]
    now = datetime.now(UTC)
    report = subject_report(plate, found.tables, activity, generated_at=now)
    name = f"subject-access-{now:%Y%m%dT%H%M%SZ}-{seq}.{fmt}"
    line = f"{found.rows} rows and {len(activity)} activity-log entries"
    # The service keeps no copy: the dpo's client writes it where the dpo can read it.
    fields = {"rows": found.rows, "log_entries": len(activity), "report": name}
    return Done(fields, line, {name: report_text(report, fmt)})


def _rectify(
    ctx: AccessContext, lake: Lake, plate: str, subject: str, seq: int, args: Args
) -> Done:
    done = rectify(
        lake,
        text_arg(args, "event_id"),
        plate,
        user=ctx.identity.user,
        reason=text_arg(args, "note"),
        now=datetime.now(UTC),
    )
    line = f"read {done.event_id} rectified; the original is in plate_read_versions"
    return Done({"rows": 1, "old_subject": ctx.pseudonymiser().one(done.old_plate)}, line)


def _erase(ctx: AccessContext, lake: Lake, plate: str, subject: str, seq: int, args: Args) -> Done:
    done = erase(
        lake,
        plate,
        now=datetime.now(UTC),
        purge=lambda lk: purge(lk, now=datetime.now(UTC)),
        ledger=ErasureLedger.from_settings(ctx.settings),
    )
    line = f"erased {done.rows} rows ({done.deleted}) and purged the lake"
    return Done({"rows": done.rows, "deleted": done.deleted}, line)


def _restrict(
    ctx: AccessContext, lake: Lake, plate: str, subject: str, seq: int, args: Args
) -> Done:
    try:
        until = date.fromisoformat(text_arg(args, "until"))
    except ValueError:
        raise UsageError("--until is a date (YYYY-MM-DD)") from None
    done = restrict(
        lake,
        plate,
        until,
        user=ctx.identity.user,
        reason=args.get("note"),
        now=datetime.now(UTC),
        retention_months=ctx.settings.retention.months,
    )
    capped = " (capped at the expiry of its newest row)" if done.capped else ""
    line = f"restricted until {done.until.isoformat()}{capped}"
    return Done({"rows": 1, "until": done.until.isoformat(), "capped": done.capped}, line)


def _unrestrict(
    ctx: AccessContext, lake: Lake, plate: str, subject: str, seq: int, args: Args
) -> Done:
    removed = unrestrict(lake, plate)
    return Done(
        {"rows": removed}, "restriction lifted" if removed else "that plate was not restricted"
    )


WORK: Mapping[str, Work] = {
    "access": _access,
    "rectify": _rectify,
    "erase": _erase,
    "restrict": _restrict,
    "unrestrict": _unrestrict,
}


def run_subject_request(ctx: AccessContext, kind: str, args: Args) -> Done:
    """Run one request (``kind`` from :data:`WORK`) for ``ctx``'s user."""
    work = WORK[kind]
    done: list[Done] = []

    def logged(lake: Lake, plate: str, subject: str, seq: int) -> dict[str, Any]:
        done.append(work(ctx, lake, plate, subject, seq, args))
        return done[0].fields

    subject_request(
        ctx,
        kind,
        text_arg(args, "plate"),
        logged,
        case=optional_arg(args, "case"),
        event_id=optional_arg(args, "event_id"),
        note=optional_arg(args, "note"),
    )
    return done[0]
