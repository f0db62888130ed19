"""``anpr query``, ``anpr sql``, ``anpr audit`` and ``anpr subject``: reading personal data.

Every command here finds out who is asking (the OS user, or ``--user`` where the
configuration allows it), their role (``[access] users``) and why (``--reason``, ``--case``),
writes the activity log before and after the work, and leaves the metrics textfile
``<state.dir>/metrics/access.prom`` behind.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pipeline.access.audit import ActivityLog, summarise
from pipeline.access.identity import (
    AccessPaths,
    Identity,
    Purpose,
    access_paths,
    check_purpose,
    resolve_identity,
)
from pipeline.access.pseudonym import Pseudonymiser
from pipeline.access.session import AccessSession, run_logged
from pipeline.access.statement import QueryRefused
from pipeline.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, _Formatter, _sub
from pipeline.config import Settings
from pipeline.errors import UsageError

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

_ROLES_HELP = """\
roles ([access] users maps user names to roles):
  analyst       plate_reads of the last 90 days (access.analyst_max_age_days) with the plate
                as a keyed pseudonym (plate_pseudonym); statistics tables
  investigator  plate_reads and passengers with clear plates, within the legal limit;
                always needs --case
  statistics    traffic_stats and trip_stats only
  dpo           every lake table, restricted rows included, and activity_log

A statement is one SELECT over your role's views. Files, ATTACH, COPY, INSTALL/LOAD, SET,
PRAGMA, table functions and system functions are refused, and the refusal is logged.
Every statement is logged before it runs (who, role, reason, case, SQL) and after it (rows,
duration, outcome, keyed pseudonyms of the plates returned).
"""


def register(commands: Commands) -> None:
    _add_query(commands)
    _add_sql(commands)
    _add_audit(commands)
    _add_subject(commands)


def _who(parser: argparse.ArgumentParser, *, purpose: bool = True) -> None:
    if purpose:
        parser.add_argument(
            "--reason", default=None, help="reason code from access.reasons (required)"
        )
    parser.add_argument(
        "--case", default=None, help="case reference (required for some reasons and roles)"
    )
    parser.add_argument(
        "--user", default=None, help="act as this user (only if access.user_flag is true)"
    )
    parser.add_argument("--lake", dest="lake__path", type=Path, default=None, help="lake path")


@dataclass(frozen=True)
class _Context:
    settings: Settings
    paths: AccessPaths
    identity: Identity
    log: ActivityLog

    def pseudonymiser(self) -> Pseudonymiser:
        return Pseudonymiser.from_key_file(self.paths.key_file)


def _context(args: argparse.Namespace, settings: Settings) -> _Context:
    paths = access_paths(settings)
    identity = resolve_identity(settings.access, requested=args.user, os_user=getpass.getuser())
    return _Context(settings, paths, identity, ActivityLog(paths.activity_log))


def _write_metrics(ctx: _Context) -> None:
    from prometheus_client import CollectorRegistry, write_to_textfile

    from pipeline.metrics import AccessMetrics

    head = ctx.log.head()
    registry = CollectorRegistry()
    metrics = AccessMetrics(registry)
    if head is not None:
        metrics.load(dict(head.counts), head.next_seq)
    ctx.paths.metrics_file.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(ctx.paths.metrics_file), registry)


def _need_lake(settings: Settings) -> None:
    if not (settings.lake.path / "catalog.sqlite").exists():
        raise UsageError(f"no lake at {settings.lake.path}: ingest something first, or --lake")


def _open_session(ctx: _Context) -> AccessSession:
    _need_lake(ctx.settings)
    return AccessSession.open(
        ctx.settings.lake.path,
        ctx.identity.role,
        now=datetime.now(UTC),
        analyst_max_age_days=ctx.settings.access.analyst_max_age_days,
        retention_months=ctx.settings.retention.months,
        pseudo=ctx.pseudonymiser(),
        activity=ctx.log,
    )


# --- query / sql -------------------------------------------------------------------------


def _add_query(commands: Commands) -> None:
    query = _sub(
        commands,
        "query",
        "run one SELECT over your role's views, with a reason (logged)",
        "Run one SELECT statement over the views of your role and print the result.\n"
        "Needs --reason (and --case where the reason or role requires one). Timestamps are\n"
        "UTC.\n\n" + _ROLES_HELP,
        _query,
        epilog="examples:\n"
        "  anpr query --reason control \\\n"
        '    "SELECT site_id, direction, count(*) AS reads FROM plate_reads GROUP BY ALL"\n'
        "  anpr query --reason investigation --case 2026-0042 --format csv \\\n"
        "    \"SELECT * FROM plate_reads WHERE plate = 'AB12345'\"",
    )
    query.add_argument("sql", help="one SELECT statement")
    query.add_argument("--format", choices=["table", "csv", "json"], default="table")
    _who(query)


def _purpose(args: argparse.Namespace, ctx: _Context) -> Purpose:
    return check_purpose(ctx.settings.access, ctx.identity, reason=args.reason, case=args.case)


def _query(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.access.render import render

    ctx = _context(args, settings)
    purpose = _purpose(args, ctx)
    try:
        with _open_session(ctx) as session:
            table = run_logged(session, ctx.log, ctx.identity, purpose, args.sql)
        sys.stdout.write(render(table, args.format))
    finally:
        _write_metrics(ctx)
    return EXIT_OK


def _add_sql(commands: Commands) -> None:
    sql = _sub(
        commands,
        "sql",
        "an interactive SQL shell over your role's views (every statement logged)",
        "Read SELECT statements from standard input, each ending with ';' at the end of a\n"
        "line, and print each result. Ends at end of input or with '.quit'. Each statement is\n"
        "checked and logged like `anpr query`; a refused or failing one is reported and the\n"
        "shell goes on. Exit status 2 if any statement was refused or failed.\n\n" + _ROLES_HELP,
        _sql,
        epilog="example:\n  anpr sql --reason control\n  anpr> SELECT count(*) FROM plate_reads;",
    )
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    _who(sql)


def statements(lines: TextIO, prompt: Callable[[str], None]) -> Iterator[str]:
    """Statements from ``lines``: text up to a line ending in ';' (without it)."""
    buffer: list[str] = []
    prompt("anpr> ")
    for line in lines:
        stripped = line.strip()
        if not buffer and stripped in (".quit", ".exit"):
            return
        if not buffer and not stripped:
            continue
        buffer.append(line.rstrip("\n"))
        if stripped.endswith(";"):
            text = "\n".join(buffer).strip().removesuffix(";").strip()
            buffer.clear()
            if text:
                yield text
            prompt("anpr> ")
        else:
            prompt("  ... ")
    rest = "\n".join(buffer).strip()
    if rest:
        yield rest


def _sql(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.access.render import render

    ctx = _context(args, settings)
    purpose = _purpose(args, ctx)
    interactive = sys.stdin.isatty()

    def prompt(text: str) -> None:
        if interactive:
            print(text, end="", flush=True)

    status = EXIT_OK
    try:
        with _open_session(ctx) as session:
            if interactive:
                names = ", ".join(sorted(session.plan.names))
                print(f"role {ctx.identity.role}, reason {purpose.reason}; views: {names}")
            for text in statements(sys.stdin, prompt):
                try:
                    table = run_logged(session, ctx.log, ctx.identity, purpose, text)
                except UsageError as exc:
                    print(f"anpr: error: {exc}", file=sys.stderr)
                    status = EXIT_USAGE
                    continue
                sys.stdout.write(render(table, args.format))
                sys.stdout.flush()
    finally:
        _write_metrics(ctx)
    return status


# --- audit -------------------------------------------------------------------------------


def _add_audit(commands: Commands) -> None:
    audit = commands.add_parser(
        "audit",
        help="verify and summarise the activity log",
        description="The activity log (access.activity_log, default <state.dir>/access/\n"
        "activity.jsonl) is append-only JSON lines with a hash chain and a head record.",
        formatter_class=_Formatter,
    )
    actions = audit.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = _sub(
        actions,
        "verify",
        "exit 1 naming the first bad entry if the log was edited, cut or reordered",
        "Check every entry's hash, its link to the one before, its sequence number, and the\n"
        "end of the log against the head record. Exit 0 if intact; exit 1 naming the first\n"
        "bad entry (line and sequence number) on any edit, deletion, reorder or truncation.",
        _audit_verify,
    )
    verify.add_argument("--log", type=Path, default=None, help="log file (default: settings)")
    report = _sub(
        actions,
        "report",
        "queries by user, role, reason and case in a period (dpo only)",
        "Summarise statements and subject requests started in [--since, --until): how many,\n"
        "how many refused or failed, rows returned, per user, role, reason and case.",
        _audit_report,
    )
    report.add_argument("--since", type=_day, required=True, help="first day (YYYY-MM-DD)")
    report.add_argument("--until", type=_day, required=True, help="day after the last")
    report.add_argument("--format", choices=["table", "csv", "json"], default="table")
    report.add_argument("--user", default=None, help="act as this user (if allowed)")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    path = args.log or access_paths(settings).activity_log
    verdict = ActivityLog(path).verify()
    print(verdict.describe())
    return EXIT_OK if verdict.ok else EXIT_FAILURE


def _dpo_only(ctx: _Context, what: str) -> None:
    if ctx.identity.role != "dpo":
        ctx.log.append(
            {
                "kind": "subject.refused",
                "at": datetime.now(UTC).isoformat(),
                "user": ctx.identity.user,
                "role": ctx.identity.role,
                "request": what,
                "outcome": "refused",
            }
        )
        raise UsageError(f"{what} is for the data protection officer (role dpo) only")


def _audit_report(args: argparse.Namespace, settings: Settings) -> int:
    import pyarrow as pa

    from pipeline.access.render import render

    ctx = _context(args, settings)
    try:
        _dpo_only(ctx, "audit report")
        since = datetime.combine(args.since, datetime.min.time(), UTC)
        until = datetime.combine(args.until, datetime.min.time(), UTC)
        rows = summarise(ctx.log.entries(), since, until)
        table = pa.Table.from_pylist([r.__dict__ for r in rows]) if rows else pa.table({})
        ctx.log.append(
            {
                "kind": "audit.report",
                "at": datetime.now(UTC).isoformat(),
                "user": ctx.identity.user,
                "role": ctx.identity.role,
                "since": since.isoformat(),
                "until": until.isoformat(),
            }
        )
        sys.stdout.write(render(table, args.format))
    finally:
        _write_metrics(ctx)
    return EXIT_OK


# --- subject -----------------------------------------------------------------------------


def _add_subject(commands: Commands) -> None:
    subject = commands.add_parser(
        "subject",
        help="data-subject requests: access, rectify, erase, restrict (dpo only)",
        description="Answer a data subject's request about a plate. For the data protection\n"
        "officer (role dpo) only; every request is logged with the plate's keyed pseudonym,\n"
        "never the plate. Do not repeat the plate in --reason.",
        formatter_class=_Formatter,
    )
    kinds = subject.add_subparsers(dest="kind", metavar="REQUEST", required=True)
    access = _sub(
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
    rectify = _sub(
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
    erase = _sub(
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
    restrict = _sub(
        kinds,
        "restrict",
        "hide a plate's rows from every role but dpo until a date",
        "Rows stay stored (until their normal expiry, never longer: --until is capped at the\n"
        "expiry of the newest row) but no view except the dpo's shows them, and statistics\n"
        "computed while the restriction holds leave them out.",
        _subject_restrict,
    )
    restrict.add_argument("--plate", required=True)
    restrict.add_argument("--until", type=_day, required=True, help="YYYY-MM-DD (UTC midnight)")
    restrict.add_argument("--reason", default=None, help="why (free text)")
    unrestrict = _sub(
        kinds,
        "unrestrict",
        "lift a restriction",
        "Lift a plate's restriction.",
        _unrestrict,
    )
    unrestrict.add_argument("--plate", required=True)
    for parser in (access, rectify, erase, restrict, unrestrict):
        _who(parser, purpose=False)


def _subject_request(
    args: argparse.Namespace,
    settings: Settings,
    kind: str,
    work: Callable[[_Context, Any, str, str, int], dict[str, Any]],
) -> int:
    """Check the role, log the request, open the lake writable, do ``work``, log the end."""
    from pipeline.access.subjects import checked_plate
    from pipeline.lake.catalog import Lake

    ctx = _context(args, settings)
    try:
        _dpo_only(ctx, f"subject {kind}")
        plate = checked_plate(args.plate)
        _need_lake(settings)
        subject = ctx.pseudonymiser().one(plate)
        begin = ctx.log.append(
            {
                "kind": "subject.begin",
                "at": datetime.now(UTC).isoformat(),
                "user": ctx.identity.user,
                "role": ctx.identity.role,
                "reason": "dsar",
                "case": args.case,
                "request": kind,
                "subject": subject,
                "event_id": getattr(args, "event_id", None),
                "note": getattr(args, "reason", None),
            }
        )
        end: dict[str, Any] = {"kind": "subject.end", "begin": begin["seq"], "request": kind}
        try:
            with Lake.open(settings.lake.path, create=False) as lake:
                done = work(ctx, lake, plate, subject, begin["seq"])
        except BaseException as exc:
            ctx.log.append({**end, "at": datetime.now(UTC).isoformat(), "outcome": "failed",
                            "error": type(exc).__name__})  # fmt: skip
            raise
        ctx.log.append({**end, "at": datetime.now(UTC).isoformat(), "outcome": "ok", **done})
    finally:
        _write_metrics(ctx)
    return EXIT_OK


def _subject_access(args: argparse.Namespace, settings: Settings) -> int:
    def work(ctx: _Context, lake: Any, plate: str, subject: str, seq: int) -> dict[str, Any]:
        from pipeline.access.render import report_text, subject_report, write_private
        from pipeline.access.subjects import subject_access

        found = subject_access(lake, plate)
        activity = [
            e
            for e in ctx.log.entries()
            if subject in (e.get("pseudonyms") or ()) or e.get("subject") == subject
        ]
        now = datetime.now(UTC)
        report = subject_report(plate, found.tables, activity, generated_at=now)
        name = f"subject-access-{now:%Y%m%dT%H%M%SZ}-{seq}.{args.format}"
        path = write_private(ctx.paths.reports_dir, name, report_text(report, args.format))
        print(f"{found.rows} rows and {len(activity)} activity-log entries: {path}")
        return {"rows": found.rows, "log_entries": len(activity), "report": path.name}

    return _subject_request(args, settings, "access", work)


def _subject_rectify(args: argparse.Namespace, settings: Settings) -> int:
    def work(ctx: _Context, lake: Any, plate: str, subject: str, seq: int) -> dict[str, Any]:
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
    def work(ctx: _Context, lake: Any, plate: str, subject: str, seq: int) -> dict[str, Any]:
        from pipeline.access.subjects import erase
        from pipeline.maintain.purge import purge

        done = erase(
            lake, plate, now=datetime.now(UTC), purge=lambda lk: purge(lk, now=datetime.now(UTC))
        )
        print(f"erased {done.rows} rows ({done.deleted}) and purged the lake")
        return {"rows": done.rows, "deleted": done.deleted}

    return _subject_request(args, settings, "erase", work)


def _subject_restrict(args: argparse.Namespace, settings: Settings) -> int:
    def work(ctx: _Context, lake: Any, plate: str, subject: str, seq: int) -> dict[str, Any]:
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
    def work(ctx: _Context, lake: Any, plate: str, subject: str, seq: int) -> dict[str, Any]:
        from pipeline.access.subjects import unrestrict

        removed = unrestrict(lake, plate)
        print("restriction lifted" if removed else "that plate was not restricted")
        return {"rows": removed}

    return _subject_request(args, settings, "unrestrict", work)


__all__ = ["QueryRefused", "register", "statements"]
