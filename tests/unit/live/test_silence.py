from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.codec.vendors import VENDOR_RULES
from pipeline.config import LiveSettings
from pipeline.live.silence import NightHours, SilenceMonitor, Thresholds
from pipeline.reference.sites import DEFAULT_REGISTRY, load_registry

OSLO = zoneinfo.ZoneInfo("Europe/Oslo")
NOON = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)  # 12:00 in Oslo (CET)
MIDNIGHT = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)  # 00:00 in Oslo


def monitor() -> SilenceMonitor:
    return SilenceMonitor(
        {"NO-A": Thresholds(60, 600), "NO-B": Thresholds(10, 10)}, NightHours(22, 6, OSLO)
    )


@pytest.mark.parametrize(
    ("local_hour", "night"),
    [(21, False), (22, True), (0, True), (5, True), (6, False), (12, False)],
)
def test_night_hours_wrap_midnight_in_local_time(local_hour: int, night: bool) -> None:
    at = datetime(2026, 7, 1, local_hour, 30, tzinfo=OSLO)  # summer time: UTC+2
    assert NightHours(22, 6, OSLO).is_night(at.astimezone(UTC)) is night


def test_night_hours_without_wrapping_and_empty() -> None:
    at = datetime(2026, 7, 1, 3, 0, tzinfo=OSLO)
    assert NightHours(1, 5, OSLO).is_night(at)
    assert not NightHours(5, 5, OSLO).is_night(at)


def test_a_camera_is_silent_once_its_threshold_has_passed() -> None:
    m = monitor()
    m.observe("CAM-1", "NO-A", NOON.timestamp())
    [state] = m.evaluate(NOON + timedelta(seconds=60))
    assert (state.camera_id, state.site_id, state.threshold_s, state.silent) == (
        "CAM-1",
        "NO-A",
        60,
        False,
    )
    [state] = m.evaluate(NOON + timedelta(seconds=61))
    assert state.silent
    assert state.last_read == NOON.timestamp()


def test_the_night_threshold_applies_at_night() -> None:
    m = monitor()
    m.observe("CAM-1", "NO-A", MIDNIGHT.timestamp())
    [state] = m.evaluate(MIDNIGHT + timedelta(seconds=300))
    assert (state.threshold_s, state.silent) == (600, False)


def test_a_new_read_ends_the_silence_and_late_reads_do_not_move_time_back() -> None:
    m = monitor()
    m.observe("CAM-1", "NO-B", NOON.timestamp())
    assert m.evaluate(NOON + timedelta(seconds=20))[0].silent
    m.observe_many({("CAM-1", "NO-B"): (NOON + timedelta(seconds=19)).timestamp()})
    m.observe("CAM-1", "NO-B", NOON.timestamp())  # a buffered, older read arriving late
    [state] = m.evaluate(NOON + timedelta(seconds=20))
    assert not state.silent
    assert state.last_read == (NOON + timedelta(seconds=19)).timestamp()


def test_cameras_that_never_read_are_not_watched() -> None:
    assert monitor().evaluate(NOON) == []


def test_thresholds_come_from_the_site_registry_else_the_settings() -> None:
    registry = load_registry(DEFAULT_REGISTRY, VENDOR_RULES)
    m = SilenceMonitor.for_registry(registry, LiveSettings(silence_day_s=123, silence_night_s=456))
    m.observe("SVI-L1-F", "NO-SVINESUND", NOON.timestamp())
    m.observe("ORJ-L2-F", "NO-ORJE", NOON.timestamp())
    by_camera = {s.camera_id: s.threshold_s for s in m.evaluate(NOON)}
    assert by_camera == {"SVI-L1-F": 300, "ORJ-L2-F": 123}
    by_camera = {s.camera_id: s.threshold_s for s in m.evaluate(MIDNIGHT)}
    assert by_camera == {"SVI-L1-F": 1800, "ORJ-L2-F": 456}
