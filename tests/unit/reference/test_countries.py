"""Vendor country codes: mapped only to the country they name, else unknown (ZZ)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipeline.reference.countries import known_countries, vendor_country


@pytest.mark.parametrize(
    ("code", "kwargs", "expected"),
    [
        ("no", {}, "NO"),
        ("NOR", {}, "NO"),
        ("uk", {}, "GB"),
        ("de-by", {}, "DE"),
        ("us-mo", {}, "US"),
        ("eu-no", {}, "NO"),
        ("mo", {"context": "us"}, "US"),  # Missouri beside "us": never Macao
        ("no", {"context": "eu"}, "NO"),  # a group is no country: the code is one
        ("mo", {}, "MO"),  # a bare code from a vendor whose bare codes are countries
        ("CA", {"bare_may_be_subdivision": True}, "ZZ"),  # California or Canada
        ("DE", {"bare_may_be_subdivision": True}, "ZZ"),  # Delaware or Germany
        ("NO", {"bare_may_be_subdivision": True}, "NO"),  # no state is NO
        ("NON", {}, "ZZ"),
        ("", {}, "ZZ"),
        ("-", {}, "ZZ"),
        (None, {}, "ZZ"),
        ("XX", {}, "ZZ"),
        ("eu", {}, "ZZ"),
        ("16", {}, "ZZ"),
        ("QQQ", {}, "ZZ"),
        ("x" * 40, {}, "ZZ"),
    ],
)
def test_vendor_country(code: str | None, kwargs: dict[str, object], expected: str) -> None:
    assert vendor_country(code, **kwargs) == expected  # type: ignore[arg-type]


def test_known_countries_keeps_countries_and_nulls() -> None:
    codes = pa.array(["NO", "XX", None, "ZZ", "XK"], pa.string())
    assert known_countries(codes).to_pylist() == ["NO", "ZZ", None, "ZZ", "XK"]
