"""Every message of tests/fixtures/vendors (see its SOURCES.md), decoded as its vendor meant it.

For each message: what the mapper makes of it (plate, time, camera, direction, country, class,
event id, quirks) and what the batch decoder stores, with ``now`` set just after the capture
instead of shifting the published times; or, for a message that is genuinely not a read we can
store, the reason. Variants (a newer OpenALPR version, a 10-digit camera id, ...) are built
from the published bytes and say what they change.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.codec.batch import decode_batch
from pipeline.codec.plate_reads import DecodeLimits
from pipeline.codec.reasons import Reason
from pipeline.codec.vendors import VENDOR_RULES, detect_format, map_vendor
from pipeline.reference.sites import SiteRegistry, load_registry

CORPUS = Path(__file__).parents[2] / "fixtures" / "vendors"
# One site, lane 1 entry and lane 2 exit; vendor ids and addresses as the published messages
# name their cameras (they name no real device of ours).
HIK, OA, PR, GE = "hikvision", "openalpr", "platerecognizer", "genetec"
CAMERAS: list[dict[str, object]] = [
    {"id": "K-HIK-MAC", "lane": 1, "vendor": HIK, "mac": "D4-E8-53-BC-4C-02"},
    {"id": "K-HIK-IP", "lane": 1, "vendor": HIK, "ip": "192.168.1.64", "channel": 1},
    {"id": "K-HIK-OLD", "lane": 2, "vendor": HIK, "ip": "192.168.1.201"},
    {"id": "K-HIK-PYHIK", "lane": 2, "vendor": HIK, "mac": "84:9a:40:b1:7c:ae"},
    {"id": "K-OA-TRUCK", "lane": 1, "vendor": OA, "vendor_camera_id": "106232737"},
    {"id": "K-OA-TEN", "lane": 1, "vendor": OA, "vendor_camera_id": "1062327370"},
    {"id": "K-OA-DOCS", "lane": 2, "vendor": OA, "vendor_camera_id": "1234"},
    {"id": "K-PR-1", "lane": 1, "vendor": PR, "vendor_camera_id": "camera-1"},
    {"id": "K-GE-SC", "lane": 1, "vendor": GE, "vendor_camera_id": "G637821011231200521C - Camera"},
    {"id": "K-GE-SHV", "lane": 1, "vendor": GE, "vendor_camera_id": "SHARPV12345:Lpr Camera"},
    {"id": "K-GE-SHOS", "lane": 2, "vendor": GE, "vendor_camera_id": "SHARPXS0014"},
    {"id": "K-GE-SHZ", "lane": 2, "vendor": GE, "vendor_camera_id": "SharpZ312345:LPR camera"},
]
RULES: dict[str, dict[str, object]] = {
    "K-HIK-MAC": {"entry_motion": "forward"},
    "K-HIK-IP": {"entry_motion": "forward"},
    "K-OA-TRUCK": {"entry_heading": 270.0},
    "K-PR-1": {"entry_heading": 30.0},
    "K-GE-SC": {"date_order": "MDY", "entry_motion": "approaching"},
}
REGISTRY_TOML = """
[[sites]]
id = "NO-KORPUS"
name = "Korpus"
kind = "road"
neighbour = "SE"
lanes = [{ number = 1, direction = "entry" }, { number = 2, direction = "exit" }]
""" + "".join(
    '\n[[sites.cameras]]\nposition = "front"\n'
    + "".join(
        f"{key} = {json.dumps(value)}\n"
        for key, value in {
            **camera,
            **({"date_order": "DMY"} if camera["vendor"] == GE else {}),
            **RULES.get(str(camera["id"]), {}),
        }.items()
    )
    for camera in CAMERAS
)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> SiteRegistry:
    path: Path = tmp_path_factory.mktemp("corpus") / "sites.toml"
    path.write_text(REGISTRY_TOML, encoding="utf-8")
    return load_registry(path, VENDOR_RULES)


USED: set[str] = set()


def sample(name: str) -> bytes:
    USED.add(name)
    return (CORPUS / name).read_bytes()


def digest(vendor_id: str) -> str:
    return "d-" + hashlib.blake2b(vendor_id.encode(), digest_size=16).hexdigest()


def pr_id(camera: str, stamp: str) -> str:
    key = f"{camera}\x00{stamp}\x000".encode()
    return "pr-" + hashlib.blake2b(key, digest_size=16).hexdigest()


SHARPV_CONFIDENCE = (
    b'"PlateAnalytics" : [ { "Key" : "Confidence Score", "Score" : 1, "Value" : "100" },'
)


def _sharpv_with_confidence(value: bytes) -> bytes:
    # The unit set to send its confidence, as the same page's XML example shows it.
    return value.replace(b'"PlateAnalytics" : [', SHARPV_CONFIDENCE, 1)


HIK_UUID = "2024011911172144900FlERIduqg06eKsYuvLX072NugIxaHw22mHG5D5KBmWqX"
AGENT_UUID = "U8HGWA66CW58AV9Q7YB4JJ749CV7WXNQLLNIBT4N-106232737-1609433731402"
DOCS_UUID = "YYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYY-1234-1562681608425"

# file (or file + variant) -> what the mapper makes of it.
READS: dict[str, tuple[bytes, dict[str, Any]]] = {
    "hikvision: parkpow capture (no deviceID, country NON at the root)": (
        sample("hikvision/parkpow-hikvision-lpr.xml"),
        {
            "camera_id": "K-HIK-MAC",  # by MAC address
            "event_id": HIK_UUID,  # 64 characters: fits
            "captured_at": "2024-01-19T03:17:19.000Z",
            "plate": "QZKT601",
            "plate_country": "ZZ",
            "direction": "exit",  # reverse, and the camera's entry is forward
            "vehicle_class": None,  # "vehicle" says nothing
            "confidence": 0.97,
            "quirks": ["country_unknown"],
        },
    ),
    "hikvision: gatelynk DeepinView V5.8 (no deviceID, no MAC, no country)": (
        sample("hikvision/gatelynk-deepinview-v5.8.xml"),
        {
            "camera_id": "K-HIK-IP",  # by IP address and channel
            "event_id": "x",
            "captured_at": "2026-07-05T19:44:40.000Z",
            "plate": "QX1234Q",
            "plate_country": "ZZ",
            "direction": "exit",
            "vehicle_class": "car",  # SUVMPV
            "confidence": 0.92,
            "quirks": ["country_unknown"],
        },
    ),
    "openalpr: agent 2.8 alpr_group v2 with a BOM": (
        sample("openalpr/openalprwebhookprocessor-alpr_group-v2.json"),
        {
            "camera_id": "K-OA-TRUCK",
            "event_id": AGENT_UUID,  # 64 characters: fits
            "captured_at": "2020-12-31T16:55:31.402Z",
            "plate": "Q424761",  # best_plate_number, not best_plate.plate
            "plate_country": "US",  # us-in: Indiana, in the US
            "direction": "entry",  # 257 degrees, 13 from the camera's entry heading
            "vehicle_class": "truck",  # tractor-trailer
            "confidence": 0.9350499725341797,
            "quirks": [],
        },
    ),
    "openalpr: the same as version 3 (agent 4.x)": (
        sample("openalpr/openalprwebhookprocessor-alpr_group-v2.json").replace(
            b'"version": 2,', b'"version": 3,'
        ),
        {"camera_id": "K-OA-TRUCK", "event_id": AGENT_UUID, "quirks": ["version_3"]},
    ),
    "openalpr: the same with best_uuid outside uuids (as Rekor's docs example)": (
        sample("openalpr/openalprwebhookprocessor-alpr_group-v2.json").replace(
            b'"best_uuid": "U8HGWA66CW58AV9Q7YB4JJ749CV7WXNQLLNIBT4N-106232737-1609433731402"',
            b'"best_uuid": "U8HGWA66CW58AV9Q7YB4JJ749CV7WXNQLLNIBT4N-106232737-1609433731500"',
        ),
        {
            "event_id": AGENT_UUID[:-3] + "500",
            "captured_at": "2020-12-31T16:55:31.402Z",  # epoch_start, as before
            "quirks": ["best_uuid_outside_uuids"],
        },
    ),
    "openalpr: the same with a 10-digit camera id (frame ids of 65 characters)": (
        sample("openalpr/openalprwebhookprocessor-alpr_group-v2.json").replace(
            b"106232737", b"1062327370"
        ),
        {
            "camera_id": "K-OA-TEN",
            "event_id": digest(AGENT_UUID.replace("106232737", "1062327370")),
            "direction": "entry",  # no heading rule: the lane's
            "quirks": ["event_id_digested"],
        },
    ),
    "openalpr: Rekor docs alpr_results (no epoch_time: the frame id's milliseconds)": (
        sample("openalpr/rekor-docs-alpr_results.json"),
        {
            "camera_id": "K-OA-DOCS",
            "event_id": DOCS_UUID,
            "captured_at": "2019-07-09T14:13:28.425Z",
            "plate": "Q2651QF",
            "plate_country": "US",  # us-mo: Missouri, never Macao
            "direction": "exit",
            "vehicle_class": None,
            "confidence": 0.929419174194336,
            "quirks": ["time_from_uuid"],
        },
    ),
    "platerecognizer: the vendor's webhook tester (Stream)": (
        sample("platerecognizer/parkpow-webhook-tester-stream.json"),
        {
            "camera_id": "K-PR-1",
            "event_id": pr_id("camera-1", "2025-08-11T16:42:58.740143+00:00"),
            "captured_at": "2025-08-11T16:42:58.740143Z",
            "plate": "ql8rec",
            "plate_country": "US",  # us-ca: California, never Canada
            "direction": "exit",  # 210 degrees, 180 from the camera's entry heading
            "vehicle_class": "car",
            "confidence": 0.902,
            "quirks": [],
        },
    ),
    "platerecognizer: Snapshot docs example with a camera id (time without offset: UTC)": (
        sample("platerecognizer/platerecognizer-docs-snapshot.json").replace(
            b'"camera_id": null', b'"camera_id": "camera-1"'
        ),
        {
            "camera_id": "K-PR-1",
            "event_id": pr_id("camera-1", "2025-09-09 23:22:38.030345"),
            "captured_at": "2025-09-09T23:22:38.030345Z",
            "plate": "qm046sc",
            "plate_country": "FR",
            "direction": "entry",  # no direction sent: the lane's
            "vehicle_class": "car",
            "confidence": 0.999,
            "quirks": [],
        },
    ),
    "platerecognizer: Stream docs row with no region recognised": (
        sample("platerecognizer/platerecognizer-docs-stream-no-region.json"),
        {
            "camera_id": "K-PR-1",
            "captured_at": "2021-10-27T06:20:43.970337Z",
            "plate": "qjubi1",
            "plate_country": "ZZ",
            "direction": "exit",  # 225 degrees, 165 from the entry heading
            "vehicle_class": "truck",  # Big Truck
            "confidence": 0.781,
            "quirks": ["country_unknown"],
        },
    ),
    "genetec: Security Center webhook (Attributes, State CA)": (
        sample("genetec/parkpow-security-center-webhook.json"),
        {
            "camera_id": "K-GE-SC",
            "event_id": "ccd6761e-b2a6-4afc-b386-412d6529c4ec",
            "captured_at": "2024-10-24T20:29:26.000Z",  # 10/24/2024 in the camera's MDY
            "plate": "9QKA742",
            "plate_country": "ZZ",  # California or Canada: cannot tell, never guessed
            "direction": "exit",  # Attributes "Relative Motion": "Moving Away"
            "vehicle_class": "car",  # Attributes "Vehicle Type": "Passenger Vehicle"
            "confidence": 0.99,
            "quirks": ["country_unknown"],
        },
    ),
    "genetec: SharpV 14.2 HTTP JSON, unit set to send its confidence": (
        _sharpv_with_confidence(sample("genetec/genetec-sharpv-14.2-http-json.json")),
        {
            "camera_id": "K-GE-SHV",  # SourceUrl and LprCameraName
            "event_id": "32cf870a-46aa-4cfd-914b-00062d98e93a",
            "captured_at": "2016-08-29T08:42:45.797Z",
            "plate": "QQ7D2",
            "plate_country": "ZZ",  # State Name "-"
            "direction": "entry",
            "vehicle_class": None,
            "confidence": 1.0,
            "quirks": ["country_unknown"],
        },
    ),
    "genetec: SharpOS 11.5 HTTP JSON, unit set to send its confidence": (
        _sharpv_with_confidence(sample("genetec/genetec-sharpos-11.5-http-json.json")),
        {
            "camera_id": "K-GE-SHOS",  # SourceUrl alone (the unit)
            "event_id": "32cf870a-46aa-4cfd-914b-00062d98e93a",
            "captured_at": "2015-08-29T08:42:45.797Z",
            "plate": "QQ7D2",
            "plate_country": "ZZ",
            "direction": "exit",
            "vehicle_class": None,
            "confidence": 1.0,
            "quirks": ["country_unknown"],
        },
    ),
    "genetec: SharpZ3 13.4 HTTP JSON, unit set to send its confidence": (
        _sharpv_with_confidence(sample("genetec/genetec-sharpz3-13.4-http-json.json")),
        {
            "camera_id": "K-GE-SHZ",
            "event_id": "32cf870a-46aa-4cfd-914b-00062d98e93a",
            "captured_at": "2020-03-12T08:42:45.797Z",
            "plate": "QQ7D2",
            "plate_country": "ZZ",
            "direction": "exit",
            "vehicle_class": None,
            "confidence": 1.0,
            "quirks": ["country_unknown"],
        },
    ),
}

REFUSED: dict[str, tuple[bytes, Reason, str]] = {
    "hikvision: older firmware without UUID": (
        sample("hikvision/gatelynk-older-firmware-v5.4.xml"),
        Reason.SCHEMA_VIOLATION,
        "element 'UUID' is missing or empty",
    ),
    "hikvision: a duration alarm, not ANPR": (
        sample("hikvision/pyhik-issue62-duration.xml"),
        Reason.UNSUPPORTED_FORMAT,
        "eventType is not ANPR",
    ),
    "platerecognizer: Snapshot docs example as published (no camera)": (
        sample("platerecognizer/platerecognizer-docs-snapshot.json"),
        Reason.SCHEMA_VIOLATION,
        "field 'data.camera_id' is missing or null",
    ),
    **{
        f"genetec: {name} as published (no confidence sent)": (
            sample(f"genetec/{name}"),
            Reason.SCHEMA_VIOLATION,
            "PlateAnalytics has no 'Confidence Score' (set the unit to send it)",
        )
        for name in (
            "genetec-sharpv-14.2-http-json.json",
            "genetec-sharpos-11.5-http-json.json",
            "genetec-sharpz3-13.4-http-json.json",
        )
    },
}


def test_every_corpus_file_is_tested() -> None:
    files = {p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*.*") if p.suffix != ".md"}
    assert files == USED


@pytest.mark.parametrize("name", READS)
def test_corpus_read(name: str, registry: SiteRegistry) -> None:
    value, expected = READS[name]
    fmt = detect_format(value)
    reads, rejects = map_vendor(value, fmt, registry)
    assert rejects == []
    (read,) = reads
    got = {key: read[key] for key in expected}
    if "confidence" in expected:
        expected = {**expected, "confidence": pytest.approx(expected["confidence"])}
    assert got == expected
    assert read["site_id"] == "NO-KORPUS"
    assert len(str(read["event_id"])) <= 64


@pytest.mark.parametrize("name", READS)
def test_corpus_read_is_stored(name: str, registry: SiteRegistry) -> None:
    value, _ = READS[name]
    fmt = detect_format(value)
    (read,), _ = map_vendor(value, fmt, registry)
    captured = datetime.fromisoformat(str(read["captured_at"]).replace("Z", "+00:00"))
    now = captured + timedelta(minutes=1)
    batch = decode_batch(
        [value],
        [None],
        registry=registry,
        now=now,
        retention_cutoff=now - timedelta(days=180),
        limits=DecodeLimits(),
        vendor_max_bytes=1 << 20,
    )
    assert batch.result.rejected == []
    table = batch.result.table
    assert table.num_rows == 1
    row = table.to_pylist()[0]
    assert row["plate"] == str(read["plate"]).upper()  # normalised
    assert row["plate_country"] == read["plate_country"]
    assert row["camera_id"] == read["camera_id"]
    assert row["direction"] == read["direction"]
    assert row["captured_at"] == captured
    assert row["source_format"] == fmt
    quirks = [q for q in read["quirks"] if q != "country_unknown"]  # type: ignore[union-attr]
    assert batch.quirks == {(fmt, q): 1 for q in quirks}


@pytest.mark.parametrize("name", REFUSED)
def test_corpus_refusal(name: str, registry: SiteRegistry) -> None:
    value, reason, detail = REFUSED[name]
    fmt = detect_format(value)
    reads, rejects = map_vendor(value, fmt, registry)
    assert reads == []
    assert rejects == [(reason, detail)]


def test_sharpv_is_its_own_format() -> None:
    value = sample("genetec/genetec-sharpv-14.2-http-json.json")
    assert detect_format(value, "application/json") == "genetec_sharpv"


def test_a_retransmitted_long_frame_id_is_the_same_event() -> None:
    ten = READS["openalpr: the same with a 10-digit camera id (frame ids of 65 characters)"][0]
    other = ten.replace(b"1609433731402", b"1609433731403")  # another frame, another vehicle
    ids = []
    for value in (ten, ten, other):
        doc = json.loads(value.decode("utf-8-sig"))
        ids.append(digest(doc["best_uuid"]))
    assert ids[0] == ids[1] != ids[2]


@pytest.mark.parametrize(
    ("region", "country", "expected"),
    [
        ('"us-mo"', None, "US"),  # Missouri in the US
        ('"mo"', '"us"', "US"),  # a bare region beside the payload's country: its subdivision
        ('"eu-no"', '"eu"', "NO"),
        ('"no"', '"eu"', "NO"),  # "eu" names no country: the region is one
        ('"xx"', None, "ZZ"),  # unassigned: unknown, never stored as a country
        ('"eu"', None, "ZZ"),
    ],
)
def test_openalpr_regions(
    region: str, country: str | None, expected: str, registry: SiteRegistry
) -> None:
    value = sample("openalpr/rekor-docs-alpr_results.json").replace(b'"us-mo"', region.encode())
    if country is not None:
        value = value.replace(b'"version" : 2,', f'"version" : 2, "country" : {country},'.encode())
    (read,), _ = map_vendor(value, "openalpr_results", registry)
    assert read["plate_country"] == expected
