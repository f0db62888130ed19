"""``anpr subject``: data-subject requests (access, rectify, erase, restrict), dpo only.

Clients of the query service, which checks the role and runs them (``service.subjects``)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from pipeline.cli._common import Commands, day, group, sub
from pipeline.cli.access import who_flags
from pipeline.config import Settings


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
        "entry whose results included it. The service keeps no copy: the file (mode 0600)\n"
        "goes to --out (default: the current folder); its path is printed.",
        _subject_access,
    )
    access.add_argument("--plate", required=True)
    access.add_argument("--format", choices=["json", "csv"], default="json")
    access.add_argument(
        "--out", type=Path, default=Path("."), help="folder for the report (written 0600)"
    )
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


def _subject_request(args: argparse.Namespace, settings: Settings, kind: str) -> int:
    """Send the request to the service, which runs it for the dpo (``service.subjects``)."""
    from pipeline.cli.access import connect, show

    until = getattr(args, "until", None)
    with connect(args, settings) as client:
        reply = client.call(
            f"subject.{kind}",
            plate=args.plate,
            case=args.case,
            event_id=getattr(args, "event_id", None),
            note=getattr(args, "reason", None),
            until=until.isoformat() if until is not None else None,
            format=getattr(args, "format", None),
        )
    files = reply.extra.get("files") or {}
    if reply.ok and files:
        from pipeline.access.render import write_private

        written = [
            write_private(args.out, Path(str(name)).name, str(text)) for name, text in files.items()
        ]
        reply = dataclasses.replace(
            reply, out=reply.out.rstrip("\n") + ": " + ", ".join(map(str, written)) + "\n"
        )
    return show(reply, "table")


def _subject_access(args: argparse.Namespace, settings: Settings) -> int:
    return _subject_request(args, settings, "access")


def _subject_rectify(args: argparse.Namespace, settings: Settings) -> int:
    return _subject_request(args, settings, "rectify")


def _subject_erase(args: argparse.Namespace, settings: Settings) -> int:
    return _subject_request(args, settings, "erase")


def _subject_restrict(args: argparse.Namespace, settings: Settings) -> int:
    return _subject_request(args, settings, "restrict")


def _unrestrict(args: argparse.Namespace, settings: Settings) -> int:
    return _subject_request(args, settings, "unrestrict")
