"""One maintenance run per lake: the embedded lake's lock (PostgreSQL's is tested against a real
server in tests/integration/cluster/)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pipeline.lake.backend import Storage
from pipeline.maintain.lock import MaintainBusy, holder_name, maintain_lock


def test_a_second_run_stops_at_once_naming_the_first(tmp_path: Path) -> None:
    storage = Storage.embedded(tmp_path / "lake")
    with maintain_lock(storage), pytest.raises(MaintainBusy) as caught, maintain_lock(storage):
        pass
    assert caught.value.holder == holder_name()
    assert "--wait" in str(caught.value)
    with maintain_lock(storage):  # released: the next run gets it
        pass


def test_a_waiting_run_gets_the_lock_once_the_first_ends(tmp_path: Path) -> None:
    storage = Storage.embedded(tmp_path / "lake")
    got = threading.Event()
    with maintain_lock(storage):
        waiter = threading.Thread(target=lambda: _take(storage, got))
        waiter.start()
        assert not got.wait(0.3)  # still held: the waiter waits
    waiter.join(timeout=10)
    assert got.is_set()


def _take(storage: Storage, got: threading.Event) -> None:
    with maintain_lock(storage, wait_s=10.0):
        got.set()
