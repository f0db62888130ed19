"""Writing files so that a reader sees the old content or the new, never half of either."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from pipeline.errors import UsageError


def write_atomic(path: Path, data: bytes | str, *, sync_dir: bool = False) -> Path:
    """Write ``data`` (text as UTF-8) to ``path``: temp file in the same folder (mode 0600, as
    ``mkstemp`` makes it), fsync, ``os.replace``. ``sync_dir`` also fsyncs the folder, so the
    rename itself survives a power cut (the activity log needs that)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


PRIVATE_UMASK = 0o077  # files 0600, folders 0700: only the service account reads personal data


class OpenToOthers(UsageError):
    """A folder of personal data that users other than its owner can read, write or enter."""


def private_files() -> None:
    """From now on this process creates files 0600 and folders 0700, whatever the caller's
    umask (child processes, the Kafka broker included, inherit it)."""
    os.umask(PRIVATE_UMASK)


def check_private(folder: Path, what: str) -> None:
    """Refuse a ``folder`` of personal data that other users can reach; create it 0700 if
    missing. The folder's own mode is the boundary: nobody else can enter a 0700 folder, so
    nothing below it is readable to them whatever its mode."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = stat.S_IMODE(folder.stat().st_mode)
    except (NotADirectoryError, FileExistsError):  # a file in its place, or in a parent's
        raise UsageError(f"{what} {folder} is not a folder") from None
    except OSError as exc:
        raise UsageError(f"{what} {folder} is not usable: {exc.strerror}") from None
    if not folder.is_dir():
        raise UsageError(f"{what} {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {folder} is not writable by this user (uid {os.geteuid()})")
    if mode & 0o077:
        raise OpenToOthers(
            f"{what} {folder} is open to other users (mode {mode:04o}); only the service "
            f"account may read it. Fix: chmod -R go-rwx {folder}"
        )


def check_file_place(path: Path, what: str, *, write: bool) -> None:
    """Refuse (one line, exit 2) a path where a file we need cannot be: a folder in its place,
    a file where one of its folders should be, or (``write``) no permission to write it or
    in its folder. A missing file is left to the caller (created, or a finding). Whatever this
    user may not look into is left to the caller too (another account's private folder)."""
    try:
        if path.is_dir():
            raise UsageError(f"{what} {path} is a folder, not a file")
        ancestor = next(p for p in path.parents if p.exists())
        if not ancestor.is_dir():
            raise UsageError(f"{what} {path} cannot be: {ancestor} is not a folder")
        exists = path.exists()
    except PermissionError:
        return
    if not write:
        if exists and not os.access(path, os.R_OK):
            raise UsageError(f"{what} {path} is not readable by this user (uid {os.geteuid()})")
        return
    if exists and not os.access(path, os.W_OK):
        raise UsageError(f"{what} {path} is not writable by this user (uid {os.geteuid()})")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path} cannot be written: {ancestor} is not writable by this "
                         f"user (uid {os.geteuid()})")  # fmt: skip
