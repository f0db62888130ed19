"""The site registry: which border crossings and ferry terminals exist, and their cameras.

The registry is a TOML file (the default ships in the package: see the header of
``pipeline/data/sites.toml``), read once at start by :func:`load_registry`. Everything is
validated there, so a typo stops the worker with a message naming the file and the entry
instead of sending every read of a camera to the DLQ. Site ids coming from messages are only
ever *compared* with the registry; they never become a path or SQL text (DESIGN.md,
invariant 8).

Example::

    registry = load_registry(DEFAULT_REGISTRY, VENDOR_RULES)  # from pipeline.codec.vendors
    registry.is_known("NO-SVINESUND", "SVI-L2-F")  # True
"""

from __future__ import annotations

import ipaddress
import logging
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, cast

import pyarrow as pa

from pipeline import data, schemas
from pipeline.errors import ConfigError

logger = logging.getLogger(__name__)

# The registry shipped in the package (pipeline/data/sites.toml); ingest.sites_registry
# points a deployment at its own.
DEFAULT_REGISTRY: Final[Path] = data.path("sites.toml")

SITE_ID_PATTERN: Final = re.compile(schemas.SITE_ID_PATTERN)
CAMERA_ID_PATTERN: Final = re.compile(schemas.CAMERA_ID_PATTERN)
_COUNTRY_PATTERN: Final = re.compile(r"^[A-Z]{2}$")

Kind = Literal["road", "ferry"]
Direction = Literal["entry", "exit"]
Position = Literal["front", "rear"]
Vendor = str  # "canonical" or the name of a vendor in pipeline.codec.vendors

KINDS: Final[tuple[Kind, ...]] = ("road", "ferry")
DIRECTIONS: Final[tuple[Direction, ...]] = ("entry", "exit")
POSITIONS: Final[tuple[Position, ...]] = ("front", "rear")
# Cameras that send our own plate_read/1 (the default); vendor names come from the codec.
CANONICAL_VENDOR: Final = "canonical"

# The key of a (site, camera) pair in :attr:`SiteRegistry.known_pairs`. Neither id may contain
# it (both patterns exclude it), so joining is injective: no crafted pair can collide.
PAIR_SEPARATOR: Final = "|"

_MAX_NAME = 64
_MAX_VENDOR_CAMERA_ID = 64
_SITE_REQUIRED: Final = frozenset({"id", "name", "kind", "neighbour", "lanes", "cameras"})
# Optional: how long the site's cameras may be silent before the live app says so.
_SILENCE_KEYS: Final = frozenset({"silence_day_s", "silence_night_s"})
_SITE_KEYS: Final = _SITE_REQUIRED | _SILENCE_KEYS
_MAX_SILENCE_S = 7 * 24 * 3600
_LANE_KEYS: Final = frozenset({"number", "direction"})
_CAMERA_KEYS: Final = frozenset(
    {"id", "lane", "position", "vendor", "vendor_camera_id"}
    | {"entry_heading", "entry_motion", "date_order"}
    | {"mac", "ip", "channel"}
)
_MAX_CHANNEL: Final = 999
DateOrder = Literal["DMY", "MDY", "YMD"]
DATE_ORDERS: Final[tuple[DateOrder, ...]] = ("DMY", "MDY", "YMD")


@dataclass(frozen=True)
class VendorRules:
    """Which optional camera keys a vendor's cameras take; the codec registers one per vendor.

    The registry is below the codec (``pipeline.codec.vendors.VENDOR_RULES`` is passed to
    :func:`load_registry`), so adding a vendor never touches this module. ``heading``: the
    vendor reports a travel heading, so ``entry_heading`` applies. ``motions``: the vendor's
    two motion words, one of which is the camera's ``entry_motion``. ``date_order``: the
    vendor writes dates in a locale order, and every camera must say which.
    """

    name: str
    heading: bool = False
    motions: tuple[str, str] | None = None
    date_order: bool = False
    # The vendor's payloads name the device by network address (Hikvision: MAC, IP, channel),
    # so cameras may be registered by ``mac``/``ip`` and ``channel`` instead of an id.
    device_address: bool = False


def normal_mac(text: str) -> str | None:
    """``D4:E8:53:BC:4C:02``, ``d4-e8-53-bc-4c-02``, ``d4e8.53bc.4c02`` -> ``d4e853bc4c02``."""
    digits = re.sub(r"[:.-]", "", text.strip()).lower()
    return digits if re.fullmatch(r"[0-9a-f]{12}", digits) else None


def normal_ip(text: str) -> str | None:
    """An IPv4 or IPv6 address in its one canonical spelling, else None."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def address_keys(mac: str | None, ip: str | None, channel: int | None) -> list[str]:
    """Registry lookup keys for a device address, most specific first.

    A payload's keys are tried in this order, a camera is registered under the keys of what
    its entry gives: ``mac=<12 hex>/<channel>``, ``mac=<12 hex>``, ``ip=<address>/<channel>``,
    ``ip=<address>``. A MAC names the device; an NVR's channels share it, hence the channel.
    """
    keys: list[str] = []
    for kind, value in (("mac", mac), ("ip", ip)):
        if value is not None:
            if channel is not None:
                keys.append(f"{kind}={value}/{channel}")
            keys.append(f"{kind}={value}")
    return keys


@dataclass(frozen=True)
class Lane:
    """One lane of a site; ``direction`` is relative to Norway."""

    number: int
    direction: Direction


@dataclass(frozen=True)
class Camera:
    """One ANPR camera; ``id`` is unique across the whole registry."""

    id: str
    site_id: str
    lane: int
    position: Position
    vendor: Vendor = "canonical"
    vendor_camera_id: str | None = None
    # How a vendor's own direction maps to entry/exit (else the lane's direction is used):
    entry_heading: float | None = None  # degrees a vehicle entering Norway travels (0-360)
    entry_motion: str | None = None  # vendor word meaning entry (see VendorRules.motions)
    date_order: DateOrder | None = None  # Genetec exports: day/month order of DateUtc
    # Device address (vendors with VendorRules.device_address): normalised MAC, IP, channel.
    mac: str | None = None
    ip: str | None = None
    channel: int | None = None

    @property
    def lookup_keys(self) -> list[str]:
        """Every key a vendor payload may name this camera by (vendor id, then addresses)."""
        own = [] if self.vendor_camera_id is None else [self.vendor_camera_id]
        if self.mac is None and self.ip is None:
            return own
        # Registered with a channel: only that channel's key (the bare address is the device).
        channel_keys = address_keys(self.mac, self.ip, self.channel)
        if self.channel is not None:
            channel_keys = [k for k in channel_keys if "/" in k]
        return own + channel_keys


@dataclass(frozen=True)
class Site:
    """A road crossing or ferry terminal."""

    id: str
    name: str
    kind: Kind
    neighbour: str
    lanes: tuple[Lane, ...]
    cameras: tuple[Camera, ...]
    # Camera silence thresholds (None: the live app's defaults, ``live.silence_*_s``).
    silence_day_s: float | None = None
    silence_night_s: float | None = None


@dataclass(frozen=True, eq=False)
class SiteRegistry:
    """All sites, with lookups for the scalar and the vectorised paths.

    Build it with :func:`load_registry`; constructing it directly only checks that ids are
    unique (the file-level validation lives in the loader, where it can name the entry).
    """

    sites: tuple[Site, ...]
    _by_site: Mapping[str, Site] = field(init=False, repr=False)
    _by_camera: Mapping[str, Camera] = field(init=False, repr=False)
    _by_vendor_camera: Mapping[tuple[str, str], Camera] = field(init=False, repr=False)
    _known_pairs: pa.Array = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_site: dict[str, Site] = {}
        by_camera: dict[str, Camera] = {}
        by_vendor: dict[tuple[str, str], Camera] = {}
        for site in self.sites:
            if site.id in by_site:
                raise ConfigError("sites", f"duplicate site id {site.id!r}")
            by_site[site.id] = site
            for camera in site.cameras:
                if camera.id in by_camera:
                    raise ConfigError("sites", f"duplicate camera id {camera.id!r}")
                by_camera[camera.id] = camera
                for lookup in camera.lookup_keys:
                    key = (camera.vendor, lookup)
                    if key in by_vendor:
                        raise ConfigError(
                            "sites", f"duplicate {camera.vendor} camera id {key[1]!r}"
                        )
                    by_vendor[key] = camera
        pairs = pa.array(
            [f"{c.site_id}{PAIR_SEPARATOR}{c.id}" for c in by_camera.values()], pa.string()
        )
        # Frozen dataclass: the indexes are derived once, here, and exposed read-only.
        object.__setattr__(self, "_by_site", MappingProxyType(by_site))
        object.__setattr__(self, "_by_camera", MappingProxyType(by_camera))
        object.__setattr__(self, "_by_vendor_camera", MappingProxyType(by_vendor))
        object.__setattr__(self, "_known_pairs", pairs)

    def site(self, site_id: str) -> Site:
        """The site with this id; ``KeyError`` if there is none."""
        return self._by_site[site_id]

    def camera(self, camera_id: str) -> Camera:
        """The camera with this id; ``KeyError`` if there is none."""
        return self._by_camera[camera_id]

    def vendor_camera(self, vendor: str, vendor_camera_id: str) -> Camera | None:
        """The camera a vendor payload names by the vendor's own camera id, if registered."""
        return self._by_vendor_camera.get((vendor, vendor_camera_id))

    def is_known(self, site_id: str, camera_id: str) -> bool:
        """True if the camera is registered at exactly this site."""
        camera = self._by_camera.get(camera_id)
        return camera is not None and camera.site_id == site_id

    @property
    def cameras(self) -> tuple[Camera, ...]:
        """Every camera of every site, in file order."""
        return tuple(self._by_camera.values())

    @property
    def known_pairs(self) -> pa.Array:
        """``"<site_id>|<camera_id>"`` for every camera, a ``pa.string()`` value set.

        For the vectorised check: ``pc.is_in(pc.binary_join_element_wise(site, camera, "|"),
        value_set=registry.known_pairs)``.
        """
        return self._known_pairs


def load_registry(path: Path, vendors: Iterable[VendorRules]) -> SiteRegistry:
    """Read and validate the site registry file; raise :class:`ConfigError` on any mistake.

    ``vendors``: the vendors cameras may name besides ``canonical``, with the keys each takes
    (``pipeline.codec.vendors.VENDOR_RULES``).
    """
    rules = {vendor.name: vendor for vendor in vendors}
    try:
        with path.open("rb") as f:
            document = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the site registry: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from exc
    raw_sites = document.get("sites")
    if set(document) - {"sites"}:
        unknown = ", ".join(sorted(set(document) - {"sites"}))
        raise ConfigError(str(path), f"unknown top-level keys: {unknown}")
    if not isinstance(raw_sites, list) or not raw_sites:
        raise ConfigError(str(path), "expected a non-empty [[sites]] array")
    sites = tuple(_parse_site(path, i, raw, rules) for i, raw in enumerate(raw_sites))
    _check_unique(path, sites)
    registry = SiteRegistry(sites)
    logger.info("site registry %s: %d sites, %d cameras", path, len(sites), len(registry.cameras))
    return registry


def _parse_site(path: Path, index: int, raw: object, vendors: Mapping[str, VendorRules]) -> Site:
    where = f"{path}: sites[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(where, "expected a table")
    site_id = raw.get("id")
    if isinstance(site_id, str):
        where = f"{where} ({site_id})"
    _check_keys(where, raw, _SITE_KEYS, required=_SITE_REQUIRED)
    site_id = _pattern(where, "id", raw["id"], SITE_ID_PATTERN)
    name = raw["name"]
    if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME:
        raise ConfigError(where, f"name must be a non-empty string of at most {_MAX_NAME} chars")
    kind = cast(Kind, _choice(where, "kind", raw["kind"], KINDS))
    neighbour = _pattern(where, "neighbour", raw["neighbour"], _COUNTRY_PATTERN)
    if neighbour == "NO":
        raise ConfigError(where, "neighbour must be the country across the border, not NO")
    lanes = _parse_lanes(where, raw["lanes"])
    lane_numbers = {lane.number for lane in lanes}
    raw_cameras = raw["cameras"]
    if not isinstance(raw_cameras, list) or not raw_cameras:
        raise ConfigError(where, "cameras must be a non-empty array")
    cameras = tuple(
        _parse_camera(f"{where}.cameras[{j}]", site_id, lane_numbers, cam, vendors)
        for j, cam in enumerate(raw_cameras)
    )
    day = _silence(where, "silence_day_s", raw.get("silence_day_s"))
    night = _silence(where, "silence_night_s", raw.get("silence_night_s"))
    return Site(site_id, name, kind, neighbour, lanes, cameras, day, night)


def _silence(where: str, key: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(where, f"{key} must be a number of seconds, got {value!r}")
    if not 0 < value <= _MAX_SILENCE_S:
        raise ConfigError(where, f"{key} must be within 0..{_MAX_SILENCE_S} seconds")
    return float(value)


def _parse_lanes(where: str, raw: object) -> tuple[Lane, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(where, "lanes must be a non-empty array")
    lanes: list[Lane] = []
    for j, item in enumerate(raw):
        lane_where = f"{where}.lanes[{j}]"
        if not isinstance(item, dict):
            raise ConfigError(lane_where, "expected a table")
        _check_keys(lane_where, item, _LANE_KEYS, required=_LANE_KEYS)
        number = _lane_number(lane_where, "number", item["number"])
        direction = cast(Direction, _choice(lane_where, "direction", item["direction"], DIRECTIONS))
        if any(lane.number == number for lane in lanes):
            raise ConfigError(lane_where, f"lane {number} is listed twice")
        lanes.append(Lane(number, direction))
    return tuple(lanes)


def _parse_camera(
    where: str,
    site_id: str,
    lane_numbers: set[int],
    raw: object,
    vendors: Mapping[str, VendorRules],
) -> Camera:
    if not isinstance(raw, dict):
        raise ConfigError(where, "expected a table")
    camera_id = raw.get("id")
    if isinstance(camera_id, str):
        where = f"{where} ({camera_id})"
    _check_keys(where, raw, _CAMERA_KEYS, required=frozenset({"id", "lane", "position"}))
    camera_id = _pattern(where, "id", raw["id"], CAMERA_ID_PATTERN)
    lane = _lane_number(where, "lane", raw["lane"])
    if lane not in lane_numbers:
        listed = ", ".join(str(n) for n in sorted(lane_numbers))
        raise ConfigError(where, f"lane {lane} is not one of the site's lanes ({listed})")
    position = cast(Position, _choice(where, "position", raw["position"], POSITIONS))
    names = (CANONICAL_VENDOR, *vendors)
    vendor = _choice(where, "vendor", raw.get("vendor", CANONICAL_VENDOR), names)
    vendor_camera_id = raw.get("vendor_camera_id")
    if vendor_camera_id is not None and (
        not isinstance(vendor_camera_id, str)
        or not vendor_camera_id.strip()
        or len(vendor_camera_id) > _MAX_VENDOR_CAMERA_ID
    ):
        raise ConfigError(
            where,
            f"vendor_camera_id must be a non-empty string of at most {_MAX_VENDOR_CAMERA_ID} chars",
        )
    return Camera(
        camera_id,
        site_id,
        lane,
        position,
        vendor,
        vendor_camera_id,
        *_vendor_rules(where, vendor, raw, vendors),
        *_device_address(where, vendor, raw, vendors),
    )


def _device_address(
    where: str, vendor: str, raw: dict[str, object], vendors: Mapping[str, VendorRules]
) -> tuple[str | None, str | None, int | None]:
    """``mac``, ``ip`` and ``channel`` of a camera whose vendor names devices by address."""
    mac, ip, channel = raw.get("mac"), raw.get("ip"), raw.get("channel")
    if mac is None and ip is None and channel is None:
        return None, None, None
    rules = vendors.get(vendor, VendorRules(vendor))
    if not rules.device_address:
        named = ", ".join(v.name for v in vendors.values() if v.device_address)
        raise ConfigError(where, f"mac, ip and channel are only for {named} cameras")
    mac_key = normal_mac(mac) if isinstance(mac, str) else None
    if mac is not None and mac_key is None:
        raise ConfigError(where, "mac must be a MAC address such as 00:11:22:33:44:55")
    ip_key = normal_ip(ip) if isinstance(ip, str) else None
    if ip is not None and ip_key is None:
        raise ConfigError(where, "ip must be an IPv4 or IPv6 address")
    if channel is not None and (
        isinstance(channel, bool)
        or not isinstance(channel, int)
        or not 1 <= channel <= _MAX_CHANNEL
    ):
        raise ConfigError(where, f"channel must be an integer from 1 to {_MAX_CHANNEL}")
    if mac_key is None and ip_key is None:
        raise ConfigError(where, "channel needs the mac or ip of its device")
    return mac_key, ip_key, channel


def _vendor_rules(
    where: str, vendor: str, raw: dict[str, object], vendors: Mapping[str, VendorRules]
) -> tuple[float | None, str | None, DateOrder | None]:
    """The optional per-camera keys that say how to read a vendor's direction and dates."""
    rules = vendors.get(vendor, VendorRules(vendor))
    heading = raw.get("entry_heading")
    if heading is not None:
        if not rules.heading:
            heading_vendors = sorted(v.name for v in vendors.values() if v.heading)
            raise ConfigError(where, f"entry_heading is for {heading_vendors} cameras")
        if isinstance(heading, bool) or not isinstance(heading, int | float):
            raise ConfigError(where, "entry_heading must be a number of degrees")
        if not 0 <= heading <= 360:
            raise ConfigError(where, "entry_heading must be within 0..360 degrees")
    motion = raw.get("entry_motion")
    allowed = rules.motions
    if motion is not None and motion not in (allowed or ()):
        raise ConfigError(
            where,
            f"entry_motion must be one of {allowed}"
            if allowed
            else f"entry_motion is not used by {vendor} cameras",
        )
    order = raw.get("date_order")
    if order is not None:
        if not rules.date_order:
            dated = ", ".join(v.name for v in vendors.values() if v.date_order)
            raise ConfigError(where, f"date_order is only for {dated} cameras")
        order = _choice(where, "date_order", order, DATE_ORDERS)
    elif rules.date_order:
        # Genetec's date order follows the exporting locale; guessing would shift dates.
        raise ConfigError(where, f"{vendor} cameras need date_order (DMY, MDY or YMD)")
    return (
        None if heading is None else float(heading),
        cast(str | None, motion),
        cast(DateOrder | None, order),
    )


def _check_unique(path: Path, sites: tuple[Site, ...]) -> None:
    """Name the offending entries; the registry constructor re-checks without a file name."""
    seen_sites: dict[str, int] = {}
    seen_cameras: dict[str, str] = {}
    seen_vendor_ids: dict[tuple[str, str], str] = {}
    for i, site in enumerate(sites):
        if site.id in seen_sites:
            raise ConfigError(
                f"{path}: sites[{i}] ({site.id})",
                f"duplicate site id, first used by sites[{seen_sites[site.id]}]",
            )
        seen_sites[site.id] = i
        for camera in site.cameras:
            where = f"{path}: sites[{i}] ({site.id}) camera {camera.id}"
            if camera.id in seen_cameras:
                raise ConfigError(
                    where, f"duplicate camera id, first used at {seen_cameras[camera.id]}"
                )
            seen_cameras[camera.id] = site.id
            for lookup in camera.lookup_keys:
                key = (camera.vendor, lookup)
                if key in seen_vendor_ids:
                    raise ConfigError(
                        where,
                        f"duplicate {camera.vendor} vendor_camera_id or address "
                        f"{lookup!r}, first used by {seen_vendor_ids[key]}",
                    )
                seen_vendor_ids[key] = camera.id


def _check_keys(
    where: str, raw: Mapping[str, object], allowed: frozenset[str], *, required: frozenset[str]
) -> None:
    # Unknown keys are errors: a misspelt "vendor_camera_ids" would otherwise vanish silently.
    unknown = set(raw) - allowed
    if unknown:
        raise ConfigError(where, f"unknown keys: {', '.join(sorted(unknown))}")
    missing = required - set(raw)
    if missing:
        raise ConfigError(where, f"missing keys: {', '.join(sorted(missing))}")


def _pattern(where: str, key: str, value: object, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ConfigError(where, f"{key} must match {pattern.pattern}, got {value!r}")
    return value


def _choice(where: str, key: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(where, f"{key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _lane_number(where: str, key: str, value: object) -> int:
    # bool is an int in Python; `lane = true` in TOML must not become lane 1.
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 99:
        raise ConfigError(where, f"{key} must be an integer from 1 to 99, got {value!r}")
    return value
