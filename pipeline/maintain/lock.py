"""One ``anpr maintain`` per lake at a time, whichever host it runs on: a lock in the catalog
database (:mod:`pipeline.lake.locks`; a file lock beside an embedded SQLite catalog).

Example::

    with maintain_lock(storage, wait_s=0.0):
        ...  # the only maintenance run on this lake
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pipeline.errors import Transient
from pipeline.lake.backend import Storage
from pipeline.lake.locks import LockSpec, exclusive, holder_name

__all__ = ["APPLICATION", "LOCK_KEY", "MaintainBusy", "holder_name", "maintain_lock"]

# pg_advisory_lock's key: a constant of this application ("anpr" + "mtn" as bytes).
LOCK_KEY = 0x616E7072_6D746E
APPLICATION = "anpr-maintain"


class MaintainBusy(Transient):
    """Another ``anpr maintain`` holds the lake's maintenance lock."""

    def __init__(self, holder: str) -> None:
        super().__init__(
            f"another anpr maintain is running on this lake ({holder}); this one stops without "
            "touching the lake. Run it again later, or pass --wait SECONDS to queue behind it."
        )
        self.holder = holder


@contextlib.contextmanager
def maintain_lock(storage: Storage, *, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the lake's maintenance lock for the block; wait up to ``wait_s`` seconds for it,
    then raise :class:`MaintainBusy`."""
    sqlite = storage.sqlite_file
    file = sqlite.with_name(sqlite.name + ".maintain.lock") if sqlite is not None else None
    spec = LockSpec(LOCK_KEY, APPLICATION, file, MaintainBusy)
    with exclusive(storage, spec, wait_s=wait_s):
        yield
