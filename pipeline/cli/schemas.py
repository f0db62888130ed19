"""``anpr schemas``: write or check the generated schema files."""

from __future__ import annotations

import argparse

from pipeline.cli._common import EXIT_FAILURE, EXIT_OK, Commands, group, sub
from pipeline.config import Settings


def add_parser(commands: Commands) -> None:
    actions = group(
        commands,
        "schemas",
        "write or check the schema files under pipeline/data/schemas/",
        "The JSON Schema for producers (plate_read-1.schema.json) and the lake table\n"
        "descriptions are generated from pipeline/schemas.py, the one source of truth that the\n"
        "decoder enforces. They ship in the package (pipeline/data/schemas/); in a checkout\n"
        "`write` regenerates the committed files.",
    )
    sub(
        actions,
        "write",
        "regenerate the files",
        "Regenerate pipeline/data/schemas/*.json.",
        run_write,
    )
    sub(
        actions,
        "check",
        "exit 1 if a file is stale",
        "Exit 1 naming every schema file that differs from the code.",
        run_check,
    )


def run_write(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline import schema_files

    for path in schema_files.write():
        print(f"wrote {path}")
    return EXIT_OK


def run_check(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline import schema_files

    stale = schema_files.stale()
    for name in stale:
        print(f"stale: {schema_files.SCHEMA_DIR / name} (run `anpr schemas write`)")
    return EXIT_FAILURE if stale else EXIT_OK
