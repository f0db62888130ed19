"""Eight months of reads on PostgreSQL + S3, retention run month by month: after each run no
expired row in any table, no expired value in any object of the bucket (listed and read back
over S3) or in any file of the catalog database's folder on the PostgreSQL server, and no
row's value at all in the planner statistics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pipeline.lake.backend import Storage
from pipeline.lake.catalog import Lake
from pipeline.lake.s3 import S3Client
from pipeline.lake.tables import PERSONAL_DATA_TABLES
from pipeline.maintain.retention import cutoff_for
from pipeline.maintain.run import MaintainOptions, maintain
from tests.integration.cluster.conftest import Shared
from tests.integration.lakehelp import (
    Batch,
    files_holding,
    passengers,
    plate_reads,
    write_people,
    write_reads,
)

FIRST_DAY = date(2026, 1, 2)
LAST_DAY = date(2026, 8, 30)
PER_BATCH = 600  # one batch a week: ~2,600 reads a month, ~21,000 in all
MONTHS = 6


def _batches() -> list[Batch]:
    """One day of reads a week (every 7 minutes from 06:00), each with one passenger."""
    out = []
    day, index = FIRST_DAY, 0
    while day <= LAST_DAY:
        start = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=6)
        times = [start + timedelta(seconds=7 * 60 * i // 6) for i in range(PER_BATCH)]
        out.append(Batch(day, "P" + chr(65 + index // 26) + chr(65 + index % 26), times))
        day += timedelta(days=7)
        index += 1
    return out


BATCHES = _batches()


def _needles(batch: Batch) -> list[str]:
    """A few of the batch's values: two plates, an event id, the passenger's name, document
    number and birth date (all of them would make the byte scans slow, and any one left
    would show the purge missed its file)."""
    values = batch.needles
    return [values[0], values[1], values[PER_BATCH], *values[-3:]]


@dataclass(frozen=True)
class Places:
    """Where the test reads what the stores hold."""

    client: S3Client
    prefix: str  # the lake's keys in the bucket
    catalog_dir: Path  # the catalog database's folder in the server's data directory
    database: str  # the catalog database's name


def _places(shared: Shared) -> Places:
    storage = Storage.from_settings(shared.settings().lake)
    client = S3Client.for_storage(storage)
    assert client is not None
    database = storage.catalog.rsplit("dbname=", 1)[1]
    with shared.info.catalog.connect(database) as conn:
        row = conn.execute(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    folder = shared.info.catalog.root / "data" / "base" / str(row[0])
    return Places(client, client.data_prefix(storage), folder, database)


def _relations(shared: Shared, places: Places, found: dict[str, list[str]]) -> dict[str, object]:
    """For a failure's message: the relation each catalog file holding a needle belongs to,
    and the sessions whose snapshots hold back what VACUUM may remove."""
    with shared.info.catalog.connect(places.database) as conn:
        named = {
            needle: [
                str(
                    conn.execute(
                        "SELECT pg_filenode_relation(0, %s)::regclass::text", [int(node)]
                    ).fetchone()
                )
                if (node := f.split("_")[0].split(".")[0]).isdigit()
                else f  # pg_internal.init, pg_filenode.map: no relation of their own
                for f in files
            ]
            for needle, files in found.items()
        }
        sessions = conn.execute(
            "SELECT datname, application_name, state, backend_xmin::text, xact_start::text "
            "FROM pg_stat_activity WHERE backend_xmin IS NOT NULL"
        ).fetchall()
    return {"relations": named, "sessions": sessions}


def _planner_stats_holding(
    shared: Shared, places: Places, needles: list[str]
) -> dict[str, list[str]]:
    """needle -> the table.column whose planner statistics (most common values, histogram)
    hold it, read through SQL: pg_statistic's arrays are often compressed, which hides a
    value from a byte scan of its file."""
    with shared.info.catalog.connect(places.database) as conn:
        rows = conn.execute(
            "SELECT tablename || '.' || attname, "
            "concat_ws(' ', most_common_vals::text, histogram_bounds::text) FROM pg_stats "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    found: dict[str, list[str]] = {}
    for column, text in rows:
        for needle in needles:
            if needle in str(text):
                found.setdefault(needle, []).append(str(column))
    return found


def _read_back(places: Places, into: Path) -> int:
    """Every object under the lake's prefix, listed and read over S3 into ``into``."""
    count = 0
    for item in places.client.list(places.prefix):
        if item.key.endswith("/"):
            continue  # S3Proxy's filesystem backend lists its folders too
        target = into / item.key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(places.client.get(item.key))
        count += 1
    return count


def _write_months(shared: Shared) -> None:
    with Lake.from_settings(shared.settings("writer").lake) as lake:
        for batch in BATCHES:
            write_reads(lake, plate_reads(batch.captured, prefix=batch.prefix))
            assert batch.person is not None
            write_people(lake, passengers([batch.person]))


ORPHAN_PLATE = "ORPHAN01"  # in an object no snapshot knows, in the first expired day


def _leave_orphan(shared: Shared, places: Places) -> str:
    """An object a killed writer could have left under the first day: written through httpfs,
    never committed. Purge's orphan cleanup spares it (younger than the grace); the sweep of
    expired days must not."""
    day = BATCHES[0].day
    key = (
        f"{places.prefix}main/plate_reads/year={day.year}/month={day.month}/day={day.day}/"
        "ducklake-orphan.parquet"
    )
    with Lake.from_settings(shared.settings("writer").lake) as lake:
        lake.con.execute(
            f"COPY (SELECT '{ORPHAN_PLATE}' AS plate) TO 's3://{places.client.bucket}/{key}' "
            "(FORMAT parquet)"
        )
    return key


def test_month_by_month_no_expired_value_in_any_table_object_or_catalog_file(
    shared: Shared, tmp_path: Path
) -> None:
    _write_months(shared)
    settings = shared.settings("maintain")
    places = _places(shared)
    orphan = _leave_orphan(shared, places)
    assert [o.key for o in places.client.list(orphan)] == [orphan]
    # Monthly, each run with a week or more to delete; the last one past every limit.
    runs = [datetime(2026, m, 10, 3, tzinfo=UTC) for m in range(7, 13)]
    runs += [datetime(2027, m, 10, 3, tzinfo=UTC) for m in range(1, 3)]
    runs += [datetime(2027, 3, 1, 3, tzinfo=UTC)]
    for number, as_of in enumerate(runs):
        report = maintain(
            settings,
            MaintainOptions(as_of=as_of, only=frozenset({"retention"}), check_topics=False),
        )
        assert not report.failed, report
        assert report.steps["verify"]["catalog_dead_tuples"] == {}
        if number == 0:
            assert report.steps["purge"]["expired_day_files_swept"] == 1
        # The value columns' planner statistics are turned off once, by the first purge.
        assert (report.steps["purge"]["value_columns_unsampled"] > 0) == (number == 0)
        assert report.steps["purge"]["value_columns_left"] == 0
        assert report.steps["verify"]["planner_statistics_on_values"] == []
        cut = cutoff_for("plate_reads", "captured_at", MONTHS, as_of)
        expired = [b for b in BATCHES if b.day < cut.first_kept_day]
        kept = [b for b in BATCHES if b.day >= cut.first_kept_day]
        assert expired, as_of
        # Rows: none past the limit in any personal-data table; every kept one still there.
        with Lake.from_settings(settings.lake, read_only=True) as lake:
            for table, column in PERSONAL_DATA_TABLES.items():
                limit = cutoff_for(table, column, MONTHS, as_of).cutoff
                (past,) = lake.con.execute(
                    f'SELECT count(*) FROM {table} WHERE "{column}" <= ?', [limit]
                ).fetchone() or (0,)
                assert past == 0, (table, as_of)
            (reads,) = lake.con.execute("SELECT count(*) FROM plate_reads").fetchone() or (0,)
            (people,) = lake.con.execute("SELECT count(*) FROM passengers").fetchone() or (0,)
        assert (reads, people) == (len(kept) * PER_BATCH, len(kept))
        # Objects, listed and read back over S3; the catalog database's files on the server.
        needles = [ORPHAN_PLATE, *(n for b in expired for n in _needles(b))]
        probe = [b.needles[0] for b in kept[:1] + kept[-1:]]
        # The planner statistics hold no row's value at all, expired or kept (read through
        # SQL: their arrays are often compressed, hidden from the byte scan below, and a
        # compressed kept "DOCPA..." can even spell an expired value by chance).
        every = [n for b in BATCHES for n in _needles(b)]
        assert _planner_stats_holding(shared, places, every) == {}, as_of
        objects = tmp_path / f"objects-{number}"
        assert _read_back(places, objects) >= len(kept)
        # Pages PostgreSQL changed in memory reach its files at a checkpoint: force one, or
        # the scan would read files older than the purge (VACUUM FULL writes directly, but a
        # kept value's page may not have been written yet).
        with shared.info.catalog.connect() as conn:
            conn.autocommit = True
            conn.execute("CHECKPOINT")
        for where in (objects, places.catalog_dir):
            found = files_holding(where, needles + probe)
            left = {n: found[n] for n in needles if n in found}
            if left and where == places.catalog_dir:
                raise AssertionError((as_of, left, _relations(shared, places, left)))
            assert left == {}, (as_of, where)
            # The scan works: a kept plate is found (in its file, and as its file's min).
            assert set(probe) <= set(found), (as_of, where)
    assert not kept  # the last run, past 2026-08-30 + 6 months, left nothing
