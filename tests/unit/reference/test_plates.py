"""Plate normalisation and country formats. Every plate here is made up."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.reference.plates import is_valid_plate, normalise_plate, normalise_plates


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("AB 12345", "AB12345"),
        ("ab 123-45", "AB12345"),
        ("AB.123.45", "AB12345"),
        ("AB_12345", "AB12345"),
        ("\tAB 12345 \n", "AB12345"),
        # Cyrillic capitals and small letters, Greek capitals: folded to Latin twins
        ("\u0410\u0412 12345", "AB12345"),
        ("\u0430\u0432 12345", "AB12345"),
        ("\u0391\u0392 12345", "AB12345"),
        ("\u0420\u0421\u0422\u0425\u0423 1", "PCTXY1"),
        ("\u039a\u039c\u039d\u0397\u039f", "KMNHO"),
        # compatibility forms, invisible characters and Unicode separators
        ("\uff21\uff22\uff11\uff12\uff13\uff14\uff15", "AB12345"),
        ("AB\u200b12345", "AB12345"),
        ("AB\u00a012345", "AB12345"),
        ("AB\u201312345", "AB12345"),
        ("AB\u00ad12345", "AB12345"),
        ("AB\u00b712345", "AB12345"),
        # Nordic/German letters fold to their base letter
        ("T\u00dc-AB 12", "TUAB12"),
        ("\u00e5\u00e4\u00f6", "AAO"),
        # not separators: kept, so the plate is invalid
        ("'; DROP TABLE plate_reads;--", "';DROPTABLEPLATEREADS;"),
        ("AB/12345", "AB/12345"),
        ("\u0416\u0416 12345", "\u0416\u041612345"),
        ("", ""),
    ],
)
def test_normalise_plate(raw: str, expected: str) -> None:
    assert normalise_plate(raw) == expected


@pytest.mark.parametrize(
    ("country", "valid", "invalid"),
    [
        (
            "NO",
            ["AB 12345", "EL 12345", "AB 1234", "CD 12345", "XYZ7", "QX"],
            ["A", "12345", "AB123456"],
        ),
        ("SE", ["ABC 123", "ABC 12A", "XYZ7"], ["ABCD1234", "1", "12345678"]),
        ("FI", ["ABC-123", "AB-1", "XYZ-99"], ["ABCD-123", "ABC-1234", "123"]),
        ("DK", ["AB 12 345"], ["AB 1234", "ABC 12345", "12345"]),
        ("DE", ["B-AB 1234", "M-X 1", "BAB-Q 12E", "HH-AB 123H"], ["B 1234", "AB-CD", "1-AB 12"]),
        ("PL", ["WA 12345", "KR 1A234", "WPR 1234"], ["W 12345", "WA 123", "12 34567"]),
        ("LT", ["ABC 123"], ["AB 123", "ABC 1234", "ABC12D"]),
        ("RU", ["A 123 BC 77", "\u0410 123 \u0412\u0421 777"], ["\u0416 123 BC 77", "A123BC7"]),
        ("GB", ["AB12 CDE", "X1"], ["ABCDEF", "123456", "A", "ABCDEFGHIJ1"]),
    ],
)
def test_country_formats(country: str, valid: list[str], invalid: list[str]) -> None:
    for plate in valid:
        assert is_valid_plate(plate, country), plate
    for plate in invalid:
        assert not is_valid_plate(plate, country), plate


@pytest.mark.parametrize(
    "plate",
    ["'; DROP TABLE plate_reads;--", "AB/12345", "AB 12345 \u2603", "\u0416\u0416 12345", ""],
)
def test_characters_outside_a_z_0_9_are_invalid_everywhere(plate: str) -> None:
    for country in ["NO", "SE", "DE", "GB"]:
        assert not is_valid_plate(plate, country)


def test_vectorised_keeps_rows_aligned_and_nulls_invalid() -> None:
    raw = pa.array(["ab 12345", None, "\u0410\u0412 12345", "ABC 123", "AB 12345", "ZZ 1"])
    countries = pa.array(["NO", "NO", "NO", "SE", None, "NL"])
    normalised, valid = normalise_plates(raw, countries)
    assert normalised.to_pylist() == ["AB12345", None, "AB12345", "ABC123", "AB12345", "ZZ1"]
    assert valid.to_pylist() == [True, False, True, True, False, True]
    assert valid.null_count == 0


def test_vectorised_accepts_chunked_arrays() -> None:
    raw = pa.chunked_array([["AB 12345"], ["ABC 123"]])
    countries = pa.chunked_array([["NO"], ["SE"]])
    normalised, valid = normalise_plates(raw, countries)
    assert normalised.to_pylist() == ["AB12345", "ABC123"]
    assert valid.to_pylist() == [True, True]


def test_vectorised_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="same length"):
        normalise_plates(pa.array(["AB 12345"]), pa.array(["NO", "SE"]))


@given(st.text(max_size=30))
def test_normalise_plate_is_idempotent(raw: str) -> None:
    once = normalise_plate(raw)
    assert normalise_plate(once) == once


@given(st.lists(st.tuples(st.text(max_size=12), st.sampled_from(["NO", "SE", "FI", "DE", "GB"]))))
def test_vectorised_agrees_with_scalar(rows: list[tuple[str, str]]) -> None:
    raw = pa.array([r for r, _ in rows], pa.string())
    countries = pa.array([c for _, c in rows], pa.string())
    normalised, valid = normalise_plates(raw, countries)
    assert normalised.to_pylist() == [normalise_plate(r) for r, _ in rows]
    assert valid.to_pylist() == [is_valid_plate(r, c) for r, c in rows]


@given(
    st.text(max_size=20), st.sampled_from(["NO", "SE", "FI", "DK", "DE", "PL", "LT", "RU", "US"])
)
def test_valid_plates_are_a_z_0_9_only(raw: str, country: str) -> None:
    if is_valid_plate(raw, country):
        assert re.fullmatch(r"[A-Z0-9]{1,10}", normalise_plate(raw))
