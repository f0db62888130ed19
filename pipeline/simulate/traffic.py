"""Synthetic border traffic: vehicles, passages and the camera reads they produce.

Everything here is made up from a seeded random generator: plates are random strings in each
country's format, never taken from a real vehicle or person. The model is simple but has the
shapes the pipeline must handle:

- a diurnal curve (quiet nights, morning and afternoon peaks) and busier weekends;
- Norwegian shoppers crossing to Sweden and back within hours (round trips), foreign
  commuters and lorries, ferry traffic in bursts around departures;
- each passage read by every camera of its lane (front and rear), with slightly different
  confidence and a few seconds apart, and occasionally retransmitted with the same event id.

The generator is pure (no Kafka, no clock): :func:`plate_reads` yields ``(key, value)`` pairs
in capture-time order starting at ``start``.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import random
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.reference.sites import SiteRegistry

_DIGITS = string.digits
_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # no I, O, Q: most countries avoid them on plates

# Hourly traffic shape (0-23 h local-ish time), mean 1.0.
_DIURNAL = (
    0.15, 0.1, 0.08, 0.08, 0.12, 0.35, 0.8, 1.3, 1.5, 1.3, 1.2, 1.3,
    1.4, 1.4, 1.5, 1.7, 1.8, 1.6, 1.2, 0.9, 0.7, 0.5, 0.35, 0.25,
)  # fmt: skip
_WEEKEND = 1.6  # Saturday shopping: Norwegians cross to Sweden for cheaper groceries
_RETURN_SHARE = 1.2  # a return passage for a share of exits, in the long run (see reads())
_SITE_WEIGHTS = {"NO-SVINESUND": 8.0, "NO-ORJE": 2.0, "NO-MAGNOR": 1.5, "NO-STORSKOG": 0.05}
_CLASSES = (("car", 0.78), ("van", 0.1), ("truck", 0.08), ("bus", 0.02), ("motorcycle", 0.02))
# Share of vehicles by plate country at a crossing to a given neighbour.
_ORIGINS = {
    "SE": (("NO", 0.62), ("SE", 0.25), ("PL", 0.05), ("LT", 0.04), ("DE", 0.03), ("FI", 0.01)),
    "FI": (("NO", 0.5), ("FI", 0.4), ("SE", 0.1)),
    "RU": (("NO", 0.6), ("FI", 0.4)),
    "DK": (("NO", 0.55), ("DK", 0.3), ("DE", 0.1), ("SE", 0.05)),
    "DE": (("NO", 0.5), ("DE", 0.4), ("PL", 0.1)),
}


def random_plate(rng: random.Random, country: str) -> str:
    """A random plate in the country's common format, as a camera would print it."""

    def letters(n: int) -> str:
        return "".join(rng.choices(_LETTERS, k=n))

    def digits(n: int) -> str:
        return "".join(rng.choices(_DIGITS, k=n))

    match country:
        case "NO":
            return f"{letters(2)} {rng.randint(10000, 99999)}"
        case "SE":
            return f"{letters(3)} {digits(2)}{rng.choice([digits(1), letters(1)])}"
        case "FI":
            return f"{letters(3)}-{rng.randint(1, 999)}"
        case "DK":
            return f"{letters(2)} {digits(2)} {digits(3)}"
        case "DE":
            return (
                f"{letters(rng.randint(1, 3))}-{letters(rng.randint(1, 2))} {rng.randint(1, 9999)}"
            )
        case "PL":
            return f"{letters(2)} {digits(5)}"
        case "LT":
            return f"{letters(3)} {digits(3)}"
    return f"{letters(3)} {digits(3)}"


@dataclass(frozen=True)
class Lane:
    site_id: str
    kind: str
    neighbour: str
    number: int
    direction: str
    cameras: tuple[str, ...]


@dataclass(frozen=True)
class Vehicle:
    plate: str
    country: str
    vehicle_class: str


def lanes_of(
    registry: SiteRegistry, vendors: frozenset[str] = frozenset({"canonical"})
) -> list[Lane]:
    """Every lane of every site with the cameras of ``vendors`` that read it."""
    lanes = []
    for site in registry.sites:
        for lane in site.lanes:
            cameras = tuple(
                c.id for c in site.cameras if c.lane == lane.number and c.vendor in vendors
            )
            if cameras:
                lanes.append(
                    Lane(site.id, site.kind, site.neighbour, lane.number, lane.direction, cameras)
                )
    return lanes


class TrafficModel:
    """Seeded generator of passages; round trips are scheduled on a heap of future returns."""

    def __init__(
        self,
        registry: SiteRegistry,
        *,
        seed: int = 1,
        passages_per_hour: float = 1500.0,
        retransmit_ratio: float = 0.002,
        formats: Iterable[str] = ("canonical",),
    ) -> None:
        self._rng = random.Random(seed)
        vendors = frozenset(formats)
        lanes = lanes_of(registry, vendors)
        if not lanes:
            raise ValueError(f"the site registry has no lane with a camera of {sorted(vendors)}")
        self._by_site: dict[tuple[str, str], list[Lane]] = {}
        for lane in lanes:
            self._by_site.setdefault((lane.site_id, lane.direction), []).append(lane)
        self._site_of = {lane.site_id: lane for lane in lanes}
        self._sites = sorted(self._site_of)
        # Road crossings carry most traffic, Svinesund (E6) far more than any other; Storskog
        # (Russia) is nearly closed. Ferries come in bursts and weigh less.
        self._site_weights = [
            _SITE_WEIGHTS.get(s, 1.0) * (0.6 if self._site_of[s].kind == "ferry" else 1.0)
            for s in self._sites
        ]
        self._site_cum = list(itertools.accumulate(self._site_weights))
        self._origins = {
            n: ([c for c, _ in o], list(itertools.accumulate(w for _, w in o)))
            for n, o in _ORIGINS.items()
        }
        self._classes = (
            [c for c, _ in _CLASSES],
            list(itertools.accumulate(w for _, w in _CLASSES)),
        )
        self._rate = passages_per_hour
        self._retransmit = retransmit_ratio
        self._returns: list[tuple[float, int, str, Vehicle]] = []  # (time, seq, site, vehicle)
        self._seq = 0
        self._event_seq = 0
        self._stamp_cache: tuple[int, str] = (-1, "")
        self._run_tag = ""

    def _vehicle(self, neighbour: str) -> Vehicle:
        countries, cum = self._origins.get(neighbour, (["NO", neighbour], [0.7, 1.0]))
        country = self._rng.choices(countries, cum_weights=cum)[0]
        vclass = self._rng.choices(self._classes[0], cum_weights=self._classes[1])[0]
        return Vehicle(random_plate(self._rng, country), country, vclass)

    def _rate_at(self, t: datetime) -> float:
        """Passages per second at ``t``."""
        weekend = _WEEKEND if t.weekday() >= 5 else 1.0
        return self._rate * _DIURNAL[t.hour] * weekend / 3600.0

    def reads_per_passage(self) -> float:
        """Expected reads per passage: cameras per lane, zero where a direction has no lane."""
        # Round trips add a return passage for a share of exits (see reads()).
        return self._reads_per_crossing() * _RETURN_SHARE

    def _reads_per_crossing(self) -> float:
        """:meth:`reads_per_passage` without the returns."""
        total = sum(self._site_weights)
        expected = 0.0
        for site, weight in zip(self._sites, self._site_weights, strict=True):
            for direction in ("entry", "exit"):
                lanes = self._by_site.get((site, direction), [])
                if lanes:
                    mean = sum(len(lane.cameras) for lane in lanes) / len(lanes)
                    expected += weight / total * 0.5 * mean
        return expected

    def start_for(self, count: int, end: datetime) -> datetime:
        """A start time from which ``count`` reads are expected to end shortly before ``end``."""
        # Returns come 1.5 to 30 hours after the exit, so a run of a few hours sees few of
        # them: counted as none, the reads end early rather than past ``end`` (where the
        # ingest refuses them as future captures).
        per_passage = self._reads_per_crossing()
        hour = end.replace(minute=0, second=0, microsecond=0)
        expected = 0.0
        # Walk back hour by hour through the diurnal curve, with a margin so the tail stays past.
        while expected < count / 0.95:
            hour -= timedelta(hours=1)
            expected += self._rate_at(hour) * 3600 * per_passage
        return hour

    def reads(self, start: datetime) -> Iterator[dict[str, object]]:
        """Canonical ``plate_read/1`` documents in capture-time order, without end."""
        now = start.timestamp()
        # Event ids are unique per camera like a real camera's counter; the start minute in
        # them keeps two simulations with different starts from reusing ids.
        self._run_tag = f"{int(now) // 60:x}"
        pending: list[tuple[float, int, dict[str, object]]] = []
        rate_hour, rate = -1, 0.0
        while True:
            hour = int(now // 3600)
            if hour != rate_hour:
                rate_hour = hour
                rate = max(self._rate_at(datetime.fromtimestamp(now, UTC)), 1e-6)
            now += self._rng.expovariate(rate)
            # Returns that are due come first: a shopper who left earlier comes back.
            while self._returns and self._returns[0][0] <= now:
                when, _, site, vehicle = heapq.heappop(self._returns)
                self._passage(when, site, "entry", vehicle, pending)
            site = self._rng.choices(self._sites, cum_weights=self._site_cum)[0]
            direction = "entry" if self._rng.random() < 0.5 else "exit"
            vehicle = self._vehicle(self._site_of[site].neighbour)
            self._passage(now, site, direction, vehicle, pending)
            if direction == "exit" and vehicle.country == "NO" and self._rng.random() < 0.7:
                self._schedule_return(now, site, vehicle)
            # Emit reads whose capture time has passed, in order (cameras read a few s apart).
            while pending and pending[0][0] <= now:
                yield heapq.heappop(pending)[2]

    def _schedule_return(self, now: float, site: str, vehicle: Vehicle) -> None:
        pick = self._rng.random()
        if pick < 0.5:
            hours = self._rng.uniform(1.5, 3)  # a shopping trip
        elif pick < 0.85:
            hours = self._rng.uniform(3, 6)
        else:
            hours = self._rng.uniform(6, 30)  # a day out, or a night away
        # Most come back the same way; some return through another crossing.
        back = site if self._rng.random() < 0.85 else self._rng.choice(self._sites)
        self._seq += 1
        heapq.heappush(self._returns, (now + hours * 3600, self._seq, back, vehicle))

    def _passage(
        self,
        when: float,
        site: str,
        direction: str,
        vehicle: Vehicle,
        pending: list[tuple[float, int, dict[str, object]]],
    ) -> None:
        lanes = self._by_site.get((site, direction))
        if not lanes:
            return
        lane = self._rng.choice(lanes)
        captured = when
        for camera in lane.cameras:
            self._event_seq += 1
            read = {
                "schema": "plate_read/1",
                "event_id": f"{camera}-{self._run_tag}-{self._event_seq:09d}",
                "site_id": site,
                "camera_id": camera,
                "lane": lane.number,
                "direction": direction,
                "captured_at": self._rfc3339(captured),
                "plate": vehicle.plate,
                "plate_country": vehicle.country,
                # Mostly confident reads, a tail of poor ones (dirt, glare, night).
                "confidence": round(1.0 - 0.25 * self._rng.random() ** 4, 3),
                "vehicle_class": vehicle.vehicle_class,
            }
            heapq.heappush(pending, (captured, self._event_seq, read))
            if self._rng.random() < self._retransmit:
                # A camera that did not get its ack sends the same event again a little later.
                heapq.heappush(pending, (captured + 0.5, -self._event_seq, read))
            captured += self._rng.uniform(0.3, 2.5)  # the next camera reads a moment later

    def _rfc3339(self, epoch: float) -> str:
        whole = math.floor(epoch)
        millis = min(999, round((epoch - whole) * 1000))
        if self._stamp_cache[0] != whole:
            stamp = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._stamp_cache = (whole, stamp)
        return f"{self._stamp_cache[1]}.{millis:03d}Z"


def encode(read: dict[str, object]) -> tuple[bytes, bytes]:
    """Kafka key (site id, so one site's reads stay in order) and value of a read."""
    value = json.dumps(read, separators=(",", ":"), ensure_ascii=False).encode()
    return str(read["site_id"]).encode(), value
