"""What every command module shares: exit codes, the help formatter, argument types, helpers.

Imports here stay light (standard library and ``pipeline.config``) so that building the parser
never loads duckdb, pyarrow or numpy; anything heavier is imported inside a function.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeAlias

from pipeline.config import Settings

if TYPE_CHECKING:
    from pipeline.reference.sites import SiteRegistry

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

Handler: TypeAlias = Callable[[argparse.Namespace, Settings], int]
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class Command(Protocol):
    """A command module: ``add_parser`` registers its parser(s), each leaf with a handler.

    A handler (``run`` for a single command) takes the parsed arguments and the settings and
    returns the exit code; it imports its stage when called, never at module level.
    """

    def add_parser(self, commands: Commands) -> None: ...


class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep our paragraphs and examples as written, and show defaults."""


def sub(
    commands: Commands,
    name: str,
    help_text: str,
    description: str,
    handler: Handler,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    """A leaf command: its parser, with ``handler`` as what ``main`` calls."""
    parser = commands.add_parser(
        name,
        help=help_text,
        description=description,
        epilog=epilog,
        formatter_class=Formatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def group(
    commands: Commands,
    name: str,
    help_text: str,
    description: str,
    *,
    dest: str = "action",
    metavar: str = "ACTION",
) -> Commands:
    """A command with sub-commands (``anpr kafka start``): the sub-command parsers."""
    parser = commands.add_parser(
        name, help=help_text, description=description, formatter_class=Formatter
    )
    return parser.add_subparsers(dest=dest, metavar=metavar, required=True)


# --- argument types (argparse turns ArgumentTypeError into exit 2 with the message) --------


def utc_time(text: str) -> datetime:
    """An RFC 3339 time with a zone, kept in that zone."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no zone: add Z or an offset like +01:00")
    return value


def instant(text: str) -> datetime:
    """An ISO 8601 time with a zone, converted to UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2026-05-01T00:00:00Z")
    return value.astimezone(UTC)


def day(text: str) -> date:
    """A calendar day, YYYY-MM-DD."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def formats(text: str) -> tuple[str, ...]:
    """Comma-separated camera formats, each a registered vendor."""
    from pipeline.codec.vendors import VENDORS

    chosen = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [f for f in chosen if f not in VENDORS]
    if not chosen or unknown:
        raise argparse.ArgumentTypeError(f"formats must be among {', '.join(VENDORS)}")
    return chosen


def positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse type: ``kind`` of the text, refused (exit 2) unless above zero."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def lake_flag(parser: argparse.ArgumentParser) -> None:
    """``--lake``: overrides ``lake.path``."""
    parser.add_argument("--lake", dest="lake__path", type=Path, default=None, help="lake path")


# --- helpers for handlers -----------------------------------------------------------------


def registry(settings: Settings) -> SiteRegistry:
    """The site registry of the settings (or the packaged one), validated."""
    from pipeline.codec.vendors import VENDOR_RULES
    from pipeline.reference.sites import DEFAULT_REGISTRY, load_registry

    return load_registry(settings.ingest.sites_registry or DEFAULT_REGISTRY, VENDOR_RULES)


def private_data(settings: Settings, *, lake: bool = True) -> None:
    """Refuse a lake or state folder that other users can enter (``files.check_private``):
    for every command that writes personal data."""
    from pipeline.files import check_private

    if lake:
        check_private(settings.lake.path, "lake folder")
    check_private(settings.state.dir, "state folder")


def jars_dir(settings: Settings) -> Path:
    """Where the local Kafka broker's jars are cached."""
    return settings.state.dir / "cache" / "kafka"


def progress_line(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
