"""No column a role without clear plates sees is computable from a plate without the service's
key (issue 15, item 2): every column is classified, and the passage-id inversion of issue 15
(guess plates, recompute the unkeyed id from the shown site, direction and time) recovers
nothing from the analyst's view while it recovers every plate from the stored ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import product
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from lakehelp import plate_reads, write_reads

from pipeline.access.session import AccessSession
from pipeline.lake.catalog import Lake
from pipeline.pseudonym import Pseudonymiser
from pipeline.reference.passages import PassageGrouper, _key_hashes, _micros, _passage_ids

NOW = datetime.now(UTC).replace(microsecond=0)
# The plate format the attacker guesses over: two letters of three, then three digits.
LETTERS, DIGITS = "QRS", 3
PLATES = ["QR123", "SQ907", "RR000", "SS555", "QS314", "RQ271"]
# Every column an analyst or the statistics role sees, and why it reveals no plate.
CLASSIFIED = {
    "plate_pseudonym": "keyed HMAC of the plate",
    "passage_id": "keyed HMAC of the stored passage id",
    "event_id": "the camera's event id, assigned by the camera",
    "site_id": "where", "camera_id": "which camera", "lane": "which lane",
    "direction": "which way", "captured_at": "when", "plate_country": "country code",
    "confidence": "OCR score", "vehicle_class": "car/van/...", "source_format": "vendor",
    "ingested_at": "when stored",
}  # fmt: skip
STATISTICS_PREFIXES = ("traffic_stats.", "trip_stats.")


def _candidates() -> list[str]:
    return [
        a + b + "".join(d)
        for a, b in product(LETTERS, repeat=2)
        for d in product("0123456789", repeat=DIGITS)
    ]


def _invert(rows: pa.Table) -> set[str]:
    """Plates whose unkeyed passage id, recomputed from a row's site, direction and time,
    equals the row's passage_id: the meet-in-the-middle attack over the plate format."""
    guesses = _candidates()
    found: set[str] = set()
    for row in rows.to_pylist():
        n = len(guesses)
        trial = pa.table(
            {
                "plate": guesses,
                "site_id": [row["site_id"]] * n,
                "direction": [row["direction"]] * n,
            }
        )
        when = _micros(pa.array([row["captured_at"]] * n, pa.timestamp("us", tz="UTC")))
        ids = _passage_ids(_key_hashes(trial), when)
        found.update(guesses[i] for i in np.flatnonzero(ids == row["passage_id"]))
    return found


@pytest.fixture
def lake_dir(tmp_path: Path) -> Path:
    path = tmp_path / "lake"
    times = [NOW - timedelta(days=2, minutes=7 * i) for i in range(len(PLATES))]
    rows = plate_reads(times, prefix="COL", plates=PLATES)
    # Passage ids as ingest assigns them (pipeline/reference/passages.py).
    ids = PassageGrouper().assign(rows).ids
    rows = rows.set_column(rows.schema.get_field_index("passage_id"), "passage_id", ids)
    with Lake.open(path) as lake:
        write_reads(lake, rows)
    return path


def _open(lake_dir: Path, role: str) -> AccessSession:
    return AccessSession.open(
        lake_dir, role, now=NOW, analyst_max_age_days=90, retention_months=6,
        pseudo=Pseudonymiser(b"k" * 32),
    )  # fmt: skip


@pytest.mark.parametrize("role", ["analyst", "statistics"])
def test_every_column_of_a_role_without_clear_plates_is_classified(
    lake_dir: Path, role: str
) -> None:
    with _open(lake_dir, role) as session:
        con = session.con
        seen = {
            f"{view}.{name}"
            for view in sorted(session.plan.names)
            for name, *_ in con.execute(f'DESCRIBE "{view}"').fetchall()
        }
    columns = {c.split(".", 1)[1] for c in seen if not c.startswith(STATISTICS_PREFIXES)}
    assert not columns - CLASSIFIED.keys(), "classify these columns (plate-derived?)"


def test_the_passage_id_inversion_recovers_nothing_from_the_analyst_view(
    lake_dir: Path,
) -> None:
    with Lake.open(lake_dir, read_only=True) as lake:
        stored = lake.con.execute(
            "SELECT site_id, direction, captured_at, passage_id FROM plate_reads"
        ).to_arrow_table()
    # The attack works on the unkeyed ids as stored: every plate comes back...
    assert _invert(stored) == set(PLATES)
    with _open(lake_dir, "analyst") as session:
        shown = session.con.execute(
            "SELECT site_id, direction, captured_at, passage_id FROM plate_reads"
        ).to_arrow_table()
        # ...the analyst's ids are keyed: nothing does, and no column holds a plate.
        assert shown.num_rows == len(PLATES)
        assert _invert(shown) == set()
        every = session.con.execute("SELECT * FROM plate_reads").to_arrow_table()
    text = repr(every.to_pylist())
    assert not [p for p in PLATES if p in text]
    # Same passage, same keyed id: analysts can still count passages.
    assert every["passage_id"].null_count == 0


@pytest.mark.parametrize(
    "select",
    [
        "upper(plate_pseudonym)",
        "'#' || plate_pseudonym || '#'",
        "CAST(plate_pseudonym AS BLOB)",
        "CAST([plate_pseudonym] AS VARCHAR)",
        "{'p': upper(plate_pseudonym)}",
        "replace(plate_pseudonym, 'p_', 'P_')",
    ],
)
def test_wrapping_a_pseudonym_does_not_hide_whose_rows_were_returned(
    lake_dir: Path, select: str
) -> None:
    # Issue 15 item 7 (the part this change gives, see docs/adr/0008).
    pseudo = Pseudonymiser(b"k" * 32)
    with _open(lake_dir, "analyst") as session:
        table = session.con.execute(f"SELECT {select} AS x FROM plate_reads").to_arrow_table()
        assert session.result_pseudonyms(table) == sorted(pseudo.one(p) for p in PLATES)


@pytest.mark.parametrize("select", ["lower(plate)", "'#' || plate", "'plate: ' || plate"])
def test_wrapping_a_clear_plate_does_not_hide_it(lake_dir: Path, select: str) -> None:
    pseudo = Pseudonymiser(b"k" * 32)
    with _open(lake_dir, "investigator") as session:
        table = session.con.execute(f"SELECT {select} AS x FROM plate_reads").to_arrow_table()
        found = session.result_pseudonyms(table)
    assert set(found) >= {pseudo.one(p) for p in PLATES}
