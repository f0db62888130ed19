"""``anpr serve``: the query service, run by the service account (ADR 0004)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli._common import Commands, lake_flag, sub
from pipeline.config import DEFAULT_CONFIG_FILE, Settings


def add_parser(commands: Commands) -> None:
    serve = sub(
        commands,
        "serve",
        "the query service that answers query, sql, audit and subject (service account)",
        "Run the query service until SIGTERM. Run it as the service account, the only user\n"
        "that can read the lake, the pseudonym key and the activity log. Local users connect\n"
        "to serve.socket as themselves (the kernel tells the service who they are); remote\n"
        "users over TLS (serve.tls_listen) with a client certificate from serve.tls_client_ca\n"
        "whose common name is their user name. Roles, reasons, windows, key and log come\n"
        "from this service's configuration only, which must belong to root or the service\n"
        "account and be writable by nobody else. Files it creates are 0600, folders 0700; it\n"
        "refuses a lake or state folder that other users can enter.",
        run,
        epilog="example (systemd: deploy/systemd/anpr-serve.service):\n"
        "  sudo -u anpr anpr --config /etc/anpr/anpr.toml serve",
    )
    serve.add_argument("--socket", dest="serve__socket", type=Path, default=None,
                       help="Unix socket path (serve.socket)")  # fmt: skip
    serve.add_argument("--tls-listen", dest="serve__tls_listen", default=None,
                       help="HOST:PORT for TLS clients (serve.tls_listen)")  # fmt: skip
    lake_flag(serve)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.service.run import serve

    config = args.config
    if config is None and DEFAULT_CONFIG_FILE.is_file():
        config = DEFAULT_CONFIG_FILE
    return serve(settings, config)
