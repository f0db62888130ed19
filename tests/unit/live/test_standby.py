"""One active `anpr live` per group: the embedded lake's lock (a file in the state folder).
PostgreSQL's, with a SIGKILLed active instance: tests/integration/cluster/test_cluster_live.py."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pipeline.config import Settings, load_settings
from pipeline.errors import ConfigError
from pipeline.lake.locks import holder_name
from pipeline.live.standby import active, lock_spec


def _settings(tmp_path: Path, group: str = "anpr-live") -> Settings:
    return load_settings(
        None,
        env={},
        overrides={
            "state.dir": tmp_path / "state",
            "lake.path": tmp_path / "lake",
            "live.consumer_group": group,
        },
    )


def test_a_second_instance_waits_on_standby_until_the_active_one_stops(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    released = threading.Event()
    overlapped: list[bool] = []
    took_over = threading.Event()

    def standby() -> None:
        with active(settings):
            overlapped.append(not released.is_set())
            took_over.set()

    with active(settings):
        thread = threading.Thread(target=standby)
        thread.start()
        assert not took_over.wait(1.0)  # the lock is held: the standby waits
        released.set()  # last step before the lock goes: the standby may run only after this
    thread.join(timeout=10)
    assert took_over.is_set()
    assert overlapped == [False]  # its block never ran beside the active one's


def test_the_standby_names_the_active_instance_while_it_waits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path)
    done = threading.Event()

    def standby() -> None:
        with active(settings):
            done.set()

    with caplog.at_level("INFO", logger="pipeline.live.standby"), active(settings):
        thread = threading.Thread(target=standby)
        thread.start()
        assert not done.wait(1.0)
        assert f"on standby: {holder_name()} is active" in caplog.text
    thread.join(timeout=10)
    assert done.is_set()


def test_each_group_has_its_own_lock_and_a_group_name_is_checked(tmp_path: Path) -> None:
    one, other = lock_spec(_settings(tmp_path, "live-a")), lock_spec(_settings(tmp_path, "live-b"))
    assert one.key != other.key
    assert 0 < one.key < 2**63
    assert one.key == lock_spec(_settings(tmp_path, "live-a")).key
    assert one.file != other.file
    with active(_settings(tmp_path, "live-a")), active(_settings(tmp_path, "live-b")):
        pass  # two groups are active side by side
    with pytest.raises(ConfigError):
        lock_spec(_settings(tmp_path, "../escape"))
