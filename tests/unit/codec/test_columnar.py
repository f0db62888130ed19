"""The columnar vendor path gives exactly what the per-message mappers give.

Every batch here is decoded twice, with the vendors' ``map_batch`` and with it switched off,
and the stored rows, rejections (reason and detail) and expired reads must be the same.
"""

from __future__ import annotations

import copy
import json
import random
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipeline.codec import batch as batch_module
from pipeline.codec.batch import BatchDecoded, decode_batch
from pipeline.codec.plate_reads import DecodeLimits
from pipeline.codec.reasons import Reason
from pipeline.codec.vendors import BOM, VENDOR_RULES, map_vendor
from pipeline.codec.vendors._columnar import (
    _long_digit_runs,
    directions_by_heading,
    ordinary,
    utc_text,
)
from pipeline.codec.vendors._shared import DirectionRule, Target
from pipeline.reference.sites import SiteRegistry, load_registry
from tests.unit.codec.test_batch import NOW, REGISTRY, messages
from tests.unit.codec.test_vendor_corpus import REGISTRY_TOML
from tests.unit.codec.test_vendors import BILLION_LAUGHS, EXTERNAL_DTD, EXTERNAL_ENTITY

CORPUS = Path(__file__).parents[2] / "fixtures" / "vendors" / "platerecognizer"


def _decode(
    values: list[bytes],
    *,
    columnar: bool,
    monkeypatch: pytest.MonkeyPatch,
    registry: SiteRegistry = REGISTRY,
) -> BatchDecoded:
    with monkeypatch.context() as patch:
        if not columnar:
            patch.setattr(batch_module, "batch_mapper", lambda fmt: None)
        return decode_batch(
            values,
            [None] * len(values),
            registry=registry,
            now=NOW,
            retention_cutoff=NOW - timedelta(days=3650),
            limits=DecodeLimits(),
            vendor_max_bytes=2 * 1024 * 1024,
        )


def _same(
    values: list[bytes], monkeypatch: pytest.MonkeyPatch, registry: SiteRegistry = REGISTRY
) -> BatchDecoded:
    fast = _decode(values, columnar=True, monkeypatch=monkeypatch, registry=registry)
    slow = _decode(values, columnar=False, monkeypatch=monkeypatch, registry=registry)
    assert fast.result.table.sort_by("msg_index").to_pylist() == (
        slow.result.table.sort_by("msg_index").to_pylist()
    )
    assert fast.result.rejected == slow.result.rejected
    assert fast.result.expired == slow.result.expired
    assert (fast.extra_by_format, fast.quirks) == (slow.extra_by_format, slow.quirks)
    return fast


def _stream() -> dict[str, Any]:
    # The vendor's tester payload on a registered camera, captured shortly before NOW.
    doc: dict[str, Any] = json.loads((CORPUS / "parkpow-webhook-tester-stream.json").read_text())
    doc["data"]["camera_id"] = "orje-entry-front"
    doc["data"]["timestamp"] = "2026-11-22T10:42:58.740143+00:00"
    return doc


Mutation = Callable[[dict[str, Any]], None]


def _result(key: str, value: object) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc["data"]["results"][0][key] = value

    return mutate


def _data(key: str, value: object) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc["data"][key] = value

    return mutate


MUTATIONS: dict[str, Mutation] = {
    "as published": lambda doc: None,
    "empty region": _result("region", {"code": "", "score": 0}),
    "no region": _result("region", None),
    "region object without code": _result("region", {"score": 0.5}),
    "region as a string": _result("region", "fr"),
    "bare region code": _result("region", {"code": "mo", "score": 0.5}),
    "unassigned region": _result("region", {"code": "xx", "score": 0.5}),
    "direction empty": _result("direction", ""),
    "direction 400": _result("direction", 400),
    "no direction": _result("direction", None),
    "score 2": _result("score", 2),
    "score as text": _result("score", "0.9"),
    "score true": _result("score", True),
    "plate empty": _result("plate", " "),
    "plate too long": _result("plate", "q" * 25),
    "plate number": _result("plate", 12345),
    "plate non-ASCII": _result("plate", "\u00e5b123"),
    "vehicle as a list": _result("vehicle", ["Sedan"]),
    "unknown vehicle type": _result("vehicle", {"type": "Tank", "score": 0.5}),
    "candidate without plate": _result("candidates", [{"score": 0.5}]),
    "candidate score 7": _result("candidates", [{"plate": "q1", "score": 7}]),
    "many candidates": _result(
        "candidates", [{"plate": f"q{k}", "score": k / 10} for k in range(8)]
    ),
    "camera unknown": _data("camera_id", "nowhere"),
    "camera empty": _data("camera_id", ""),
    "camera as a number": _data("camera_id", 17),
    "no camera": _data("camera_id", None),
    "time naive with a space": _data("timestamp", "2026-11-22 10:42:58.740143"),
    "time with Z": _data("timestamp", "2026-11-22T10:42:58Z"),
    "time with seven digits": _data("timestamp", "2026-11-22T10:42:58.7401431+00:00"),
    "time offset without colon": _data("timestamp", "2026-11-22T10:42:58+0100"),
    "time not on the calendar": _data("timestamp", "2026-02-30T10:42:58Z"),
    "time in 1999": _data("timestamp", "1999-12-31T23:59:59Z"),
    "time on the first day of 2000 east of UTC": _data("timestamp", "2000-01-01T00:30:00+01:00"),
    "time in the future": _data("timestamp", "2026-11-23T10:00:00Z"),
    "time expired": _data("timestamp", "2010-01-01T10:00:00Z"),
    "time as a number": _data("timestamp", 1700000000),
    "no results": _data("results", []),
    "results null": _data("results", None),
    "a null result": _data("results", [None]),
    "too many results": lambda doc: doc["data"].update(results=doc["data"]["results"] * 51),
    "two results, second broken": lambda doc: doc["data"]["results"].append(
        {**doc["data"]["results"][0], "score": 3}
    ),
    "three results": lambda doc: doc["data"].update(results=doc["data"]["results"] * 3),
    "no hook": lambda doc: doc.pop("hook"),
    "hook as a string": lambda doc: doc.update(hook="x"),
    "data as a list": lambda doc: doc.update(data=[1]),
}


def _encoded(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


RAW: dict[str, bytes] = {
    "repeated unread key": _encoded(_stream()).replace(b'"dscore"', b'"box": 1, "box"', 1),
    "repeated read key": _encoded(_stream()).replace(
        b'"score": 0.902', b'"score": 0.5, "score": 0.902', 1
    ),
    "NaN in an unread field": _encoded(_stream()).replace(b'"dscore": 0.757', b'"dscore": NaN'),
    "repeated key in an unmapped object": _encoded(_stream()).replace(
        b'"dscore"', b'"extra": {"k": 1, "k": 2}, "dscore"', 1
    ),
    "deep nesting in an unread field": _encoded(_stream()).replace(
        b'"dscore"', b'"extra": ' + b"[" * 300 + b"]" * 300 + b', "dscore"', 1
    ),
    "escaped slash": _encoded(_stream()).replace(b'"dscore"', b'"extra": "a\\/b", "dscore"', 1),
    "pretty-printed": json.dumps(_stream(), indent=2).encode(),
    "byte-order mark": b"\xef\xbb\xbf" + _encoded(_stream()),
    "trailing bytes": _encoded(_stream()) + b" x",
    "escaped plate": _encoded(_stream()).replace(
        b'"plate": "ql8rec"', b'"plate": "q\\u00e5rec"', 1
    ),
}


def _slow_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per payload the per-message mapper is asked for from now on."""
    calls: list[int] = []
    original = batch_module.map_vendor

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(batch_module, "map_vendor", counting)
    return calls


@pytest.mark.parametrize("name", MUTATIONS)
def test_one_payload_either_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = copy.deepcopy(_stream())
    MUTATIONS[name](doc)
    _same([_encoded(doc)], monkeypatch)


@pytest.mark.parametrize("name", RAW)
def test_hostile_bytes_either_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _same([RAW[name]], monkeypatch)
    assert not ordinary(RAW[name]) or result.result.table.num_rows == 1


def test_everything_in_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    values: list[bytes] = []
    for mutate in MUTATIONS.values():
        doc = copy.deepcopy(_stream())
        mutate(doc)
        values.append(_encoded(doc))
    values += RAW.values()
    simulated, _, _ = messages(400)
    result = _same(values + simulated, monkeypatch)
    assert result.result.table.num_rows > 300


def test_the_published_messages_either_path(monkeypatch: pytest.MonkeyPatch) -> None:
    values = [p.read_bytes() for p in sorted(CORPUS.iterdir())]
    _same(values, monkeypatch)


def test_ordinary_payloads_take_the_columnar_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _slow_calls(monkeypatch)
    value = _encoded(_stream())
    assert ordinary(value)
    result = _decode([value] * 5, columnar=True, monkeypatch=monkeypatch)
    assert result.result.table.num_rows == 5
    assert calls == []  # none of them went through the per-message mapper


# -- OpenALPR alpr_group ------------------------------------------------------------------------

OPENALPR = CORPUS.parent / "openalpr"


def _group() -> dict[str, Any]:
    # The agent 2.8 capture on a registered camera, an hour before NOW (whole milliseconds).
    doc: dict[str, Any] = json.loads(
        (OPENALPR / "openalprwebhookprocessor-alpr_group-v2.json").read_bytes().removeprefix(BOM)
    )
    start = int((NOW - timedelta(hours=1)).timestamp() * 1000) + 123
    doc.update(camera_id=710401, epoch_start=start, epoch_end=start + 265)
    return doc


def _top(key: str, value: object) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc[key] = value

    return mutate


def _best(key: str, value: object) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc["best_plate"][key] = value

    return mutate


GROUP_MUTATIONS: dict[str, Mutation] = {
    "as published": lambda doc: None,
    "version 3": _top("version", 3),
    "version 12": _top("version", 12),
    "version 0": _top("version", 0),
    "version as text": _top("version", "2"),
    "no version": lambda doc: doc.pop("version"),
    "data_type alpr_results": _top("data_type", "alpr_results"),
    "best_uuid outside uuids": _top("best_uuid", "QA-710401-1"),
    "no uuids": _top("uuids", None),
    "uuids as text": _top("uuids", "x"),
    "best_uuid longer than an event id": _top("best_uuid", "Q" * 70),
    "best_uuid with a space": _top("best_uuid", "Q Q"),
    "camera unknown": _top("camera_id", 17),
    "camera as text": _top("camera_id", "710401"),
    "camera as a float": _top("camera_id", 710401.0),
    "epoch_start in seconds": _top("epoch_start", 1_700_000_000),
    "epoch_start fractional": lambda doc: doc.update(epoch_start=doc["epoch_start"] + 0.6),
    "epoch_start in 1999": _top("epoch_start", 946_684_799_999),
    "epoch_start beyond 9999": _top("epoch_start", 10**15),
    "epoch_end before start": lambda doc: doc.update(epoch_end=doc["epoch_start"] - 1),
    "epoch_end in the same ms": lambda doc: doc.update(epoch_end=doc["epoch_start"] + 0.5),
    "no epoch_end": _top("epoch_end", None),
    "best_plate_number": _top("best_plate_number", "QQ12345"),
    "best_plate_number blank": _top("best_plate_number", " "),
    "best_plate_number too long": _top("best_plate_number", "Q" * 25),
    "best_confidence 150": _top("best_confidence", 150),
    "best_confidence beside best_plate's": _top("best_confidence", 55.5),
    "best_region empty": _top("best_region", ""),
    "best_region bare with country us": _top("best_region", "mo"),
    "no region at all": _best("region", None),
    "no country": _top("country", None),
    "no candidates: best_plate's": _top("candidates", None),
    "many candidates": _top(
        "candidates", [{"plate": f"Q{k}", "confidence": k * 10.0} for k in range(8)]
    ),
    "candidate confidence 120": _top("candidates", [{"plate": "Q1", "confidence": 120}]),
    "candidate without confidence": _top("candidates", [{"plate": "Q1"}, {"plate": "Q2"}]),
    "candidate without plate": _top("candidates", [{"confidence": 50}]),
    "travel_direction 400": _top("travel_direction", 400),
    "travel_direction 90": _top("travel_direction", 90),
    "travel_direction empty": _top("travel_direction", ""),
    "tractor-trailer": _top("vehicle", {"body_type": [{"name": "tractor-trailer"}]}),
    "no body types": _top("vehicle", {"body_type": []}),
    "a null body type": _top("vehicle", {"body_type": [None]}),
    "vehicle as a list": _top("vehicle", ["sedan"]),
    "best_plate null": lambda doc: doc.update(
        best_plate=None, best_plate_number="QQ12345", best_confidence=80
    ),
    "best_plate null and nothing else": _top("best_plate", None),
}


@pytest.mark.parametrize("name", GROUP_MUTATIONS)
def test_one_group_either_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = copy.deepcopy(_group())
    GROUP_MUTATIONS[name](doc)
    _same([_encoded(doc)], monkeypatch)


@pytest.mark.parametrize("version", [1, 2, None])
def test_group_with_a_byte_order_mark_either_path(
    version: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = dict(_group(), version=version)
    _same([BOM + _encoded(doc)], monkeypatch)


def test_every_group_in_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    values: list[bytes] = []
    for mutate in GROUP_MUTATIONS.values():
        doc = copy.deepcopy(_group())
        mutate(doc)
        values.append(_encoded(doc))
    values.append(BOM + _encoded(_group()))
    values += [
        (OPENALPR / name).read_bytes() for name in sorted(p.name for p in OPENALPR.iterdir())
    ]
    result = _same(values, monkeypatch)
    assert result.quirks  # versions and best_uuid outside uuids were counted on both paths


def test_ordinary_groups_take_the_columnar_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _slow_calls(monkeypatch)
    values = [_encoded(dict(_group(), version=3)), BOM + _encoded(_group())]
    result = _decode(values, columnar=True, monkeypatch=monkeypatch)
    assert result.result.table.num_rows == 2
    assert calls == []
    assert result.quirks == {("openalpr_group", "version_3"): 1}


def _top_of(doc: dict[str, Any]) -> dict[str, Any]:
    return doc


def _best_of(doc: dict[str, Any]) -> dict[str, Any]:
    best: dict[str, Any] = doc["best_plate"]
    return best


MALFORMED = Reason.MALFORMED_JSON


Place = Callable[[dict[str, Any]], dict[str, Any]]


def _raw_group(place: Place, key: str, raw: str) -> bytes:
    """The group with the member ``key`` of ``place`` written as ``raw`` (``{v}``: its value
    as JSON)."""
    doc = copy.deepcopy(_group())
    value = json.dumps(place(doc)[key])
    place(doc)[key] = "RAW-MARK"
    text = _encoded(doc)
    assert text.count(b'"RAW-MARK"') == 1
    return text.replace(f'"{key}": "RAW-MARK"'.encode(), raw.format(v=value).encode())


_LIMIT = sys.get_int_max_str_digits()


# (payload, stored): a group is held to repeats of the fields read, at their places
# (pipeline.codec); NaN/Infinity and overlong integers are refused anywhere.
def _color(doc: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = doc["vehicle"]["color"][0]
    return first


def _body(doc: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = doc["vehicle"]["body_type"][0]
    return first


def _candidate(doc: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = doc["candidates"][0]
    return first


GROUP_RAW: dict[str, tuple[Place, str, str, bool]] = {
    "repeated unread key": (_top_of, "agent_type", '"agent_type": "a", "agent_type": {v}', True),
    "repeated unread key in a read object": (
        _best_of,
        "matches_template",
        '"matches_template": 0, "matches_template": {v}',
        True,
    ),
    "repeated read name in an unread object": (_color, "name", '"name": "r", "name": {v}', True),
    "repeated read key": (_top_of, "camera_id", '"camera_id": {v}, "camera_id": {v}', False),
    "repeated read key in a read object": (_best_of, "plate", '"plate": {v}, "plate": {v}', False),
    "repeated read key in a list": (_candidate, "plate", '"plate": "Q1", "plate": {v}', False),
    "repeated body type name": (_body, "name", '"name": {v}, "name": {v}', False),
    "NaN in an unread field": (_top_of, "gps_latitude", '"gps_latitude": NaN', False),
    "-Infinity in an unread list": (_color, "confidence", '"confidence": [1, -Infinity]', False),
    "Infinity after blanks": (_top_of, "gps_longitude", '"gps_longitude": \t Infinity', False),
    "NaN and Inf in a string": (_top_of, "agent_type", '"agent_type": "x: NaN,[-Inf"', True),
    "integer past Python's digit limit": (
        _top_of,
        "frame_start",
        f'"frame_start": {"9" * (_LIMIT + 1)}',
        False,
    ),
    "integer at the limit": (_top_of, "frame_start", f'"frame_start": {"9" * _LIMIT}', True),
    "as many digits in a string": (
        _top_of,
        "agent_uid",
        f'"agent_uid": "{"1" * (3 * _LIMIT)}"',
        True,
    ),
}


def _hostile_group(name: str) -> tuple[bytes, bool]:
    place, key, raw, stored = GROUP_RAW[name]
    return _raw_group(place, key, raw), stored


@pytest.mark.parametrize("name", GROUP_RAW)
def test_hostile_group_either_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    value, stored = _hostile_group(name)
    result = _same([value], monkeypatch)
    assert result.result.table.num_rows == (1 if stored else 0)
    assert [r.reason for r in result.result.rejected] == ([] if stored else [MALFORMED])


def test_every_hostile_group_in_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = _encoded(_group())
    values = [v for name in GROUP_RAW for v in (plain, _hostile_group(name)[0])]
    result = _same(values, monkeypatch)
    kept = sum(stored for *_, stored in GROUP_RAW.values())
    assert result.result.table.num_rows == len(GROUP_RAW) + kept


def test_groups_with_unread_repeats_take_the_columnar_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _slow_calls(monkeypatch)
    names = ["repeated unread key", "repeated unread key in a read object"]
    names.append("repeated read name in an unread object")
    values = [_hostile_group(name)[0] for name in names]
    result = _decode(values, columnar=True, monkeypatch=monkeypatch)
    assert (result.result.table.num_rows, calls) == (3, [])


def test_frames_refuse_any_repeat() -> None:
    frame = (OPENALPR / "rekor-docs-alpr_results.json").read_bytes()
    repeated = frame.replace(b'"version"', b'"x": 1, "x": 2, "version"', 1)
    assert repeated != frame
    _, rejects = map_vendor(repeated, "openalpr_results", REGISTRY)
    assert rejects == [(MALFORMED, "a JSON object repeats a key")]


@pytest.mark.parametrize("seed", range(5))
def test_each_overlong_digit_run_is_found_once(seed: int) -> None:
    # Runs at, around and far past the limit, side by side and apart, as a regex finds them.
    rng = random.Random(seed)
    lengths = [0, 1, _LIMIT - 1, _LIMIT, _LIMIT + 1, 2 * _LIMIT, 2 * _LIMIT + 1, 5 * _LIMIT + 3]
    data = b"".join(
        b"x" * rng.randint(0, 2 * _LIMIT) + b"7" * rng.choice(lengths) for _ in range(40)
    )
    runs = [m.span() for m in re.finditer(rb"[0-9]{%d,}" % (_LIMIT + 1), data)]
    found = _long_digit_runs(data)
    assert len(found) == len(runs) > 0
    assert all(start <= at < end for at, (start, end) in zip(found, runs, strict=True))


def test_directions_by_heading_as_by_heading() -> None:
    rules = {
        "no rule": DirectionRule("entry"),
        "south": DirectionRule("exit", entry_heading=200.0),
        "north": DirectionRule("entry", entry_heading=0.0),
        "across north": DirectionRule("exit", entry_heading=350.0),
    }
    camera = REGISTRY.cameras[0]
    found = {key: Target(camera, rule, None) for key, rule in rules.items()}
    headings = [None, 0.0, 10.0, 20.0, 90.0, 110.0, 170.0, 200.0, 270.0, 289.9, 290.1, 360.0]
    rows = [(key, heading) for key in rules for heading in headings]
    rows += [(key, heading) for key, heading in zip(rules, reversed(headings), strict=False)]
    keys = pa.array([key for key, _ in rows])
    headings = pa.array([h for _, h in rows], pa.float64())
    got = directions_by_heading(keys, found, headings)
    assert got == [rules[key].by_heading(heading) for key, heading in rows]
    assert directions_by_heading(keys.dictionary_encode(), found, headings) == got
    assert {"entry", "exit"} == set(got)


def test_utc_text_as_strftime() -> None:
    millis = pa.array(
        [0, 999, 951_782_400_000, 1_700_000_000_001, 1_798_761_599_999, 253_402_300_799_999]
    )
    assert utc_text(millis).to_pylist() == [
        datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
        for ms in millis.to_pylist()
    ]
    assert utc_text(millis)[2].as_py() == "2000-02-29T00:00:00.000Z"


# -- Genetec Security Center / AutoVu ----------------------------------------------------------

GENETEC = CORPUS.parent / "genetec"
MDY_CAMERA = "c41b7e02-7d13-4a9f-b2e5-000000000021"
DMY_CAMERA = "3f2c9a10-5b7e-4d21-9c0a-000000000601"


def _genetec() -> dict[str, Any]:
    # The Security Center webhook on a registered MDY camera, two hours before NOW.
    doc: dict[str, Any] = json.loads(
        (GENETEC / "parkpow-security-center-webhook.json").read_bytes()
    )
    doc.update(CameraName=MDY_CAMERA, DateUtc="11/22/2026", TimeUtc="9:59:58.123 AM")
    return doc


def _dmy(date: str, time: str) -> Mutation:
    return lambda doc: doc.update(CameraName=DMY_CAMERA, DateUtc=date, TimeUtc=time)


def _attribute(key: str, value: object) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc["Attributes"][key] = value

    return mutate


GENETEC_MUTATIONS: dict[str, Mutation] = {
    "as published": lambda doc: None,
    "PM": _top("TimeUtc", "1:59:58 PM"),
    "12 AM": _top("TimeUtc", "12:00:00 AM"),
    "12 PM": _top("TimeUtc", "12:00:00 PM"),
    "13 PM": _top("TimeUtc", "13:00:00 PM"),
    "0 AM": _top("TimeUtc", "0:10:00 AM"),
    "pm in lower case, no space": _top("TimeUtc", "1:00:00pm"),
    "24-hour clock": _top("TimeUtc", "10:59:58"),
    "hour 24": _top("TimeUtc", "24:00:00"),
    "minute 60": _top("TimeUtc", "10:60:00"),
    "second 60": _top("TimeUtc", "10:00:60"),
    "seven fraction digits": _top("TimeUtc", "10:00:00.1234567"),
    "time with spaces around": _top("TimeUtc", " 10:00:00 "),
    "time not a time": _top("TimeUtc", "ten"),
    "no time": _top("TimeUtc", None),
    "date in the wrong order": _top("DateUtc", "22/11/2026"),
    "date 29 February 2026": _top("DateUtc", "2/29/2026"),
    "date in 1999": _top("DateUtc", "12/31/1999"),
    "date with two separators": _top("DateUtc", "11/22-2026"),
    "date with a two-digit year": _top("DateUtc", "11/22/26"),
    "date tomorrow": _top("DateUtc", "11/23/2026"),
    "date expired": _top("DateUtc", "1/1/2010"),
    "DMY with dots": _dmy("22.11.2026", "09:59:58.123"),
    "DMY with dashes": _dmy("22-11-2026", "09:59:58"),
    "DMY impossible": _dmy("11/22/2026", "09:59:58"),
    "camera unknown": _top("CameraName", "nowhere"),
    "camera empty": _top("CameraName", ""),
    "camera as a number": _top("CameraName", 17),
    "VehicleID longer than an event id": _top("VehicleID", "V" * 70),
    "VehicleID with a space": _top("VehicleID", "V V"),
    "no VehicleID": _top("VehicleID", None),
    "confidence with a comma": _top("ConfidenceScore", "87,5"),
    "confidence 100.5": _top("ConfidenceScore", "100.5"),
    "confidence 101": _top("ConfidenceScore", "101"),
    "confidence padded": _top("ConfidenceScore", " 87 "),
    "confidence as a number": _top("ConfidenceScore", 87),
    "confidence not a number": _top("ConfidenceScore", "high"),
    "plate blank": _top("Plate", " "),
    "plate too long": _top("Plate", "Q" * 25),
    "State empty: State Name": _top("State", ""),
    "State NO": _top("State", "NO"),
    "no State, no State Name": lambda doc: doc.update(State=None, Attributes={}),
    "RelativeMotion approaching": _top("RelativeMotion", "Approaching"),
    "VehicleType van": _top("VehicleType", "Van"),
    "VehicleType empty: the attribute": _top("VehicleType", ""),
    "Vehicle Type pickup": _attribute("Vehicle Type", "Pickup"),
    "Attributes null": _top("Attributes", None),
    "Attributes as text": _top("Attributes", "x"),
}


@pytest.mark.parametrize("name", GENETEC_MUTATIONS)
def test_one_genetec_read_either_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = copy.deepcopy(_genetec())
    GENETEC_MUTATIONS[name](doc)
    _same([_encoded(doc)], monkeypatch)


def test_every_genetec_read_in_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    values: list[bytes] = []
    for mutate in GENETEC_MUTATIONS.values():
        doc = copy.deepcopy(_genetec())
        mutate(doc)
        values.append(_encoded(doc))
    values += [(GENETEC / name).read_bytes() for name in sorted(p.name for p in GENETEC.iterdir())]
    result = _same(values, monkeypatch)
    assert result.result.table.num_rows > 10


def test_ordinary_genetec_reads_take_the_columnar_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _slow_calls(monkeypatch)
    dmy = _genetec()
    GENETEC_MUTATIONS["DMY with dots"](dmy)
    result = _decode([_encoded(_genetec()), _encoded(dmy)], columnar=True, monkeypatch=monkeypatch)
    assert result.result.table.num_rows == 2
    assert calls == []


# -- Hikvision ISAPI alerts (XML) -----------------------------------------------------------------

HIKVISION = CORPUS.parent / "hikvision"
XmlMutation = Callable[[bytes], bytes]


def _alert() -> bytes:
    # The ParkPow capture, sent by a registered camera (deviceID) two hours before NOW.
    value = (HIKVISION / "parkpow-hikvision-lpr.xml").read_bytes()
    value = value.replace(b"2024-01-19T11:17:19+08:00", b"2026-11-22T10:59:58.250+01:00")
    return value.replace(b"<channelID>1</channelID>", b"<deviceID>HK-SVI-0031</deviceID>")


def _sub(old: bytes, new: bytes) -> XmlMutation:
    def mutate(value: bytes) -> bytes:
        assert old in value
        return value.replace(old, new, 1)

    return mutate


def _field(name: str, text: str) -> XmlMutation:
    """The first element ``name`` given ``text`` (which is XML, not escaped)."""
    return lambda value: re.sub(
        rf"<{name}>[^<]*</{name}>".encode(), f"<{name}>{text}</{name}>".encode(), value, count=1
    )


def _without(name: str) -> XmlMutation:
    return lambda value: re.sub(rf"<{name}>[^<]*</{name}>".encode(), b"", value, count=1)


_ROOT_END = b"</EventNotificationAlert>"
_ANPR_END = b"</ANPR>"


def _root_child(xml: str) -> XmlMutation:
    return _sub(_ROOT_END, xml.encode() + _ROOT_END)


def _anpr_child(xml: str) -> XmlMutation:
    return _sub(_ANPR_END, xml.encode() + _ANPR_END)


ALERT_MUTATIONS: dict[str, XmlMutation] = {
    "as published": lambda value: value,
    "by deviceID and channel": _root_child("<channelID>1</channelID>"),
    "camera unknown": _field("deviceID", "HK-NOWHERE"),
    "camera named only by a MAC we do not know": _without("deviceID"),
    "eventType duration": _field("eventType", "duration"),
    "no ANPR": lambda value: re.sub(rb"<ANPR>.*</ANPR>", b"", value, flags=re.S),
    "two ANPR elements": _root_child("<ANPR><licensePlate>QQ12345</licensePlate></ANPR>"),
    "no UUID": _without("UUID"),
    "UUID empty": _field("UUID", ""),
    "UUID longer than an event id": _field("UUID", "U" * 70),
    "UUID with a space": _field("UUID", "U U"),
    "a second UUID": _root_child("<UUID>second</UUID>"),
    "UUID with children": _field("UUID", "<a>x</a>"),
    "dateTime without an offset": _field("dateTime", "2026-11-22T10:59:58"),
    "dateTime 30 February": _field("dateTime", "2026-02-30T10:59:58+01:00"),
    "dateTime in 1999": _field("dateTime", "1999-12-31T10:59:58Z"),
    "dateTime beyond 9999 in UTC": _field("dateTime", "9999-12-31T23:59:59-01:00"),
    "dateTime with seven fraction digits": _field("dateTime", "2026-11-22T10:59:58.1234567Z"),
    "dateTime padded": _field("dateTime", "\n 2026-11-22T10:59:58Z\t"),
    "dateTime tomorrow": _field("dateTime", "2026-11-23T10:59:58Z"),
    "dateTime expired": _field("dateTime", "2010-01-01T00:00:00Z"),
    "retransmission true": _field("isDataRetransmission", "true"),
    "retransmission yes": _field("isDataRetransmission", "yes"),
    "retransmission empty": _field("isDataRetransmission", ""),
    "confidence 100": _field("confidenceLevel", "100"),
    "confidence 101": _field("confidenceLevel", "101"),
    "confidence 7": _field("confidenceLevel", "7"),
    "confidence 9.5": _field("confidenceLevel", "9.5"),
    "confidence padded": _field("confidenceLevel", " 85 "),
    "confidence 0085": _field("confidenceLevel", "0085"),
    "no confidence": _without("confidenceLevel"),
    "direction FORWARD": _field("direction", "FORWARD"),
    "direction sideways": _field("direction", "sideways"),
    "no direction": _without("direction"),
    "country in ANPR and at the root": _anpr_child("<countryAbbreviation>SE</countryAbbreviation>"),
    "country NO at the root": _field("countryAbbreviation", "NO"),
    "country alpha-3": _field("countryAbbreviation", "SWE"),
    "country empty": _field("countryAbbreviation", ""),
    "country mo": _field("countryAbbreviation", "mo"),
    "no country": _without("countryAbbreviation"),
    "plate blank": _field("licensePlate", " "),
    "plate too long": _field("licensePlate", "Q" * 25),
    "plate with a space inside": _field("licensePlate", "QZ 601"),
    "plate with CR LF inside": _field("licensePlate", "QZ\r\n601"),
    "plate on its own lines": _field("licensePlate", "\r\nQZKT601\r\n"),
    "plate with an entity": _field("licensePlate", "QZ&amp;601"),
    "plate with a character reference": _field("licensePlate", "QZ&#75;601"),
    "plate as CDATA": _field("licensePlate", "<![CDATA[QZKT601]]>"),
    "plate self-closed": _sub(b"<licensePlate>QZKT601</licensePlate>", b"<licensePlate/>"),
    "plate with an attribute": _sub(b"<licensePlate>", b'<licensePlate kind="x">'),
    "plate only in a picture": lambda value: _without("licensePlate")(value).replace(
        b"<pId>", b"<licensePlate>QQ12345</licensePlate><pId>", 1
    ),
    "plate non-ASCII": _field("licensePlate", "QÅ12345"),
    "vehicleType heavyTruck": _field("vehicleType", "heavyTruck"),
    "no vehicleType": _without("vehicleType"),
    "entity in an unread field": _field("channelName", "A &amp; B"),
    "unread field non-ASCII": _field("channelName", "Kamera ø"),
    "a comment": _root_child("<!-- note -->"),
    "a processing instruction": _root_child("<?note x?>"),
    "end tag of another name": _root_child("<picNote>1</picnote>"),
    "an unclosed element": _root_child("<picNote>"),
    "an empty unread element": _root_child("<picNote/>"),
    "an unread element with an attribute": _root_child('<picNote a="1">x</picNote>'),
    "deeply nested unread elements": _root_child("<x>" * 12 + "</x>" * 12),
    "] in an unread field": _field("channelName", "a]]>b"),
    "tabs and CR LF between elements": lambda value: value.replace(b"\n", b"\r\n"),
    "no declaration": lambda value: value.split(b"?>", 1)[1].lstrip(),
    "declared ISO-8859-1": _sub(b'encoding="UTF-8"', b'encoding="ISO-8859-1"'),
    "declaration after a space": lambda value: b" " + value,
    "byte-order mark": lambda value: BOM + value,
    "root prefixed": lambda value: value.replace(
        b"<EventNotificationAlert version", b"<h:EventNotificationAlert xmlns:h='urn:h' version"
    ).replace(_ROOT_END, b"</h:EventNotificationAlert>"),
    "root in the XML namespace": _sub(
        b'xmlns="http://www.hikvision.com/ver20/XMLSchema"',
        b'xmlns="http://www.w3.org/XML/1998/namespace"',
    ),
    "root attribute twice": _sub(b'version="2.0"', b'version="2.0" version="2.1"'),
    "trailing bytes": lambda value: value + b"x",
    "a second document": lambda value: value + value.split(b"?>", 1)[1],
    "billion laughs": lambda value: BILLION_LAUGHS,
    "external entity": lambda value: EXTERNAL_ENTITY,
    "external DTD": lambda value: EXTERNAL_DTD,
}


@pytest.mark.parametrize("name", ALERT_MUTATIONS)
def test_one_alert_either_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _same([ALERT_MUTATIONS[name](_alert())], monkeypatch)


def test_every_alert_in_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    values = [mutate(_alert()) for mutate in ALERT_MUTATIONS.values()]
    simulated, _, _ = messages(400)
    result = _same(values + simulated, monkeypatch)
    assert result.result.table.num_rows > 300


def test_the_published_alerts_either_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The corpus' own registry: those alerts name their cameras by MAC and IP address.
    path = tmp_path / "sites.toml"
    path.write_text(REGISTRY_TOML, encoding="utf-8")
    registry = load_registry(path, VENDOR_RULES)
    values = [p.read_bytes() for p in sorted(HIKVISION.iterdir())]
    result = _same(values, monkeypatch, registry)
    assert result.result.table.num_rows == 2


def test_ordinary_alerts_take_the_columnar_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _slow_calls(monkeypatch)
    values = [
        _alert(),
        ALERT_MUTATIONS["tabs and CR LF between elements"](_alert()),
        ALERT_MUTATIONS["country in ANPR and at the root"](_alert()),
    ]
    result = _decode(values, columnar=True, monkeypatch=monkeypatch)
    assert result.result.table.num_rows == 3
    assert result.result.table["plate_country"].to_pylist() == ["ZZ", "ZZ", "SE"]
    assert calls == []
