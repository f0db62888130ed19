"""One ``anpr maintain`` per lake at a time, whichever host it runs on.

The lock lives where every host already meets: in the catalog database. On PostgreSQL it is a
session advisory lock on a connection of its own, so the server releases it when the holder's
connection ends, however the holder died (no stale lock to clean up after a kill -9 or a lost
host). An embedded SQLite lake lives on one host by design, so a file lock beside the catalog
does the same job there.

Example::

    with maintain_lock(storage, wait_s=0.0):
        ...  # the only maintenance run on this lake
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

from pipeline.errors import Transient
from pipeline.lake.backend import Storage
from pipeline.lake.postgres_catalog import connect

logger = logging.getLogger(__name__)

# pg_advisory_lock's key: a constant of this application ("anpr" + "mtn" as bytes).
LOCK_KEY = 0x616E7072_6D746E
APPLICATION = "anpr-maintain"
_POLL_S = 0.5


class MaintainBusy(Transient):
    """Another ``anpr maintain`` holds the lake's maintenance lock."""

    def __init__(self, holder: str) -> None:
        super().__init__(
            f"another anpr maintain is running on this lake ({holder}); this one stops without "
            "touching the lake. Run it again later, or pass --wait SECONDS to queue behind it."
        )
        self.holder = holder


def holder_name() -> str:
    """How this process names itself to other hosts (no personal data: host and pid)."""
    return f"host {socket.gethostname()} pid {os.getpid()}"


@contextlib.contextmanager
def maintain_lock(storage: Storage, *, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the lake's maintenance lock for the block; wait up to ``wait_s`` seconds for it,
    then raise :class:`MaintainBusy`."""
    if storage.kind == "postgres":
        with _postgres_lock(storage, wait_s):
            yield
    else:
        sqlite = storage.sqlite_file
        assert sqlite is not None  # the two kinds Storage knows
        with _file_lock(sqlite.with_name(sqlite.name + ".maintain.lock"), wait_s):
            yield


@contextlib.contextmanager
def _postgres_lock(storage: Storage, wait_s: float) -> Iterator[None]:
    with connect(storage, application=f"{APPLICATION} {holder_name()}") as conn:
        deadline = time.monotonic() + wait_s
        while True:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY]).fetchone()
            if row is not None and row[0]:
                break
            if time.monotonic() >= deadline:
                raise MaintainBusy(_postgres_holder(conn))
            time.sleep(min(_POLL_S, max(deadline - time.monotonic(), 0.0)))
        logger.info("maintain: holding the lake's maintenance lock")
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])


def _postgres_holder(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    # An advisory lock on a bigint key shows as classid = high 32 bits, objid = low 32 bits.
    row = conn.execute(
        "SELECT a.application_name, a.client_addr::text, a.backend_start FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
        "AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
        [LOCK_KEY >> 32, LOCK_KEY & 0xFFFFFFFF],
    ).fetchone()
    if row is None:
        return "holder unknown"
    name = str(row[0]).removeprefix(APPLICATION).strip() or "unnamed client"
    return f"{name}, since {row[2]:%Y-%m-%d %H:%M:%S %Z}"


@contextlib.contextmanager
def _file_lock(path: Path, wait_s: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    raise MaintainBusy(handle.read().strip() or "holder unknown") from None
                time.sleep(min(_POLL_S, max(deadline - time.monotonic(), 0.0)))
        handle.seek(0)
        handle.truncate()
        handle.write(holder_name())
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
