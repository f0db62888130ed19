"""The pseudonyms and keyed ids are HMAC-SHA256 as the standard library computes it, for keys
shorter, equal to and longer than SHA-256's block, so stored pseudonyms and erasure-ledger
entries keep matching whatever computes them."""

from __future__ import annotations

import hashlib
import hmac

import pyarrow as pa
import pytest

from pipeline.pseudonym import HEX_CHARS, PREFIX, Pseudonymiser

PLATES = ["AB12345", "", "ØÆÅ 12", "X" * 200, "ZZ99999"]


@pytest.mark.parametrize("length", [16, 32, 63, 64, 65, 200])
def test_pseudonyms_equal_the_standard_hmac(length: int) -> None:
    key = bytes(range(length))
    pseudo = Pseudonymiser(key)
    for plate in PLATES:
        expected = hmac.new(key, plate.encode(), hashlib.sha256).hexdigest()[:HEX_CHARS]
        assert pseudo.one(plate) == PREFIX + expected
    many = pseudo.many(pa.array([*PLATES, None, PLATES[0]])).to_pylist()
    assert many == [pseudo.one(p) for p in PLATES] + [None, pseudo.one(PLATES[0])]


@pytest.mark.parametrize("length", [16, 64, 65])
def test_keyed_ids_equal_the_standard_hmac_under_the_derived_key(length: int) -> None:
    key = bytes(range(1, length + 1))
    id_key = hmac.new(key, b"anpr keyed ids", hashlib.sha256).digest()
    ids = [0, 1, -1, 2**63 - 1, -(2**63), 123456789]

    def expected(value: int) -> int:
        mac = hmac.new(id_key, value.to_bytes(8, "big", signed=True), hashlib.sha256).digest()
        return int.from_bytes(mac[:8], "big", signed=True)

    keyed = Pseudonymiser(key).keyed_ids(pa.array([*ids, None], pa.int64())).to_pylist()
    assert keyed == [expected(v) for v in ids] + [None]
