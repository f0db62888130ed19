"""Local helper processes the tool starts for development and tests (Kafka, PostgreSQL, S3Proxy).

The same few rules for each: a lock file serialises start and stop on one state folder, a pid
file names the process only once it answered a client, a process is signalled only after its
command line proved it ours, and a stop is SIGTERM first, SIGKILL only if it hangs. None of this
guards the data path: it only keeps two ``start`` commands from launching two servers.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import BrokerError

logger = logging.getLogger(__name__)

# Processes this process started. Holding the Popen objects keeps subprocess from warning that
# a child is "still running" when a start function returns, and lets _reap() wait through them
# instead of racing subprocess's own waitpid.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@contextlib.contextmanager
def locked(lock: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock`` (created with its folder) for the block."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def adopt(proc: subprocess.Popen[bytes]) -> None:
    """Remember a child we started, so that it is reaped when it exits."""
    _CHILDREN[proc.pid] = proc


def _reap(pid: int) -> None:
    # A server that is our own child (tests) stays a zombie until it is waited for.
    proc = _CHILDREN.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            del _CHILDREN[pid]
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def read_pid(path: Path) -> int | None:
    """The pid in a pid file, or None when there is none."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def cmdline(pid: int) -> list[str]:
    """The argv of a live process; empty for a zombie or a pid that is gone."""
    _reap(pid)
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part for part in raw.decode("utf-8", "replace").split("\0") if part]


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a dead child of ours is reaped on the way."""
    try:
        fields = dict(
            line.split(":", 1)
            for line in Path(f"/proc/{pid}/status").read_text(errors="replace").splitlines()
            if ":" in line
        )
    except OSError:
        return False
    # A JVM's main thread can exit before its shutdown-hook threads do: the process then shows
    # state Z while it still runs. Only a zombie with no thread left is really gone.
    state = fields.get("State", "").split()[:1]
    threads = fields.get("Threads", "0").strip()
    if state and state[0] in {"Z", "X"} and (not threads.isdigit() or int(threads) <= 1):
        _reap(pid)
        return False
    return True


def terminate(pid: int, timeout: float, what: str = "process") -> None:
    """SIGTERM (a clean shutdown), then SIGKILL if ``pid`` is still there after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if wait_gone(pid, wait):
            return
        if sig == signal.SIGTERM:
            logger.warning("%s %d ignored SIGTERM for %.0f s; killing it", what, pid, wait)
    raise BrokerError(f"{what} {pid} did not exit after SIGKILL")


def wait_gone(pid: int, timeout: float) -> bool:
    """Poll until ``pid`` has exited; False if it still runs after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


def port_free(host: str, port: int) -> bool:
    """True if nothing listens on ``host:port`` (a port in TIME_WAIT counts as free)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Same option servers set, so a port in TIME_WAIT after our own stop counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file, or "" if it does not exist."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def spawn(
    argv: list[str], *, log: Path, cwd: Path, user: int | None = None
) -> subprocess.Popen[bytes]:
    """Start a server in its own session (Ctrl-C in the starting terminal does not stop it),
    its output appended to ``log``, as ``user`` (a uid) when given."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            user=user,
            group=None if user is None else pwd.getpwuid(user).pw_gid,
            extra_groups=None if user is None else [],
        )
    adopt(proc)
    return proc
