"""One active ``anpr live`` per consumer group; any other instance waits on standby.

faust's GlobalTables do not let several instances of the app share the work (ADR 0002), so a
second instance is a standby: it builds the app, then blocks on the group's lock in the catalog
database (:mod:`pipeline.lake.locks`: a PostgreSQL session advisory lock, or a file lock in the
state folder on an embedded lake) and starts consuming only once it holds it. The server drops
the lock the moment the active instance's connection ends, however it died, so the standby
takes over within one poll (0.5 s) plus faust's start: the group's rebalance, which waits out
the dead member's session (:data:`SESSION_TIMEOUT_S`), and the tables' recovery. ADR 0005.

If the active instance loses its lock connection (a PostgreSQL restart), the server has dropped
the lock and a standby may already hold it: the instance exits at once (exit 1), so that two
never consume together; its supervisor starts it again, as a standby.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator

import psycopg

from pipeline.config import Settings
from pipeline.errors import ConfigError, Transient
from pipeline.lake.backend import Storage
from pipeline.lake.locks import LockSpec, exclusive

logger = logging.getLogger(__name__)

APPLICATION = "anpr-live"
# faust's consumer session: how long the group waits for a member that stopped heartbeating
# before it hands its partitions on (faust's default of 60 s would exceed the 30 s takeover).
SESSION_TIMEOUT_S = 10.0
HEARTBEAT_INTERVAL_S = 3.0
EXIT_LOST = 1
_GROUP = re.compile(r"[A-Za-z0-9._-]{1,200}")
_RETRY_S = 2.0


class LiveBusy(Transient):
    """Another instance of the group is active (raised only by a bounded wait)."""

    def __init__(self, holder: str) -> None:
        super().__init__(f"another anpr live of this group is active ({holder})")


def lock_spec(settings: Settings) -> LockSpec:
    """The lock of ``live.consumer_group``: one advisory key per group, or a file beside the
    instance's faust data in the state folder."""
    group = settings.live.consumer_group
    if not _GROUP.fullmatch(group):
        raise ConfigError("live.consumer_group", "may only hold letters, digits and ._-")
    digest = hashlib.sha256(f"{APPLICATION} {group}".encode()).digest()
    key = int.from_bytes(digest[:8], "big") >> 1  # a positive bigint
    file = settings.state.dir / "live" / f"{group}.active.lock"
    return LockSpec(key, APPLICATION, file, LiveBusy)


def _exit_lost() -> None:
    logger.error(
        "anpr live lost its lock in the catalog database (connection failed): exiting so that "
        "a standby alone consumes; start this one again and it waits on standby"
    )
    logging.shutdown()
    os._exit(EXIT_LOST)  # faust's loop may be busy: nothing may run on after the lock is gone


@contextlib.contextmanager
def active(
    settings: Settings,
    *,
    on_lost: Callable[[], None] = _exit_lost,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[None]:
    """Block until this instance is the group's active one, then hold that for the block."""
    storage = Storage.from_settings(settings.lake)
    spec = lock_spec(settings)

    def waiting(holder: str) -> None:
        logger.info("anpr live on standby: %s is active; taking over when it stops", holder)

    while True:
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(
                exclusive(storage, spec, wait_s=math.inf, on_wait=waiting, on_lost=on_lost)
            )
        except psycopg.OperationalError as exc:
            # The catalog database is down: nobody holds the lock, nobody may take it yet.
            logger.warning("anpr live on standby: catalog database unreachable (%s)", exc)
            sleep(_RETRY_S)
            continue
        break
    with stack:
        logger.info("anpr live is the active instance of group %s", settings.live.consumer_group)
        yield
