"""Synthetic ferry departures and their passenger lists, matched to the simulated plate reads.

Pure generator (:func:`departures`): it replays the plate simulator's traffic model with the
same seed and start (:class:`pipeline.simulate.traffic.TrafficModel`), takes the vehicles read
leaving Norway at ferry terminals, and puts them on the next departure from that terminal, each
with a driver and maybe passengers riding along, beside foot passengers and, now and then, a
separate crew list. So ``anpr simulate plates`` and ``anpr simulate passengers`` with the same
``--seed`` and ``--start`` give manifests whose vehicle plates match plate reads at the terminal
shortly before departure: what the README's analyst join needs.

Every name is built from invented syllables and every document number is random: no real
person. :func:`simulate_passengers` produces the lists to Kafka, mixed JSON and PAXLST.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from pipeline.codec.passenger_lists import manifest_document
from pipeline.codec.paxlst import Manifest, Person, write_interchange
from pipeline.errors import BrokerError
from pipeline.reference.sites import SiteRegistry
from pipeline.simulate.traffic import TrafficModel

# Terminal → (its port, the far port, carrier). Carrier codes are invented.
ROUTES: dict[str, tuple[str, str, str]] = {
    "NO-LARVIK": ("NOLAR", "DKHIR", "NFX"),
    "NO-KRISTIANSAND": ("NOKRS", "DKHIR", "NFX"),
    "NO-OSLOHJORTNES": ("NOOSL", "DEKEL", "BLT"),
    "NO-OSLOVIPPETANGEN": ("NOOSL", "DKCPH", "BLT"),
    "NO-BERGEN": ("NOBGO", "DKHIR", "NFX"),
    "NO-STAVANGER": ("NOSVG", "DKHIR", "NFX"),
    "NO-SANDEFJORD": ("NOSAN", "SESMD", "SKX"),
}
_VESSELS = ("MS NORDVIND", "MS HAVSULE", "MS SKAGERAK STAR", "MS BOLGEBRYTER")
_SYLLABLES = ("an", "be", "dal", "er", "fjo", "gun", "hal", "is", "kar", "lo", "mø", "nor",
              "os", "rå", "sol", "tor", "ul", "vik", "æ", "by")  # fmt: skip
_NATIONS = {"NO": "NOR", "SE": "SWE", "DK": "DNK", "DE": "DEU", "PL": "POL", "LT": "LTU",
            "FI": "FIN"}  # fmt: skip
_SEPARATORS = (
    (":", "+", ".", "?", " ", "'"),
    ("\x1f", "\x1d", ".", "?", " ", "\x1c"),
    ("*", "|", ",", "!", "^", "~"),
)
# Vehicles check in from this long before departure; departures leave on the hour + 30 min.
CHECK_IN = timedelta(hours=2)
# The analyst join in the README looks this far around a departure.
JOIN_BEFORE = timedelta(hours=3)
JOIN_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class Departure:
    site_id: str
    manifest: Manifest
    # The plate reads (event id, raw plate) of the vehicles on board, at this terminal.
    reads: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def _person(rng: random.Random, role: str, nation: str, plate: str | None) -> Person:
    born = date(1940, 1, 1) + timedelta(days=rng.randint(0, 80 * 365))
    given = " ".join(_name(rng) for _ in range(rng.randint(1, 2)))
    number = "".join(rng.choices("ABCDEFGHJKLMNPRSTUVWXYZ0123456789", k=9))
    return Person(role, _name(rng), given, born, rng.choice("MF"), nation, "P", number, nation,
                  plate)  # fmt: skip


def _departure_time(captured: datetime) -> datetime:
    hour = captured.replace(minute=30, second=0, microsecond=0)
    return hour if hour > captured + timedelta(minutes=20) else hour + timedelta(hours=1)


def departures(
    registry: SiteRegistry,
    *,
    seed: int,
    start: datetime,
    plate_reads: int,
    passages_per_hour: float = 1500.0,
    formats: Iterable[str] = ("canonical",),
) -> Iterator[Departure]:
    """Departures in time order, from the first ``plate_reads`` reads of the plate simulator
    run with the same ``seed``, ``start``, ``passages_per_hour`` and ``formats`` (the cameras
    that send decide which lanes the traffic model drives through)."""
    model = TrafficModel(registry, seed=seed, passages_per_hour=passages_per_hour, formats=formats)
    rng = random.Random(seed ^ 0xFE77)
    ferry = {s.id for s in registry.sites if s.kind == "ferry" and s.id in ROUTES}
    boarding: dict[tuple[str, datetime], dict[str, tuple[str, str, str]]] = {}
    reads = model.reads(start)
    for _ in range(plate_reads):
        read = next(reads)
        captured = datetime.fromisoformat(str(read["captured_at"]))
        for key in sorted(k for k in boarding if k[1] <= captured):
            yield _manifest(rng, key[0], key[1], boarding.pop(key))
        if read["site_id"] not in ferry or read["direction"] != "exit":
            continue
        key = (str(read["site_id"]), _departure_time(captured))
        plate = str(read["plate"])
        # One vehicle, read by one or more cameras: its first read's event id stands for it.
        boarding.setdefault(key, {}).setdefault(
            plate, (str(read["event_id"]), plate, str(read["plate_country"]))
        )
    for key in sorted(boarding):
        yield _manifest(rng, key[0], key[1], boarding[key])


def _manifest(
    rng: random.Random, site: str, leaves: datetime, vehicles: dict[str, tuple[str, str, str]]
) -> Departure:
    port, far, carrier = ROUTES[site]
    people: list[Person] = []
    for _event_id, plate, country in vehicles.values():
        nation = _NATIONS.get(country, "NOR")
        # Plates as a booking clerk typed them: dashes and lower case appear.
        typed = plate if rng.random() < 0.7 else plate.replace(" ", "-").lower()
        people.append(_person(rng, "driver", nation, typed))
        for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
            people.append(_person(rng, "passenger", nation, typed))
    for _ in range(rng.randint(3, 20)):
        people.append(_person(rng, "passenger", rng.choice(list(_NATIONS.values())), None))
    manifest = Manifest(
        carrier=carrier,
        vessel=rng.choice(_VESSELS),
        voyage_id=f"{carrier}{leaves:%y%m%d%H%M}{port[2:]}",
        departure_port=port,
        departure_at=leaves,
        arrival_port=far,
        arrival_at=leaves + timedelta(hours=rng.randint(3, 16)),
        direction="exit",
        people=tuple(people),
    )
    reads = tuple((e, p) for e, p, _ in vehicles.values())
    return Departure(site, manifest, reads)


def crew_list(rng: random.Random, manifest: Manifest) -> Manifest:
    """The crew of a departure, as operators send it: a separate list (PAXLST BGM 250)."""
    crew = tuple(_person(rng, "crew", "NOR", None) for _ in range(rng.randint(8, 25)))
    return Manifest(**{**manifest.__dict__, "people": crew})


def encode_json(m: Manifest) -> bytes:
    """``passenger_list/1`` JSON, with a few fields the pipeline must drop (contact, seat)."""
    doc = manifest_document(m, {"seat": "deck 7", "phone": "+47 00000000"})
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def encode(rng: random.Random, manifests: list[Manifest], paxlst_ratio: float) -> bytes:
    """One Kafka value: JSON (one manifest only) or a PAXLST interchange (any number)."""
    if len(manifests) == 1 and rng.random() >= paxlst_ratio:
        return encode_json(manifests[0])
    return write_interchange(
        manifests,
        reference=str(rng.randint(1, 99999)),
        separators=rng.choice(_SEPARATORS),
        groups=rng.random() < 0.5,
        line_breaks=rng.random() < 0.3,
    )


# Broken lists as operators' systems get them wrong, and the reason ingest gives each.
HOSTILE_VARIANTS: tuple[tuple[str, str], ...] = (
    ("cnt_mismatch", "control_total_mismatch"),
    ("truncated_json", "malformed_json"),
    ("no_unt", "malformed_edifact"),
    ("bad_direction", "schema_violation"),
    ("empty", "empty_value"),
)


def hostile_list(variant: str, manifest: Manifest) -> bytes | None:
    """``manifest`` as a broken message of ``variant`` (one of :data:`HOSTILE_VARIANTS`)."""
    if variant == "empty":
        return None
    if variant == "truncated_json":
        whole = encode_json(manifest)
        return whole[: len(whole) // 2]
    if variant == "bad_direction":
        return encode_json(manifest).replace(b'"direction":"exit"', b'"direction":"up"')
    paxlst = write_interchange([manifest]).decode()  # default separators: ":+.? '"
    if variant == "cnt_mismatch":
        return paxlst.replace("CNT+42:", "CNT+42:9").replace("CNT+41:", "CNT+41:9").encode()
    if variant == "no_unt":
        return paxlst[: paxlst.index("UNT+")].encode()
    raise ValueError(f"unknown hostile variant {variant!r}")


def spoiled(n: int, bad_ratio: float) -> bool:
    """Whether departure ``n`` (from 0) gets a broken list: evenly spaced, so a run of a few
    hundred departures at 1 % shows some, and the count is ``round(departures * bad_ratio)``."""
    return int((n + 1) * bad_ratio + 0.5) > int(n * bad_ratio + 0.5)


@dataclass
class PassengerSummary:
    departures: int = 0
    messages: int = 0
    people: int = 0  # listed in every message sent, the broken ones included
    json_messages: int = 0
    paxlst_messages: int = 0
    hostile: int = 0  # broken messages (each lists one departure's passengers)
    hostile_people: int = 0  # people listed on the departures whose list was broken
    hostile_by_variant: dict[str, int] = field(default_factory=dict)


def simulate_passengers(
    producer: Any,
    topic: str,
    registry: SiteRegistry,
    *,
    count: int,
    start: datetime,
    seed: int = 1,
    plate_reads: int = 10_000,
    paxlst_ratio: float = 0.5,
    passages_per_hour: float = 1500.0,
    formats: Iterable[str] = ("canonical",),
    bad_ratio: float = 0.0,
    progress: Callable[[int], None] | None = None,
) -> PassengerSummary:
    """Produce up to ``count`` departures' lists (passengers, sometimes crew too); wait for acks.

    ``seed``, ``start``, ``plate_reads``, ``passages_per_hour`` and ``formats`` should be those
    given to ``anpr simulate plates`` so that the vehicles match its reads. A share
    ``bad_ratio`` of departures sends one broken list instead (:data:`HOSTILE_VARIANTS`, in
    turn), as JSON or PAXLST.
    """
    if not 0.0 <= bad_ratio <= 1.0:
        raise ValueError("bad_ratio must be within 0..1")
    rng = random.Random(seed ^ 0x1157)
    summary = PassengerSummary()
    failures: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    found = departures(
        registry,
        seed=seed,
        start=start,
        plate_reads=plate_reads,
        passages_per_hour=passages_per_hour,
        formats=formats,
    )
    for departure in found:
        if summary.departures >= count:
            break
        lists = [departure.manifest]
        if rng.random() < 0.3:
            lists.append(crew_list(rng, departure.manifest))
        value: bytes | None
        if spoiled(summary.departures, bad_ratio):
            variant = HOSTILE_VARIANTS[summary.hostile % len(HOSTILE_VARIANTS)][0]
            lists = [departure.manifest]
            value = hostile_list(variant, departure.manifest)
            summary.hostile += 1
            summary.hostile_people += len(departure.manifest.people)
            summary.hostile_by_variant[variant] = summary.hostile_by_variant.get(variant, 0) + 1
        else:
            value = encode(rng, lists, paxlst_ratio)
        key = f"{departure.manifest.carrier}:{departure.manifest.voyage_id}".encode()
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        summary.departures += 1
        summary.messages += 1
        summary.people += sum(len(m.people) for m in lists)
        if value is None or value.startswith(b"{"):
            summary.json_messages += 1
        else:
            summary.paxlst_messages += 1
        if progress is not None:
            progress(summary.departures)
    remaining = producer.flush(60)
    if remaining or failures:
        raise BrokerError(f"{remaining} lists not acknowledged, {len(failures)} failed")
    return summary
