"""``anpr query``, ``anpr sql`` and ``anpr audit``: reading personal data and its log.

Every command here finds out who is asking (the OS user, or ``--user`` where the
configuration allows it), their role (``[access] users``) and why (``--reason``, ``--case``),
writes the activity log before and after the work, and leaves the metrics textfile
``<state.dir>/metrics/access.prom`` behind.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from pipeline.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Commands,
    day,
    group,
    lake_flag,
    sub,
)
from pipeline.config import Settings
from pipeline.errors import UsageError

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


def add_parser(commands: Commands) -> None:
    _add_query(commands)
    _add_sql(commands)
    _add_audit(commands)


def who_flags(parser: argparse.ArgumentParser, *, purpose: bool = True) -> None:
    """--reason (with ``purpose``), --case, --user and --lake."""
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
    lake_flag(parser)


# --- query / sql -------------------------------------------------------------------------


def _add_query(commands: Commands) -> None:
    query = sub(
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
    who_flags(query)


def _query(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.access.render import render
    from pipeline.access.requests import AccessContext
    from pipeline.access.session import run_logged

    ctx = AccessContext.resolve(settings, args.user)
    purpose = ctx.purpose(args.reason, args.case)
    try:
        with ctx.open_session() as session:
            table = run_logged(session, ctx.log, ctx.identity, purpose, args.sql)
        sys.stdout.write(render(table, args.format))
    finally:
        ctx.write_metrics()
    return EXIT_OK


def _add_sql(commands: Commands) -> None:
    sql = sub(
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
    who_flags(sql)


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
    from pipeline.access.requests import AccessContext
    from pipeline.access.session import run_logged

    ctx = AccessContext.resolve(settings, args.user)
    purpose = ctx.purpose(args.reason, args.case)
    interactive = sys.stdin.isatty()

    def prompt(text: str) -> None:
        if interactive:
            print(text, end="", flush=True)

    status = EXIT_OK
    try:
        with ctx.open_session() as session:
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
        ctx.write_metrics()
    return status


# --- audit -------------------------------------------------------------------------------


def _add_audit(commands: Commands) -> None:
    actions = group(
        commands,
        "audit",
        "verify and summarise the activity log",
        "The activity log (access.activity_log, default <state.dir>/access/\n"
        "activity.jsonl) is append-only JSON lines with a keyed MAC chain, a head record and\n"
        "anchors in Kafka.",
    )
    verify = sub(
        actions,
        "verify",
        "exit 1 naming what is missing if the log was edited, cut, reordered or replaced",
        "Check every entry's MAC (audit key), its link to the one before, its sequence number,\n"
        "the head record, and the anchors the service published to topics.audit_anchors.\n"
        "Exit 0 if intact; exit 1 naming the first bad entry (line and sequence number) or\n"
        "the missing entries on any edit, deletion, reorder, re-chaining or truncation, on a\n"
        "missing log, and when the anchors cannot be read.",
        _audit_verify,
    )
    verify.add_argument("--log", type=Path, default=None, help="log file (default: settings)")
    report = sub(
        actions,
        "report",
        "queries by user, role, reason and case in a period (dpo only)",
        "Summarise statements and subject requests started in [--since, --until): how many,\n"
        "how many refused or failed, rows returned, per user, role, reason and case.",
        _audit_report,
    )
    report.add_argument("--since", type=day, required=True, help="first day (YYYY-MM-DD)")
    report.add_argument("--until", type=day, required=True, help="day after the last")
    report.add_argument("--format", choices=["table", "csv", "json"], default="table")
    report.add_argument("--user", default=None, help="act as this user (if allowed)")


def _audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.access.anchors import verify_log
    from pipeline.access.identity import access_paths

    path = args.log or access_paths(settings).activity_log
    verdict = verify_log(settings, path)
    print(verdict.describe())
    return EXIT_OK if verdict.ok else EXIT_FAILURE


def _audit_report(args: argparse.Namespace, settings: Settings) -> int:
    import pyarrow as pa

    from pipeline.access.audit import summarise
    from pipeline.access.render import render
    from pipeline.access.requests import AccessContext, dpo_only, log_audit_report

    ctx = AccessContext.resolve(settings, args.user)
    try:
        dpo_only(ctx, "audit report")
        since = datetime.combine(args.since, datetime.min.time(), UTC)
        until = datetime.combine(args.until, datetime.min.time(), UTC)
        rows = summarise(ctx.log.entries(), since, until)
        table = pa.Table.from_pylist([r.__dict__ for r in rows]) if rows else pa.table({})
        log_audit_report(ctx, since, until)
        sys.stdout.write(render(table, args.format))
    finally:
        ctx.write_metrics()
    return EXIT_OK
