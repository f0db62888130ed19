"""The table layer on real DuckLake files: exactly-once offsets, fencing, concurrency, snapshots.

No Kafka: a "batch" here is synthetic rows with the offsets they claim to come from.
Writer processes are started with the ``spawn`` method and import this module by name.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from itertools import accumulate
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from pipeline.access.session import AccessSession
from pipeline.access.statement import QueryRefused
from pipeline.errors import ConfigError
from pipeline.lake.catalog import (
    TIDY_EVERY,
    Lake,
    OffsetFenced,
    UniqueIds,
    create_table_sql,
    quote_ident,
)
from pipeline.pseudonym import Pseudonymiser
from pipeline.schemas import PLATE_READS

GROUP, TOPIC = "anpr-ingest", "anpr.plate-reads"
DAY = datetime(2026, 11, 22, tzinfo=UTC)
SPAWN = mp.get_context("spawn")


def synthetic_reads(
    n: int,
    *,
    partition: int = 0,
    start_offset: int = 0,
    captured: datetime | None = None,
    seed: int = 0,
) -> pa.Table:
    """``n`` plate reads of one partition with consecutive offsets; all plates invented (ZZ...)."""
    rng = np.random.default_rng(seed)
    offsets = np.arange(start_offset, start_offset + n, dtype=np.int64)
    if captured is None:
        base = int(DAY.timestamp() * 1_000_000)
        micros = base + rng.integers(0, 86_400_000_000, n)
    else:
        micros = np.full(n, int(captured.timestamp() * 1_000_000))
    plates = pa.array([f"ZZ{x:05d}" for x in rng.integers(0, 100_000, n)])
    ts = pa.timestamp("us", tz="UTC")
    columns = {
        "event_id": pa.array([f"p{partition}-{o:012d}" for o in offsets]),
        "site_id": pa.array(np.full(n, "NO-SVINESUND")),
        "camera_id": pa.array(np.full(n, "SVI-L2-F")),
        "lane": pa.array(rng.integers(1, 5, n).astype(np.int16)),
        "direction": pa.array(np.where(rng.random(n) < 0.5, "entry", "exit")),
        "captured_at": pa.array(micros, ts),
        "plate": plates,
        "plate_raw": plates,
        "plate_country": pa.array(np.full(n, "NO")),
        "confidence": pa.array(rng.random(n).astype(np.float32)),
        "vehicle_class": pa.array(np.full(n, "car"), mask=rng.random(n) >= 0.9),
        "source_format": pa.array(np.full(n, "canonical")),
        "passage_id": pa.array(offsets + partition * 1_000_000_000),
        "candidates": pa.array(
            [[{"plate": "ZZ00000", "confidence": 0.5}]] * n,
            PLATE_READS.field("candidates").type,
        ),
        "ingested_at": pa.array(np.full(n, int(DAY.timestamp() * 1_000_000)), ts),
        "source_partition": pa.array(np.full(n, partition, dtype=np.int32)),
        "source_offset": pa.array(offsets),
    }
    return pa.Table.from_pydict(columns, schema=PLATE_READS)


def write_next(lake: Lake, partition: int, n: int, *, seed: int = 0) -> int:
    """Append ``n`` rows to ``partition`` after what the lake stores; return the new offset."""
    start = lake.stored_offsets(GROUP, TOPIC).get(partition)
    nxt = (start or 0) + n
    rows = synthetic_reads(n, partition=partition, start_offset=start or 0, seed=seed)
    lake.write_batch(
        "plate_reads",
        rows,
        consumer_group=GROUP,
        topic=TOPIC,
        next_offsets={partition: nxt},
        expected={partition: start},
    )
    return nxt


def first_claim(partition: int, next_offset: int) -> dict[str, Any]:
    """``write_batch``'s offset arguments for a partition's first batch."""
    return {
        "consumer_group": GROUP,
        "topic": TOPIC,
        "next_offsets": {partition: next_offset},
        "expected": {partition: None},
    }


def count(lake: Lake) -> int:
    result = lake.con.execute("SELECT count(*) FROM lake.plate_reads").fetchone()
    assert result is not None
    return int(result[0])


@pytest.fixture(scope="session")
def ext_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("duckdb-extensions")


@pytest.fixture
def lake_path(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def open_lake(lake_path: Path, ext_dir: Path) -> Iterator[Callable[..., Lake]]:
    opened: list[Lake] = []

    def _open(**kwargs: Any) -> Lake:
        lake = Lake.open(lake_path, extension_dir=ext_dir, **kwargs)
        opened.append(lake)
        return lake

    yield _open
    for lake in opened:
        lake.close()


# -- (1) rows and offsets round trip --------------------------------------------------------------


def test_three_batches_read_back_exactly(open_lake: Callable[..., Lake]) -> None:
    lake = open_lake()
    batches = [synthetic_reads(100, start_offset=100 * i, seed=i) for i in range(3)]
    expected: int | None = None
    for i, rows in enumerate(batches):
        retries = lake.write_batch(
            "plate_reads",
            rows,
            consumer_group=GROUP,
            topic=TOPIC,
            next_offsets={0: 100 * (i + 1)},
            expected={0: expected},
        )
        assert retries == 0
        expected = 100 * (i + 1)

    back = lake.execute("SELECT * FROM lake.plate_reads ORDER BY source_offset").to_arrow_table()
    assert [(f.name, f.type) for f in back.schema] == [(f.name, f.type) for f in PLATE_READS]
    assert back.schema.field("captured_at").type == pa.timestamp("us", tz="UTC")
    want = pa.concat_tables(batches)
    for name in PLATE_READS.names:
        assert back.column(name).combine_chunks().equals(want.column(name).combine_chunks()), name
    assert lake.stored_offsets(GROUP, TOPIC) == {0: 300}
    assert lake.stored_offsets(GROUP, "other-topic") == {}
    assert len(lake.recent_rows("plate_reads", ["event_id"], timedelta(days=1))) == 300
    newest = lake.recent_rows("plate_reads", ["event_id", "captured_at"], timedelta(0))
    assert 1 <= len(newest) < 300
    with pytest.raises(ValueError, match="no columns"):
        lake.recent_rows("plate_reads", ["event_id; DROP TABLE x"], timedelta(0))


def test_empty_batch_still_advances_offsets(open_lake: Callable[..., Lake]) -> None:
    lake = open_lake()
    lake.write_batch(
        "plate_reads",
        PLATE_READS.empty_table(),
        consumer_group=GROUP,
        topic=TOPIC,
        next_offsets={0: 40, 1: 7},
        expected={0: None, 1: None},
    )
    assert lake.stored_offsets(GROUP, TOPIC) == {0: 40, 1: 7}
    assert count(lake) == 0


def test_bad_calls_are_refused_before_any_write(open_lake: Callable[..., Lake]) -> None:
    lake = open_lake()
    rows = synthetic_reads(10)
    ok: dict[str, Any] = {"consumer_group": GROUP, "topic": TOPIC}
    with pytest.raises(ValueError, match="unknown lake table"):
        lake.write_batch("ingest_offsets", rows, next_offsets={0: 10}, expected={0: None}, **ok)
    with pytest.raises(TypeError):
        lake.write_batch(
            "plate_reads",
            rows.drop_columns(["plate"]),
            next_offsets={0: 10},
            expected={0: None},
            **ok,
        )
    with pytest.raises(ValueError, match="outside"):  # rows at offsets 0..9, committing to 5
        lake.write_batch("plate_reads", rows, next_offsets={0: 5}, expected={0: None}, **ok)
    with pytest.raises(ValueError, match="same partitions"):
        lake.write_batch("plate_reads", rows, next_offsets={0: 10}, expected={1: None}, **ok)
    assert count(lake) == 0
    assert lake.stored_offsets(GROUP, TOPIC) == {}


def test_missing_lake_is_not_created_unless_asked(lake_path: Path, ext_dir: Path) -> None:
    with pytest.raises(ConfigError):
        Lake.open(lake_path, extension_dir=ext_dir, create=False)
    with pytest.raises(ConfigError):
        Lake.open(lake_path, extension_dir=ext_dir, read_only=True)
    assert not lake_path.exists()


def test_copied_lake_opens_where_it_now_is(
    open_lake: Callable[..., Lake], lake_path: Path, tmp_path: Path, ext_dir: Path
) -> None:
    lake = open_lake()
    write_next(lake, 0, 25)
    lake.close()
    # A restore from backup lands in another folder; the old one is gone.
    moved = tmp_path / "restored"
    lake_path.rename(moved)
    with Lake.open(moved, extension_dir=ext_dir) as restored:
        assert count(restored) == 25
        assert write_next(restored, 0, 5) == 30
    assert not lake_path.exists()


# -- (2) a crash never separates rows from offsets ------------------------------------------------


def endless_writer(path: Path, ext_dir: Path, commits: Any) -> None:
    """Child process: write 500-row batches to partition 0 until killed."""
    with Lake.open(path, extension_dir=ext_dir) as lake:
        for i in range(1_000_000):
            write_next(lake, 0, 500, seed=i)
            with commits.get_lock():
                commits.value += 1


def test_kill_9_mid_write_keeps_rows_and_offsets_together(lake_path: Path, ext_dir: Path) -> None:
    rng = random.Random(7)
    for _round in range(6):
        commits = SPAWN.Value("i", 0)
        child = SPAWN.Process(target=endless_writer, args=(lake_path, ext_dir, commits))
        child.start()
        deadline = time.monotonic() + 60
        while commits.value < 2 and time.monotonic() < deadline and child.is_alive():
            time.sleep(0.01)
        assert commits.value >= 2, "writer made no progress"
        # A random moment inside the commit cycle (about 0.1-0.3 s here): before, during or
        # after the Parquet write or the catalog commit.
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(child.pid or 0, signal.SIGKILL)
        child.join()

        with Lake.open(lake_path, extension_dir=ext_dir) as lake:
            stored = lake.stored_offsets(GROUP, TOPIC).get(0, 0)
            row = lake.con.execute(
                "SELECT count(*), count(DISTINCT event_id), coalesce(max(source_offset), -1) "
                "FROM lake.plate_reads"
            ).fetchone()
        assert row == (stored, stored, stored - 1)
        assert stored % 500 == 0


# -- (3) concurrent writers in separate processes -------------------------------------------------


def batch_writer(path: Path, ext_dir: Path, partition: int, commits: int, start: Any) -> None:
    """Child process: wait for the start signal, open (maybe creating) the lake, commit."""
    start.wait()
    with Lake.open(path, extension_dir=ext_dir) as lake:
        for i in range(commits):
            write_next(lake, partition, 200, seed=i)


def test_two_processes_commit_concurrently(lake_path: Path, ext_dir: Path) -> None:
    start = SPAWN.Event()
    # Both also race to create the new lake.
    children = [
        SPAWN.Process(target=batch_writer, args=(lake_path, ext_dir, part, 30, start))
        for part in (0, 1)
    ]
    for child in children:
        child.start()
    start.set()
    for child in children:
        child.join(timeout=300)
    assert [c.exitcode for c in children] == [0, 0]

    with Lake.open(lake_path, extension_dir=ext_dir) as lake:
        assert lake.stored_offsets(GROUP, TOPIC) == {0: 6000, 1: 6000}
        per_partition = lake.con.execute(
            "SELECT source_partition, count(*), count(DISTINCT event_id) "
            "FROM lake.plate_reads GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert per_partition == [(0, 6000, 6000), (1, 6000, 6000)]
        fence = lake.con.execute("SELECT commits FROM lake.ingest_fence").fetchall()
        # One fence row, however many processes created the lake, rewritten only by the
        # commits that stored a partition's first offset (write_batch, step 5).
        assert fence == [(2,)]


# -- (4) fencing a stale writer -------------------------------------------------------------------


def test_stale_writer_is_fenced_and_writes_nothing(open_lake: Callable[..., Lake]) -> None:
    owner, zombie = open_lake(), open_lake()
    # Both were assigned partition 0 of a new topic: nothing stored.
    assert owner.stored_offsets(GROUP, TOPIC) == zombie.stored_offsets(GROUP, TOPIC) == {}
    owner.write_batch(
        "plate_reads",
        synthetic_reads(50),
        consumer_group=GROUP,
        topic=TOPIC,
        next_offsets={0: 50},
        expected={0: None},
    )
    for stale in (None, 20):
        with pytest.raises(OffsetFenced) as info:
            zombie.write_batch(
                "plate_reads",
                synthetic_reads(50, start_offset=stale or 0, seed=1),
                consumer_group=GROUP,
                topic=TOPIC,
                next_offsets={0: (stale or 0) + 50},
                expected={0: stale},
            )
        assert (info.value.partition, info.value.expected, info.value.stored) == (0, stale, 50)
    assert count(owner) == 50
    assert owner.stored_offsets(GROUP, TOPIC) == {0: 50}
    # After re-seeking to the stored offset the same worker goes on.
    assert write_next(zombie, 0, 10) == 60


def claim_partition_zero(
    lake: Lake, stored: int | None, seed: int, barrier: threading.Barrier, outcomes: list[str]
) -> None:
    """Thread: write the 100 rows after ``stored``, as a worker that read ``stored`` would."""
    start = stored or 0
    rows = synthetic_reads(100, start_offset=start, seed=seed)
    barrier.wait()
    try:
        lake.write_batch(
            "plate_reads",
            rows,
            consumer_group=GROUP,
            topic=TOPIC,
            next_offsets={0: start + 100},
            expected={0: stored},
        )
        outcomes.append("stored")
    except OffsetFenced:
        outcomes.append("fenced")


@pytest.mark.parametrize("tidy_every", [TIDY_EVERY, 1])
def test_concurrent_claims_on_one_partition_admit_exactly_one(
    open_lake: Callable[..., Lake], tidy_every: int
) -> None:
    lakes = [open_lake(), open_lake()]
    for lake in lakes:  # 1: each commit is followed by its tidy step, racing the other's
        lake.tidy_every = tidy_every
    for round_ in range(4):
        # Two workers that both believe they own partition 0, from the same stored offset.
        stored = lakes[0].stored_offsets(GROUP, TOPIC).get(0)
        barrier = threading.Barrier(2)
        outcomes: list[str] = []
        threads = [
            threading.Thread(
                target=claim_partition_zero,
                args=(lake, stored, 10 * round_ + i, barrier, outcomes),
            )
            for i, lake in enumerate(lakes)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["fenced", "stored"]
    assert count(lakes[0]) == 400
    assert lakes[0].stored_offsets(GROUP, TOPIC) == {0: 400}


META = "__ducklake_metadata_lake"


def inlined_offset_versions(lake: Lake) -> int:
    """Rows (current and old versions) of the offsets table still inlined in the catalog."""
    names = lake.execute(
        f"SELECT i.table_name FROM {META}.ducklake_inlined_data_tables i "
        f"JOIN {META}.ducklake_table t USING (table_id) "
        "WHERE t.table_name = 'ingest_offsets' AND t.end_snapshot IS NULL"
    ).fetchall()
    total = 0
    for (name,) in names:
        (n,) = lake.execute(f"SELECT count(*) FROM {META}.{quote_ident(name)}").fetchone() or (0,)
        total += int(n)
    return total


def live_offset_files(lake: Lake) -> int:
    (n,) = lake.execute(
        f"SELECT count(*) FROM {META}.ducklake_data_file f JOIN {META}.ducklake_table t "
        "USING (table_id) WHERE t.table_name = 'ingest_offsets' AND t.end_snapshot IS NULL "
        "AND f.end_snapshot IS NULL"
    ).fetchone() or (0,)
    return int(n)


def test_tidy_step_moves_offset_versions_out_and_changes_nothing(
    open_lake: Callable[..., Lake],
) -> None:
    lake = open_lake()
    lake.tidy_every = 5
    for i in range(12):
        write_next(lake, i % 3, 10, seed=i)
    # Tidied after commits 5 and 10: what is left inlined is commits 11 and 12's (each
    # leaves 3 rows), not the 12 commits' ~36.
    assert inlined_offset_versions(lake) <= 6
    assert live_offset_files(lake) == 1
    lake.tidy_internal()
    assert inlined_offset_versions(lake) == 0
    assert live_offset_files(lake) == 1
    assert lake.stored_offsets(GROUP, TOPIC) == {0: 40, 1: 40, 2: 40}
    assert count(lake) == 120
    # The compare-and-set still holds on the moved rows.
    assert write_next(lake, 1, 5) == 45
    with pytest.raises(OffsetFenced):
        lake.write_batch(
            "plate_reads",
            synthetic_reads(5, partition=1, start_offset=40, seed=99),
            consumer_group=GROUP,
            topic=TOPIC,
            next_offsets={1: 45},
            expected={1: 40},
        )
    assert count(lake) == 125


def test_tidy_step_retries_a_conflict(open_lake: Callable[..., Lake]) -> None:
    other = open_lake()
    backoffs: list[float] = []

    def sleep(seconds: float) -> None:
        if not backoffs:  # the other writer's tidy commits while this one backs off
            other.execute("COMMIT")
        backoffs.append(seconds)

    lake = open_lake(sleep=sleep)
    for i in range(4):
        write_next(lake, i % 2, 10, seed=i)
    # Another worker's tidy step holds the catalog's write lock in its open transaction.
    other.execute("BEGIN TRANSACTION")
    other.execute(
        "SELECT * FROM ducklake_flush_inlined_data('lake', table_name => 'ingest_offsets')"
    ).fetchall()
    lake.tidy_internal()
    assert backoffs
    assert lake.conflicts >= 1
    assert inlined_offset_versions(lake) == 0
    assert live_offset_files(lake) == 1
    assert lake.stored_offsets(GROUP, TOPIC) == other.stored_offsets(GROUP, TOPIC) == {0: 20, 1: 20}
    assert count(lake) == 40


# -- (5) partitions are UTC days ------------------------------------------------------------------


def write_around_midnight(path: Path, ext_dir: Path) -> None:
    """Child process (started with TZ set): one read either side of a UTC midnight."""
    captures = [
        datetime(2026, 1, 1, 23, 30, tzinfo=timezone(timedelta(hours=-1))),  # 01-02 00:30 UTC
        datetime(2026, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),  # 02-28 23:30 UTC
    ]
    with Lake.open(path, extension_dir=ext_dir) as lake:
        for i, captured in enumerate(captures):
            lake.write_batch(
                "plate_reads",
                synthetic_reads(1, start_offset=i, captured=captured),
                consumer_group=GROUP,
                topic=TOPIC,
                next_offsets={0: i + 1},
                expected={0: i or None},
            )


def test_an_id_stored_by_another_writer_is_dropped_after_its_snapshot_expired(
    open_lake: Callable[..., Lake],
) -> None:
    # Writer A last looked at the lake at `since`. Writer B then stores reads, and the
    # snapshots after `since` are expired (the nightly purge, or a writer's tidy step), so
    # B's insert is no longer in the catalog's change list. A's next batch repeats ten of
    # B's ids (a keyless retransmission on A's partition): they must still be dropped.
    a, b = open_lake(), open_lake()
    window = timedelta(hours=24)
    captured = datetime.now(UTC) - timedelta(hours=1)
    since = a.current_snapshot()
    theirs = synthetic_reads(50, partition=1, captured=captured, seed=1)
    b.write_batch("plate_reads", theirs, **first_claim(1, 50))
    write_next(b, 2, 5, seed=2)  # a later snapshot, so B's insert is not the newest
    expired = b.con.execute(
        "SELECT * FROM ducklake_expire_snapshots('lake', older_than => ?)",
        [datetime.now(UTC) + timedelta(seconds=1)],
    ).fetchall()
    assert expired  # B's insert snapshot among them
    ours = synthetic_reads(10, partition=0, captured=captured, seed=3)
    ours = ours.set_column(
        ours.schema.get_field_index("event_id"), "event_id", theirs["event_id"].slice(0, 10)
    )
    unique = UniqueIds("event_id", "captured_at", "writer-a", since, window)
    a.write_batch("plate_reads", ours, **first_claim(0, 10), unique=unique)
    assert unique.dropped == 10
    assert count(a) == 55
    assert unique.others is not None
    assert set(theirs["event_id"].to_pylist()) <= set(unique.others["event_id"].to_pylist())


def test_partition_directory_is_the_utc_day(
    lake_path: Path, ext_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A writer on a host in another zone (DuckDB takes its default zone from TZ at start)
    # must not move reads to another day.
    monkeypatch.setenv("TZ", "America/New_York")
    child = SPAWN.Process(target=write_around_midnight, args=(lake_path, ext_dir))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0
    monkeypatch.delenv("TZ")

    with Lake.open(lake_path, extension_dir=ext_dir, read_only=True) as lake:
        files = [
            Path(name)
            for (name,) in lake.con.execute(
                "SELECT data_file FROM ducklake_list_files('lake', 'plate_reads')"
            ).fetchall()
        ]
        captured = lake.execute(
            "SELECT captured_at FROM lake.plate_reads ORDER BY 1"
        ).to_arrow_table()
    table_dir = lake_path / "data" / "main" / "plate_reads"
    days = sorted(str(f.parent.relative_to(table_dir)) for f in files)
    assert days == ["year=2026/month=1/day=2", "year=2026/month=2/day=28"]
    assert all(f.is_file() for f in files)
    assert captured["captured_at"].to_pylist() == [
        datetime(2026, 1, 2, 0, 30, tzinfo=UTC),
        datetime(2026, 2, 28, 23, 30, tzinfo=UTC),
    ]


# -- (6) read-only lakes --------------------------------------------------------------------------


def test_read_only_lake_refuses_writes(
    open_lake: Callable[..., Lake], lake_path: Path, ext_dir: Path
) -> None:
    write_next(open_lake(), 0, 10)
    reader = open_lake(read_only=True)
    assert count(reader) == 10
    with pytest.raises(duckdb.Error, match="read-only"):
        reader.execute("INSERT INTO lake.plate_reads SELECT * FROM lake.plate_reads")
    with pytest.raises(duckdb.Error, match="read-only"):
        write_next(reader, 0, 10)
    # The analysts' path (anpr query/sql): one SELECT over the role's views, else refused.
    with AccessSession.open(
        lake_path,
        "dpo",
        now=datetime.now(UTC),
        analyst_max_age_days=90,
        retention_months=6,
        pseudo=Pseudonymiser(b"k" * 32),
        extension_dir=ext_dir,
    ) as session:
        for sql in (
            "DELETE FROM lake.plate_reads",
            "SELECT 1; DROP TABLE lake.plate_reads",
            "ATTACH 'ducklake:sqlite:catalog.sqlite' AS w",
            "COPY lake.plate_reads TO 'out.csv'",
            "CALL lake.set_option('parquet_compression', 'snappy')",
            "SET enable_external_access = true",
            "not sql at all (",
        ):
            with pytest.raises(QueryRefused):
                session.check(sql)
    # File access outside the data path is off, and cannot be switched back on.
    with pytest.raises(duckdb.PermissionException):
        reader.execute("SELECT * FROM read_text('/etc/hostname')")
    with pytest.raises(duckdb.Error):
        reader.execute("SET enable_external_access = true")
    assert count(reader) == 10


def test_a_read_only_lake_spills_to_a_private_folder_of_its_own(
    open_lake: Callable[..., Lake], tmp_path: Path
) -> None:
    # DuckDB lets a locked session read its temporary folder: each gets its own (0700), so
    # no session reads another's spilled rows, and it goes when the session closes.
    write_next(open_lake(), 0, 10)
    parent = tmp_path / "spills"
    one, two = open_lake(read_only=True, temp_parent=parent), open_lake(read_only=True)
    assert one.temp_dir is not None
    assert two.temp_dir is not None
    assert one.temp_dir.parent == parent
    assert one.temp_dir != two.temp_dir
    assert os.stat(one.temp_dir).st_mode & 0o777 == 0o700
    (setting,) = one.con.execute("SELECT current_setting('temp_directory')").fetchone() or ()
    assert Path(setting) == one.temp_dir
    (two.temp_dir / "spill.tmp").write_text("theirs")
    with pytest.raises(duckdb.PermissionException):
        one.execute(f"SELECT * FROM read_text('{two.temp_dir / 'spill.tmp'}')")
    two.close()
    assert not two.temp_dir.exists()
    one.close()
    assert list(parent.iterdir()) == []


# -- (7) readers see whole commits only -----------------------------------------------------------


def test_reader_sees_only_whole_batches(open_lake: Callable[..., Lake]) -> None:
    writer, reader = open_lake(), open_lake(read_only=True)
    sizes = [37 * (i + 1) for i in range(20)]
    allowed = {0, *accumulate(sizes)}
    seen: list[int] = []
    done = threading.Event()

    def read_until_done() -> None:
        while not done.is_set():
            seen.append(count(reader))

    thread = threading.Thread(target=read_until_done)
    thread.start()
    try:
        offset = 0
        for i, n in enumerate(sizes):
            writer.write_batch(
                "plate_reads",
                synthetic_reads(n, start_offset=offset, seed=i),
                consumer_group=GROUP,
                topic=TOPIC,
                next_offsets={0: offset + n},
                expected={0: offset or None},
            )
            offset += n
            # Before the next batch, let the reader see this one (a poll with a deadline): on a
            # loaded machine it could otherwise miss every state between the first and last.
            deadline = time.monotonic() + 30
            while (not seen or seen[-1] < offset) and time.monotonic() < deadline:
                time.sleep(0.001)
    finally:
        done.set()
        thread.join()
    seen.append(count(reader))
    assert set(seen) <= allowed, sorted(set(seen) - allowed)
    assert set(accumulate(sizes)) <= set(seen)  # the reader ran while batches were committed
    assert seen[-1] == sum(sizes)


def test_open_reader_transaction_does_not_block_writers(
    open_lake: Callable[..., Lake], lake_path: Path
) -> None:
    writer = open_lake()
    with sqlite3.connect(lake_path / "catalog.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    write_next(writer, 0, 10)
    reader = open_lake(read_only=True)
    reader.con.execute("BEGIN TRANSACTION")
    assert count(reader) == 10
    write_next(writer, 0, 10)  # would wait for the reader, then fail, in rollback-journal mode
    assert count(reader) == 10  # the reader keeps its snapshot
    reader.con.execute("COMMIT")
    assert count(reader) == 20


def test_lake_table_columns_match_the_schema_source_of_truth(
    open_lake: Callable[..., Lake],
) -> None:
    lake = open_lake()
    described = lake.con.execute("DESCRIBE plate_reads").fetchall()
    assert [row[0] for row in described] == PLATE_READS.names
    expected_types = {
        "captured_at": "TIMESTAMP WITH TIME ZONE",
        "ingested_at": "TIMESTAMP WITH TIME ZONE",
        "lane": "SMALLINT",
        "confidence": "FLOAT",
        "source_partition": "INTEGER",
        "source_offset": "BIGINT",
        "event_id": "VARCHAR",
    }
    types = {row[0]: row[1] for row in described}
    for column, duck_type in expected_types.items():
        assert types[column] == duck_type


def test_lake_made_before_new_columns_gains_them_on_open(lake_path: Path, ext_dir: Path) -> None:
    old_schema = pa.schema([f for f in PLATE_READS if f.name not in {"passage_id", "candidates"}])
    with Lake.open(lake_path, extension_dir=ext_dir) as lake:
        lake.con.execute("DROP TABLE lake.plate_reads")
        lake.con.execute(create_table_sql("plate_reads", old_schema))
    with Lake.open(lake_path, extension_dir=ext_dir) as lake:
        columns = [r[0] for r in lake.con.execute("DESCRIBE plate_reads").fetchall()]
        # Added columns come last; rows are inserted BY NAME, so the order does not matter.
        assert sorted(columns) == sorted(PLATE_READS.names)
        assert columns[-2:] == ["passage_id", "candidates"]
        lake.write_batch(
            "plate_reads",
            synthetic_reads(10),
            consumer_group=GROUP,
            topic=TOPIC,
            next_offsets={0: 10},
            expected={0: None},
        )
        stored = lake.con.execute(
            "SELECT count(*), count(passage_id), min(source_offset) FROM plate_reads"
        ).fetchone()
        assert stored == (10, 10, 0)
