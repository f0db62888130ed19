"""Camera silence: which cameras that read traffic have gone quiet for too long.

Pure; the clock is passed in. A camera is watched from its first read (a camera that has not
read since the app started is not "normally reading traffic" yet: the alert rule covers a
camera missing altogether with ``absent()`` on its last-read series). It is *silent* when the
newest capture time it reported is older than its site's threshold at that moment: the
site's ``silence_night_s`` during the night hours (``live.night_start_hour`` to
``live.night_end_hour``, local time in ``live.timezone``), else ``silence_day_s``; sites
without values in the site registry (``pipeline/data/sites.toml`` by default) use
``live.silence_day_s`` / ``live.silence_night_s``.

Example::

    monitor = SilenceMonitor.for_registry(registry, settings.live)
    monitor.observe("SVI-L2-F", "NO-SVINESUND", captured_at.timestamp())
    for state in monitor.evaluate(now): ...
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo

from pipeline.config import LiveSettings
from pipeline.reference.sites import SiteRegistry


@dataclass(frozen=True, slots=True)
class Thresholds:
    day_s: float
    night_s: float


@dataclass(frozen=True, slots=True)
class NightHours:
    """Night runs from ``start_hour`` (inclusive) to ``end_hour`` (exclusive), local time;
    it may wrap midnight (22 → 6). Equal hours mean no night at all."""

    start_hour: int
    end_hour: int
    zone: tzinfo

    def is_night(self, at: datetime) -> bool:
        hour = at.astimezone(self.zone).hour
        if self.start_hour <= self.end_hour:
            return self.start_hour <= hour < self.end_hour
        return hour >= self.start_hour or hour < self.end_hour


@dataclass(frozen=True, slots=True)
class CameraState:
    camera_id: str
    site_id: str
    last_read: float  # Unix seconds of the newest capture
    threshold_s: float
    silent: bool


class SilenceMonitor:
    """The newest capture time per camera, and whether each camera is silent now."""

    def __init__(self, thresholds: Mapping[str, Thresholds], night: NightHours) -> None:
        self._thresholds = dict(thresholds)  # site id → thresholds
        self._night = night
        self._last: dict[tuple[str, str], float] = {}  # (camera, site) → newest capture

    @classmethod
    def for_registry(cls, registry: SiteRegistry, live: LiveSettings) -> SilenceMonitor:
        thresholds = {
            site.id: Thresholds(
                site.silence_day_s if site.silence_day_s is not None else live.silence_day_s,
                site.silence_night_s if site.silence_night_s is not None else live.silence_night_s,
            )
            for site in registry.sites
        }
        night = NightHours(
            live.night_start_hour, live.night_end_hour, zoneinfo.ZoneInfo(live.timezone)
        )
        return cls(thresholds, night)

    def observe(self, camera_id: str, site_id: str, captured: float) -> None:
        """Note a read; an older capture arriving late never moves the time back."""
        key = (camera_id, site_id)
        if captured > self._last.get(key, float("-inf")):
            self._last[key] = captured

    def observe_many(self, newest: Mapping[tuple[str, str], float]) -> None:
        for (camera_id, site_id), captured in newest.items():
            self.observe(camera_id, site_id, captured)

    def evaluate(self, now: datetime) -> list[CameraState]:
        """The state of every watched camera at ``now``."""
        night = self._night.is_night(now)
        at = now.timestamp()
        states = []
        for (camera_id, site_id), last in self._last.items():
            limits = self._thresholds[site_id]
            threshold = limits.night_s if night else limits.day_s
            states.append(CameraState(camera_id, site_id, last, threshold, at - last > threshold))
        return states
