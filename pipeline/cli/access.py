"""``anpr query``, ``anpr sql`` and ``anpr audit``: clients of the query service.

They send what the user asks (SQL, ``--reason``, ``--case``) to ``anpr serve`` and print its
answer; the service decides who is asking (kernel peer credentials or a client certificate),
their role, the rules, and logs every statement (ADR 0004). Nothing here reads the lake, the
key or the log, and ``[access]`` settings of the caller count for nothing.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from pipeline.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Commands,
    day,
    group,
    sub,
)
from pipeline.config import Settings
from pipeline.errors import UsageError

if TYPE_CHECKING:
    from pipeline.service.client import Client
    from pipeline.service.wire import Reply

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
    """--reason (with ``purpose``) and --case; --user and --lake are refused (the service
    knows who you are and which lake it serves)."""
    if purpose:
        parser.add_argument(
            "--reason", default=None, help="reason code from access.reasons (required)"
        )
    parser.add_argument(
        "--case", default=None, help="case reference (required for some reasons and roles)"
    )
    client_flags(parser)


def client_flags(parser: argparse.ArgumentParser) -> None:
    """Mark a command as a client of the service (``main`` ignores ``[access]`` for it)."""
    parser.add_argument("--user", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--lake", default=None, help=argparse.SUPPRESS)
    parser.set_defaults(client=True)


def connect(args: argparse.Namespace, settings: Settings) -> Client:
    """A connection to the service, once the flags that no longer mean anything are refused."""
    from pipeline.service.client import Client

    if args.user is not None:
        raise UsageError(
            "--user is gone: the query service knows who you are (your OS user, or the "
            "common name of your client certificate)"
        )
    if args.lake is not None:
        raise UsageError("--lake is the service's: the query service reads its own lake")
    return Client.from_settings(settings.serve)


def show(reply: Reply, fmt: str) -> int:
    """Print a reply as the command did before the service: result, text, error line."""
    from pipeline.access.render import render

    if reply.ok and reply.table is not None:
        sys.stdout.write(render(reply.table, fmt))
    sys.stdout.write(reply.out)
    if reply.error:
        word = "error" if reply.exit == EXIT_USAGE else "failed"
        print(f"anpr: {word}: {reply.error}", file=sys.stderr)
    sys.stdout.flush()
    return reply.exit


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
    with connect(args, settings) as client:
        reply = client.call("query", sql=args.sql, reason=args.reason, case=args.case)
    return show(reply, args.format)


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
    interactive = sys.stdin.isatty()

    def prompt(text: str) -> None:
        if interactive:
            print(text, end="", flush=True)

    status = EXIT_OK
    # Decoded here, strictly: the interpreter's own stdin may be lenient (surrogateescape under
    # the C locale) and send undecodable bytes on as text.
    lines = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="strict")
    with connect(args, settings) as client:
        if interactive:
            hello = client.call("hello")
            if not hello.ok:
                return show(hello, args.format)
            names = ", ".join(hello.extra.get("views", ()))
            print(f"role {hello.extra.get('role')}, reason {args.reason}; views: {names}")
        try:
            for text in statements(lines, prompt):
                done = show(client.call("query", sql=text, reason=args.reason, case=args.case),
                             args.format)  # fmt: skip
                if done == EXIT_FAILURE:
                    return done
                status = status or done
        except UnicodeDecodeError as exc:
            # Logged as a refused attempt like any other; the bytes themselves are not sent.
            client.call("query", not_utf8=True, reason=args.reason, case=args.case)
            raise UsageError(
                f"standard input is not UTF-8 text (byte {exc.start} of a line)"
            ) from None
    return status


# --- audit -------------------------------------------------------------------------------


def _add_audit(commands: Commands) -> None:
    actions = group(
        commands,
        "audit",
        "verify and summarise the activity log",
        "The activity log (access.activity_log, default <state.dir>/access/\n"
        "activity.jsonl; on a PostgreSQL lake the catalog database, one log for every query\n"
        "service) is append-only JSON lines with a keyed MAC chain, a head record and\n"
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
    verify.add_argument(
        "--log", type=Path, default=None,
        help="check this file here instead of asking the service (root, service account)",
    )  # fmt: skip
    client_flags(verify)
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
    client_flags(report)


def _audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Root and the service account check the log themselves (they can read it and the audit
    key); anyone else asks the service, which checks its own log against the anchors."""
    import contextlib

    from pipeline.access.identity import access_paths
    from pipeline.files import check_file_place
    from pipeline.lake.backend import Storage

    path = args.log or access_paths(settings).activity_log
    if args.log is not None or Storage.from_settings(settings.lake).kind != "postgres":
        # A folder in the log's place or a file in a folder's is a broken setup (exit 2); a
        # missing log is a finding (exit 1): deleting it must not pass.
        check_file_place(path, "activity log", write=False)
        # Entering the log's folder (0700) is what root and the service account can do.
        local = args.log is not None or os.access(path.parent, os.R_OK | os.X_OK)
    else:  # the log is in the catalog database: whoever holds the audit key checks it
        local = os.access(access_paths(settings).audit_key, os.R_OK)
    if local:
        from pipeline.access.anchors import verify_log
        from pipeline.access.audit import ActivityLog

        with contextlib.closing(ActivityLog.from_settings(settings, args.log)) as log:
            verdict = verify_log(settings, log)
        print(verdict.describe())
        return EXIT_OK if verdict.ok else EXIT_FAILURE
    with connect(args, settings) as client:
        return show(client.call("audit.verify"), "table")


def _audit_report(args: argparse.Namespace, settings: Settings) -> int:
    with connect(args, settings) as client:
        reply = client.call(
            "audit.report", since=args.since.isoformat(), until=args.until.isoformat()
        )
    return show(reply, args.format)
