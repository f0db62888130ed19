"""Starting ``anpr serve``: refuse an untrustworthy setup, then listen until SIGTERM.

In order, before anything listens:

1. Files this process creates are 0600 and folders 0700 (umask 077).
2. The configuration file, if any, belongs to root or to the service account and nobody else
   can write it or its folder: the rules (who has which role, windows, key, log) come from it,
   so whoever can edit it is as trusted as the service.
3. The lake, the state folder and the folders of the key, log and reports are 0700 (created so
   if missing); one that other users can enter is refused with the fix, so is one this account
   cannot write, and an activity-log path that is a folder or not writable.
"""

from __future__ import annotations

import logging
import os
import signal
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from pipeline.access.anchors import AnchorPublisher
from pipeline.access.identity import access_paths
from pipeline.config import Settings
from pipeline.errors import UsageError
from pipeline.files import check_file_place, check_private, private_files
from pipeline.service.handlers import Service
from pipeline.service.server import Server

logger = logging.getLogger(__name__)


class UntrustedConfig(UsageError):
    """The service's configuration could be edited by someone other than root or the service."""


def check_trusted_config(path: Path) -> None:
    """Refuse a config file (or its folder) owned or writable by anyone but root or us."""
    me = os.geteuid()
    for item, what in ((path, "configuration file"), (path.resolve().parent, "its folder")):
        try:
            info = item.stat()
        except OSError as exc:
            raise UsageError(f"cannot read the {what} {item}: {exc.strerror}") from None
        mode = stat.S_IMODE(info.st_mode)
        if info.st_uid not in (0, me):
            raise UntrustedConfig(
                f"{what} {item} belongs to uid {info.st_uid}: the service only takes its rules "
                f"from a file of root or the service account (chown root {item})"
            )
        if mode & 0o022 and not (item.is_dir() and mode & stat.S_ISVTX and info.st_uid == 0):
            raise UntrustedConfig(
                f"{what} {item} is writable by other users (mode {mode:04o}): chmod go-w {item}"
            )


def serve(
    settings: Settings,
    config_file: Path | None,
    *,
    on_ready: Callable[[Server], None] | None = None,
) -> int:
    """Run the query service until SIGTERM or SIGINT (steps in the module docstring)."""
    private_files()
    if config_file is not None:
        check_trusted_config(config_file)
    check_private(settings.lake.path, "lake folder")
    check_private(settings.state.dir, "state folder")
    paths = access_paths(settings)
    for folder, what in (
        (paths.key_file.parent, "pseudonym key folder"),
        (paths.activity_log.parent, "activity log folder"),
        (paths.reports_dir, "reports folder"),
    ):
        check_private(folder, what)
    check_file_place(paths.activity_log, "activity log", write=True)
    # The log's head goes to the compacted anchor topic, outside this host (ADR 0004, issue 15).
    service = Service(settings, anchors=AnchorPublisher.from_settings(settings))
    server = Server(service, settings.serve)
    try:
        server.bind()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: server.stop())
        tls = server.tls_address
        logger.info(
            "query service listening on %s%s for %d users",
            settings.serve.socket,
            f" and TLS {tls[0]}:{tls[1]}" if tls else "",
            len(settings.access.users),
        )
        # The analyst's and statistics' copies are made while the first clients connect.
        threading.Thread(target=service.warm, name="anpr-serve-warm", daemon=True).start()
        if on_ready is not None:
            on_ready(server)
        server.serve()
    finally:
        service.close()
    logger.info("query service stopped")
    return 0
