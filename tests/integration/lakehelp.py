"""Look for values in every byte of a lake folder: Parquet decoded column by column (and its
footer statistics), every other file (the SQLite catalog, its WAL) raw."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.lake.catalog import Lake
from pipeline.schemas import CANDIDATES, PASSENGERS, PLATE_READS, UTC_TS


def _parquet_texts(path: Path) -> Iterable[str]:
    pf = pq.ParquetFile(path)
    meta = pf.metadata
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            stats = group.column(c).statistics
            if stats is not None and stats.has_min_max:
                yield f"{stats.min!r} {stats.max!r}"
    if meta.metadata:
        yield repr(meta.metadata)
    table = pf.read()
    for column in table.columns:
        yield repr(column.to_pylist())


def files_holding(root: Path, needles: Iterable[str]) -> dict[str, list[str]]:
    """needle -> relative paths of the files under ``root`` that contain it."""
    wanted = [n for n in needles if n]
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            raw = path.read_bytes()
        except FileNotFoundError:  # removed while we scanned (a server's temporary file)
            continue
        texts = [raw.decode("latin-1")]
        if raw[:4] == b"PAR1":
            texts.extend(_parquet_texts(path))
        blob = "\n".join(texts)
        for needle in wanted:
            if needle in blob:
                found.setdefault(needle, []).append(str(path.relative_to(root)))
    return found


def spellings(plate: str) -> list[str]:
    """Every form a byte scan looks for: upper, lower, spaced and hyphenated at every split,
    and each of those in UTF-16 (both byte orders, as files_holding reads bytes as latin-1)."""
    forms = {plate, plate.lower()}
    for i in range(1, len(plate)):
        for sep in (" ", "-"):
            forms |= {f"{plate[:i]}{sep}{plate[i:]}", f"{plate[:i]}{sep}{plate[i:]}".lower()}
    utf16 = {
        f.encode(codec).decode("latin-1") for f in forms for codec in ("utf-16-le", "utf-16-be")
    }
    return sorted(forms | utf16)


def plate_reads(
    captured: Sequence[datetime],
    *,
    prefix: str,
    sites: Sequence[str] = ("NO-SVINESUND",),
    directions: Sequence[str] = ("entry", "exit"),
    plates: Sequence[str] | None = None,
) -> pa.Table:
    """Synthetic ``plate_reads`` rows captured at ``captured``; plates and event ids carry
    ``prefix`` (upper-case letters) so a test can look for them byte by byte."""
    n = len(captured)
    plate = list(plates) if plates is not None else [f"{prefix}{i:05d}" for i in range(n)]
    return pa.table(
        {
            "event_id": [f"ev-{prefix}-{i:06d}" for i in range(n)],
            "site_id": [sites[i % len(sites)] for i in range(n)],
            "camera_id": ["CAM-1"] * n,
            "lane": pa.array([1] * n, pa.int16()),
            "direction": [directions[i % len(directions)] for i in range(n)],
            "captured_at": pa.array(captured, UTC_TS),
            "plate": plate,
            "plate_raw": [f"{p[:3]} {p[3:]}" for p in plate],
            "plate_country": ["NO"] * n,
            "confidence": pa.array([0.9] * n, pa.float32()),
            "vehicle_class": ["car"] * n,
            "source_format": ["canonical"] * n,
            "passage_id": pa.array(range(n), pa.int64()),
            "candidates": pa.array([None] * n, CANDIDATES),
            "ingested_at": pa.array(captured, UTC_TS),
            "source_partition": pa.array([0] * n, pa.int32()),
            "source_offset": pa.array(range(n), pa.int64()),
        },
        schema=PLATE_READS,
    )


def write_reads(lake: Lake, rows: pa.Table, *, topic: str = "anpr.plate-reads") -> None:
    """Append ``rows`` through :meth:`Lake.write_batch` (the ingest code path), as the next
    offsets of partition 0."""
    _write(lake, "plate_reads", rows, topic)


@dataclass(frozen=True)
class Person:
    """One invented passenger: every value a test may look for byte by byte."""

    surname: str
    document_number: str
    date_of_birth: date
    vehicle_plate: str
    collected_at: datetime


def passengers(people: Sequence[Person]) -> pa.Table:
    """Synthetic ``passengers`` rows, one per person, all on one invented departure."""
    n = len(people)
    departure = datetime(2026, 3, 1, 7, tzinfo=UTC)
    return pa.table(
        {
            "person_id": [f"pid-{p.document_number}" for p in people],
            "collected_at": pa.array([p.collected_at for p in people], UTC_TS),
            "carrier": ["TESTLINE"] * n,
            "vessel": ["MS TEST"] * n,
            "voyage_id": ["TL-0001"] * n,
            "departure_port": ["DKHIR"] * n,
            "departure_at": pa.array([departure] * n, UTC_TS),
            "arrival_port": ["NOKRS"] * n,
            "arrival_at": pa.array([departure + timedelta(hours=3)] * n, UTC_TS),
            "direction": ["entry"] * n,
            "role": ["passenger"] * n,
            "surname": [p.surname for p in people],
            "given_names": ["TEST"] * n,
            "date_of_birth": pa.array([p.date_of_birth for p in people], pa.date32()),
            "sex": ["X"] * n,
            "nationality": ["NOR"] * n,
            "document_type": ["P"] * n,
            "document_number": [p.document_number for p in people],
            "document_issuing_country": ["NOR"] * n,
            "vehicle_plate": [p.vehicle_plate for p in people],
            "vehicle_plate_raw": [f"{p.vehicle_plate[:3]} {p.vehicle_plate[3:]}" for p in people],
            "source_format": ["json"] * n,
            "ingested_at": pa.array([p.collected_at for p in people], UTC_TS),
            "source_partition": pa.array([0] * n, pa.int32()),
            "source_offset": pa.array(range(n), pa.int64()),
        },
        schema=PASSENGERS,
    )


def write_people(lake: Lake, rows: pa.Table, *, topic: str = "anpr.passengers") -> None:
    """Append ``passengers`` rows like :func:`write_reads`."""
    _write(lake, "passengers", rows, topic)


def _write(lake: Lake, table: str, rows: pa.Table, topic: str) -> None:
    start = lake.stored_offsets("test-ingest", topic).get(0)
    first = start or 0
    rows = rows.set_column(
        rows.schema.get_field_index("source_offset"),
        "source_offset",
        pa.array(range(first, first + rows.num_rows), pa.int64()),
    )
    lake.write_batch(
        table,
        rows,
        consumer_group="test-ingest",
        topic=topic,
        next_offsets={0: first + rows.num_rows},
        expected={0: start},
    )


# -- months of reads (anpr maintain) -------------------------------------------------------

FIRST_DAY = date(2026, 1, 2)
LAST_DAY = date(2026, 8, 30)
EVERY = 3  # a day of reads every 3 days: ~80 days over 8 months
PER_BATCH = 6


@dataclass(frozen=True)
class Batch:
    day: date
    prefix: str  # upper-case letters in every plate and event id of the batch
    captured: list[datetime]

    @property
    def needles(self) -> list[str]:
        n = len(self.captured)
        reads = [f"{self.prefix}{i:05d}" for i in range(n)]
        reads += [f"ev-{self.prefix}-{i:06d}" for i in range(n)]
        person = self.person
        if person is None:
            return reads
        # The birth date as the catalog's statistics would hold it (ISO text).
        return [*reads, person.surname, person.document_number, person.date_of_birth.isoformat()]

    @property
    def person(self) -> Person | None:
        """The day's one passenger, collected with the day's first batch of reads."""
        if not self.prefix.startswith("P"):
            return None
        born = date(1950, 1, 1) + timedelta(days=(self.day - FIRST_DAY).days)
        return Person(
            f"SUR{self.prefix}", f"DOC{self.prefix}", born, f"{self.prefix}00000", self.captured[0]
        )


def _letters(n: int) -> str:
    return chr(65 + n // 26 % 26) + chr(65 + n % 26)


def _batches() -> list[Batch]:
    out = []
    day, index = FIRST_DAY, 0
    while day <= LAST_DAY:
        for part, first in enumerate("PQ"):  # two ingest batches a day: two files to compact
            start = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=6 + part)
            times = [start + timedelta(minutes=9 * i) for i in range(PER_BATCH)]
            out.append(Batch(day, first + _letters(index), times))
        day += timedelta(days=EVERY)
        index += 1
    return out


BATCHES = _batches()  # ~8 months of reads: two batches every third day


def write_months(lake_dir: Path) -> None:
    """Write :data:`BATCHES` through Lake.write_batch (ingest's commit), one call per batch,
    and each day's passenger (:attr:`Batch.person`) with its first batch."""
    with Lake.open(lake_dir) as lake:
        for batch in BATCHES:
            write_reads(
                lake,
                plate_reads(
                    batch.captured,
                    prefix=batch.prefix,
                    sites=("NO-SVINESUND", "NO-STORSKOG"),
                    directions=("exit", "entry", "exit"),
                ),
            )
            if batch.person is not None:
                write_people(lake, passengers([batch.person]))
