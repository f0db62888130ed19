"""``anpr config``: the effective settings, secrets masked."""

from __future__ import annotations

import argparse
import json

from pipeline.cli._common import EXIT_OK, Commands, sub
from pipeline.config import Settings


def add_parser(commands: Commands) -> None:
    sub(
        commands,
        "config",
        "print the effective settings (secrets masked)",
        "Print the settings after the TOML file, ANPR_* variables and flags are applied.\n"
        "Secrets (passwords, keys, tokens) are shown as ********.",
        run,
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(settings.redacted(), indent=2, ensure_ascii=False))
    return EXIT_OK
