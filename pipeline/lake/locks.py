"""Locks in the catalog database: one holder at a time, whichever host it runs on.

On PostgreSQL a lock is a session advisory lock on a connection of its own, so the server
releases it when the holder's connection ends, however the holder died (no stale lock to clean
up after a kill -9 or a lost host). An embedded SQLite lake lives on one host by design, so a
file lock (``flock``) does the same job there. ``anpr maintain`` (one run per lake) and
``anpr live`` (one active instance per consumer group, the others on standby) hold one each.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from pipeline.lake.backend import Storage
from pipeline.lake.postgres_catalog import connect

logger = logging.getLogger(__name__)

_POLL_S = 0.5
_SERVER_KEEPALIVES = (
    "SET tcp_keepalives_idle = 5",
    "SET tcp_keepalives_interval = 2",
    "SET tcp_keepalives_count = 3",
)


@dataclass(frozen=True)
class LockSpec:
    """Which lock: its advisory key and the application name its holders show on PostgreSQL,
    the file it is on an embedded lake, and the error a holder that gave up raises."""

    key: int  # a positive 63-bit constant of the application
    application: str  # PostgreSQL application_name prefix: names the holder to the others
    file: Path | None  # the lock file when the catalog is not PostgreSQL
    busy: Callable[[str], Exception]  # holder description -> the error to raise


class _Wait:
    """The wait for a lock that is held: a deadline, and a word to the caller when it starts."""

    def __init__(self, wait_s: float, on_wait: Callable[[str], None] | None) -> None:
        self._deadline = time.monotonic() + wait_s
        self._on_wait = on_wait

    def or_raise(self, spec: LockSpec, holder: Callable[[], str]) -> None:
        """Sleep a poll interval, or raise ``spec.busy`` once the deadline has passed."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise spec.busy(holder())
        if self._on_wait is not None:
            self._on_wait(holder())
            self._on_wait = None
        time.sleep(min(_POLL_S, left))


def holder_name() -> str:
    """How this process names itself to other hosts (no personal data: host and pid)."""
    return f"host {socket.gethostname()} pid {os.getpid()}"


@contextlib.contextmanager
def exclusive(
    storage: Storage,
    spec: LockSpec,
    *,
    wait_s: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
    on_lost: Callable[[], None] | None = None,
    check_every_s: float = 2.0,
) -> Iterator[None]:
    """Hold ``spec``'s lock for the block; wait up to ``wait_s`` seconds (may be ``inf``) for
    it, then raise ``spec.busy(holder)``. ``on_wait(holder)`` is called once if it must wait.

    ``on_lost`` (PostgreSQL only) is called from a watcher thread if the lock's connection
    fails while the block runs: the server has then dropped the lock, and another process
    may hold it already.
    """
    if storage.kind == "postgres":
        with _postgres_lock(storage, spec, _Wait(wait_s, on_wait), on_lost, check_every_s):
            yield
    elif spec.file is not None:
        with _file_lock(spec.file, spec, _Wait(wait_s, on_wait)):
            yield
    else:
        raise ValueError(f"{spec.application}: no lock file for a {storage.kind} catalog")


@contextlib.contextmanager
def _postgres_lock(
    storage: Storage,
    spec: LockSpec,
    wait: _Wait,
    on_lost: Callable[[], None] | None,
    check_every_s: float,
) -> Iterator[None]:
    with connect(
        storage,
        application=f"{spec.application} {holder_name()}",
        # A holder cut off from the server notices within seconds: a probe query fails
        # instead of waiting for the kernel's default TCP timeouts (minutes to hours).
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=3,
        tcp_user_timeout=10_000,
    ) as conn:
        # And the server frees the lock of a holder whose host vanished after ~11 s of
        # silence, not after the OS default of two hours.
        for statement in _SERVER_KEEPALIVES:
            conn.execute(statement)
        while True:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", [spec.key]).fetchone()
            if row is not None and row[0]:
                break
            wait.or_raise(spec, lambda: _postgres_holder(conn, spec))
        logger.info("%s: holding the lock", spec.application)
        stop = threading.Event()
        watcher = None
        if on_lost is not None:
            watcher = threading.Thread(
                target=_watch, args=(conn, stop, on_lost, check_every_s), daemon=True
            )
            watcher.start()
        try:
            yield
        finally:
            stop.set()
            if watcher is not None:
                watcher.join()
            conn.execute("SELECT pg_advisory_unlock(%s)", [spec.key])


def _watch(
    conn: psycopg.Connection[tuple[object, ...]],
    stop: threading.Event,
    on_lost: Callable[[], None],
    every_s: float,
) -> None:
    # The connection is this thread's alone until stop is set (the owner waits for it).
    while not stop.wait(every_s):
        try:
            conn.execute("SELECT 1")
        except psycopg.Error:
            on_lost()
            return


def _postgres_holder(conn: psycopg.Connection[tuple[object, ...]], spec: LockSpec) -> str:
    # An advisory lock on a bigint key shows as classid = high 32 bits, objid = low 32 bits.
    row = conn.execute(
        "SELECT a.application_name, a.client_addr::text, a.backend_start FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
        "AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
        [spec.key >> 32, spec.key & 0xFFFFFFFF],
    ).fetchone()
    if row is None:
        return "holder unknown"
    name = str(row[0]).removeprefix(spec.application).strip() or "unnamed client"
    return f"{name}, since {row[2]:%Y-%m-%d %H:%M:%S %Z}"


@contextlib.contextmanager
def _file_lock(path: Path, spec: LockSpec, wait: _Wait) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:

        def holder() -> str:
            handle.seek(0)
            return handle.read().strip() or "holder unknown"

        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                wait.or_raise(spec, holder)
        handle.seek(0)
        handle.truncate()
        handle.write(holder_name())
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
