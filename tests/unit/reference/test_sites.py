"""The site registry: the shipped file, lookups, and every way a registry file can be wrong."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipeline.codec.vendors import VENDOR_RULES, VENDORS
from pipeline.errors import ConfigError
from pipeline.reference.sites import (
    CAMERA_ID_PATTERN,
    DEFAULT_REGISTRY,
    SITE_ID_PATTERN,
    SiteRegistry,
    load_registry,
)


@pytest.fixture(scope="module")
def registry() -> SiteRegistry:
    return load_registry(DEFAULT_REGISTRY, VENDOR_RULES)


def test_shipped_registry_covers_the_crossings_and_terminals(registry: SiteRegistry) -> None:
    by_id = {site.id: site for site in registry.sites}
    assert by_id["NO-SVINESUND"].neighbour == "SE"
    assert by_id["NO-STORSKOG"].neighbour == "RU"
    assert by_id["NO-HELLIGSKOGEN"].neighbour == "FI"
    assert by_id["NO-ORJE"].name == "\u00d8rje"
    svinesund = by_id["NO-SVINESUND"]
    assert sum(lane.direction == "entry" for lane in svinesund.lanes) >= 2
    assert sum(lane.direction == "exit" for lane in svinesund.lanes) >= 2
    ferries = {site.id for site in registry.sites if site.kind == "ferry"}
    for port in ["LARVIK", "KRISTIANSAND", "BERGEN", "STAVANGER", "SANDEFJORD"]:
        assert f"NO-{port}" in ferries
    assert any(site_id.startswith("NO-OSLO") for site_id in ferries)


def test_shipped_registry_is_consistent(registry: SiteRegistry) -> None:
    for site in registry.sites:
        assert SITE_ID_PATTERN.fullmatch(site.id)
        assert site.cameras
        lanes = {lane.number for lane in site.lanes}
        for camera in site.cameras:
            assert CAMERA_ID_PATTERN.fullmatch(camera.id)
            assert camera.lane in lanes
            assert camera.site_id == site.id
    # Every vendor format has cameras, so every decoder has something to map to.
    assert {camera.vendor for camera in registry.cameras} == set(VENDORS)


def test_lookups(registry: SiteRegistry) -> None:
    assert registry.is_known("NO-SVINESUND", "SVI-L2-F")
    assert not registry.is_known("NO-ORJE", "SVI-L2-F")  # a real camera, at another site
    assert not registry.is_known("NO-SVINESUND", "CAM-UNKNOWN-9")
    assert not registry.is_known("../../etc/passwd", "SVI-L2-F")
    assert registry.site("NO-MAGNOR").name == "Magnor"
    assert registry.camera("SVI-L2-F").lane == 2
    with pytest.raises(KeyError):
        registry.site("NO-NOWHERE")
    with pytest.raises(KeyError):
        registry.camera("CAM-UNKNOWN-9")
    camera = registry.vendor_camera("openalpr", "710401")
    assert camera is not None
    assert camera.id == "SVI-L4-F"
    assert registry.vendor_camera("hikvision", "710401") is None


def test_known_pairs_is_an_arrow_value_set(registry: SiteRegistry) -> None:
    pairs = registry.known_pairs
    assert pairs.type == pa.string()
    assert len(pairs) == len(registry.cameras)
    assert "NO-SVINESUND|SVI-L2-F" in pairs.to_pylist()


def test_registry_is_frozen(registry: SiteRegistry) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        registry.sites = ()  # type: ignore[misc]


# -- invalid files -----------------------------------------------------------------------------

_BASE: dict[str, Any] = {
    "sites": [
        {
            "id": "NO-TESTA",
            "name": "Test \u00c6\u00d8\u00c5",
            "kind": "road",
            "neighbour": "SE",
            "lanes": [{"number": 1, "direction": "entry"}, {"number": 2, "direction": "exit"}],
            "cameras": [
                {"id": "TA-L1-F", "lane": 1, "position": "front"},
                {
                    "id": "TA-L2-R",
                    "lane": 2,
                    "position": "rear",
                    "vendor": "openalpr",
                    "vendor_camera_id": "900001",
                },
            ],
        },
        {
            "id": "NO-TESTB",
            "name": "Test B",
            "kind": "ferry",
            "neighbour": "DK",
            "lanes": [{"number": 1, "direction": "entry"}],
            "cameras": [{"id": "TB-L1-F", "lane": 1, "position": "front"}],
        },
    ]
}


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def _write(tmp_path: Path, document: dict[str, Any]) -> Path:
    lines = []
    for key, value in document.items():
        if key != "sites":
            lines.append(f"{key} = {_toml(value)}")
    for site in document.get("sites", []):
        lines.append("[[sites]]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in site.items())
    path = tmp_path / "sites.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_hikvision_cameras_by_address(tmp_path: Path) -> None:
    document = copy.deepcopy(_BASE)
    _camera(document).update(vendor="hikvision", mac="D4-E8-53-BC-4C-02", ip="192.0.2.7")
    _camera(document, 0, 1).update(
        vendor="hikvision", vendor_camera_id="NVR-1:2", ip="192.0.2.8", channel=2
    )
    registry = load_registry(_write(tmp_path, document), VENDOR_RULES)
    by_mac = registry.vendor_camera("hikvision", "mac=d4e853bc4c02")
    assert by_mac is not None
    assert by_mac.id == "TA-L1-F"
    assert registry.vendor_camera("hikvision", "ip=192.0.2.7") == by_mac
    nvr = registry.vendor_camera("hikvision", "ip=192.0.2.8/2")
    assert nvr is not None
    assert nvr.id == "TA-L2-R"
    assert registry.vendor_camera("hikvision", "NVR-1:2") == nvr
    # A channel's camera is not the whole device.
    assert registry.vendor_camera("hikvision", "ip=192.0.2.8") is None


def test_minimal_file_loads(tmp_path: Path) -> None:
    registry = load_registry(_write(tmp_path, _BASE), VENDOR_RULES)
    assert [site.id for site in registry.sites] == ["NO-TESTA", "NO-TESTB"]
    assert registry.camera("TA-L1-F").vendor == "canonical"  # the default
    assert registry.camera("TA-L2-R").vendor_camera_id == "900001"


def test_silence_thresholds_are_optional_per_site(tmp_path: Path) -> None:
    document = copy.deepcopy(_BASE)
    document["sites"][0].update(silence_day_s=600, silence_night_s=3600.5)
    registry = load_registry(_write(tmp_path, document), VENDOR_RULES)
    assert (registry.site("NO-TESTA").silence_day_s, registry.site("NO-TESTA").silence_night_s) == (
        600.0,
        3600.5,
    )
    assert registry.site("NO-TESTB").silence_day_s is None


def _site(doc: dict[str, Any], i: int = 0) -> dict[str, Any]:
    site: dict[str, Any] = doc["sites"][i]
    return site


def _camera(doc: dict[str, Any], i: int = 0, j: int = 0) -> dict[str, Any]:
    camera: dict[str, Any] = _site(doc, i)["cameras"][j]
    return camera


_MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "duplicate site id": (lambda d: _site(d, 1).update(id="NO-TESTA"), "duplicate site id"),
    "duplicate camera id": (
        lambda d: _camera(d, 1).update(id="TA-L1-F"),
        "duplicate camera id",
    ),
    "duplicate vendor camera id": (
        lambda d: _camera(d, 1).update(vendor="openalpr", vendor_camera_id="900001"),
        "duplicate openalpr vendor_camera_id",
    ),
    "site id with a letter outside A-Z": (lambda d: _site(d).update(id="NO-\u00d8RJE"), "id must"),
    "site id of another country": (lambda d: _site(d).update(id="SE-TEST"), "id must"),
    "site id in lower case": (lambda d: _site(d).update(id="NO-test"), "id must"),
    "site id as a path": (lambda d: _site(d).update(id="../etc"), "id must"),
    "camera id with a space": (lambda d: _camera(d).update(id="TA L1"), "id must"),
    "camera lane not at the site": (lambda d: _camera(d).update(lane=7), "not one of the site"),
    "unknown vendor": (lambda d: _camera(d).update(vendor="acme"), "vendor must be one of"),
    "unknown position": (lambda d: _camera(d).update(position="side"), "position must"),
    "empty vendor camera id": (
        lambda d: _camera(d).update(vendor_camera_id=""),
        "vendor_camera_id",
    ),
    "unknown camera key": (lambda d: _camera(d).update(zoom=3), "unknown keys: zoom"),
    "unknown site key": (lambda d: _site(d).update(road="E6"), "unknown keys: road"),
    "missing site key": (lambda d: _site(d).pop("neighbour"), "missing keys: neighbour"),
    "missing camera key": (lambda d: _camera(d).pop("position"), "missing keys: position"),
    "lane number as bool": (
        lambda d: _site(d)["lanes"][0].update(number=True),
        "number must be an integer",
    ),
    "lane number zero": (lambda d: _site(d)["lanes"][0].update(number=0), "from 1 to 99"),
    "lane listed twice": (lambda d: _site(d)["lanes"][1].update(number=1), "listed twice"),
    "bad direction": (
        lambda d: _site(d)["lanes"][0].update(direction="in"),
        "direction must be one of",
    ),
    "neighbour is Norway": (lambda d: _site(d).update(neighbour="NO"), "not NO"),
    "neighbour not alpha-2": (lambda d: _site(d).update(neighbour="Sweden"), "neighbour must"),
    "unknown kind": (lambda d: _site(d).update(kind="rail"), "kind must be one of"),
    "empty name": (lambda d: _site(d).update(name=" "), "name must"),
    "no cameras": (lambda d: _site(d).update(cameras=[]), "cameras must be"),
    "no lanes": (lambda d: _site(d).update(lanes=[]), "lanes must be"),
    "no sites": (lambda d: d.update(sites=[]), "non-empty [[sites]]"),
    "unknown top-level key": (lambda d: d.update(version=2), "unknown top-level keys"),
    "genetec without date order": (
        lambda d: _camera(d).update(vendor="genetec", vendor_camera_id="g-1"),
        "genetec cameras need date_order",
    ),
    "genetec with a made-up date order": (
        lambda d: _camera(d).update(vendor="genetec", vendor_camera_id="g-1", date_order="DDD"),
        "date_order must be one of",
    ),
    "date order on a canonical camera": (
        lambda d: _camera(d).update(date_order="DMY"),
        "only for genetec",
    ),
    "heading out of range": (
        lambda d: _camera(d).update(vendor="openalpr", vendor_camera_id="1", entry_heading=400),
        "within 0..360",
    ),
    "heading on a hikvision camera": (
        lambda d: _camera(d).update(vendor="hikvision", vendor_camera_id="h", entry_heading=10),
        "entry_heading is for",
    ),
    "wrong motion word for the vendor": (
        lambda d: _camera(d).update(
            vendor="hikvision", vendor_camera_id="h", entry_motion="approaching"
        ),
        "entry_motion must be one of",
    ),
    "mac on a camera of a vendor without addresses": (
        lambda d: _camera(d).update(mac="00:11:22:33:44:55"),
        "only for hikvision",
    ),
    "mac that is not a MAC": (
        lambda d: _camera(d).update(vendor="hikvision", mac="00:11:22:33:44"),
        "mac must be",
    ),
    "ip that is not an address": (
        lambda d: _camera(d).update(vendor="hikvision", ip="192.168.1.300"),
        "ip must be",
    ),
    "channel without an address": (
        lambda d: _camera(d).update(vendor="hikvision", vendor_camera_id="h", channel=1),
        "channel needs the mac or ip",
    ),
    "channel zero": (
        lambda d: _camera(d).update(vendor="hikvision", ip="192.0.2.1", channel=0),
        "channel must be",
    ),
    "same MAC twice, spelt differently": (
        lambda d: (
            _camera(d).update(vendor="hikvision", mac="00:11:22:33:44:AA"),
            _camera(d, 0, 1).update(vendor="hikvision", mac="00-11-22-33-44-aa"),
        ),
        "duplicate hikvision vendor_camera_id or address 'mac=0011223344aa'",
    ),
    "silence threshold not a number": (
        lambda d: _site(d).update(silence_day_s="10 minutes"),
        "silence_day_s must be a number",
    ),
    "silence threshold zero": (
        lambda d: _site(d).update(silence_night_s=0),
        "silence_night_s must be within",
    ),
}

_FILE_LEVEL = {"no sites", "unknown top-level key"}


@pytest.mark.parametrize("case", sorted(_MUTATIONS))
def test_invalid_registry_names_file_and_entry(tmp_path: Path, case: str) -> None:
    mutate, message = _MUTATIONS[case]
    document = copy.deepcopy(_BASE)
    mutate(document)
    path = _write(tmp_path, document)
    with pytest.raises(ConfigError) as caught:
        load_registry(path, VENDOR_RULES)
    text = str(caught.value)
    assert str(path) in text
    assert message in text
    if case not in _FILE_LEVEL:
        assert "sites[" in text


def test_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "sites.toml"
    path.write_text("[[sites]\nid = ", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_registry(path, VENDOR_RULES)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_registry(tmp_path / "absent.toml", VENDOR_RULES)
