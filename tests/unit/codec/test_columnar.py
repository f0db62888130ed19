"""The columnar vendor path gives exactly what the per-message mappers give.

Every batch here is decoded twice, with the vendors' ``map_batch`` and with it switched off,
and the stored rows, rejections (reason and detail) and expired reads must be the same.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.codec import batch as batch_module
from pipeline.codec.batch import BatchDecoded, decode_batch
from pipeline.codec.plate_reads import DecodeLimits
from pipeline.codec.vendors._columnar import ordinary
from tests.unit.codec.test_batch import NOW, REGISTRY, messages

CORPUS = Path(__file__).parents[2] / "fixtures" / "vendors" / "platerecognizer"


def _decode(
    values: list[bytes], *, columnar: bool, monkeypatch: pytest.MonkeyPatch
) -> BatchDecoded:
    with monkeypatch.context() as patch:
        if not columnar:
            patch.setattr(batch_module, "batch_mapper", lambda fmt: None)
        return decode_batch(
            values,
            [None] * len(values),
            registry=REGISTRY,
            now=NOW,
            retention_cutoff=NOW - timedelta(days=3650),
            limits=DecodeLimits(),
            vendor_max_bytes=2 * 1024 * 1024,
        )


def _same(values: list[bytes], monkeypatch: pytest.MonkeyPatch) -> BatchDecoded:
    fast = _decode(values, columnar=True, monkeypatch=monkeypatch)
    slow = _decode(values, columnar=False, monkeypatch=monkeypatch)
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
    calls: list[int] = []
    original = batch_module.map_vendor

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(batch_module, "map_vendor", counting)
    value = _encoded(_stream())
    assert ordinary(value)
    result = _decode([value] * 5, columnar=True, monkeypatch=monkeypatch)
    assert result.result.table.num_rows == 5
    assert calls == []  # none of them went through the per-message mapper
