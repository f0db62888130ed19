"""`anpr demo` end to end at a small size: on the session broker, with its own topics, groups,
lake and state; the numbers reconcile, the report's charts show something, and the queries it
prints work when pasted."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

from PIL import Image

from pipeline.config import load_settings
from pipeline.demo.report import INDEX, PASSAGES_PNG, REJECTS_PNG, TRIPS_PNG
from pipeline.demo.summary import SUMMARY_JSON
from pipeline.lake.catalog import Lake
from tests.integration.conftest import RunAnpr, running_service


def _env(bootstrap: str, tmp: Path) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("ANPR_")},
        "ANPR_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "ANPR_STATE_DIR": str(tmp / "state"),
        "ANPR_LAKE_PATH": str(tmp / "lake"),
        "ANPR_TOPICS_PLATE_READS": f"demo-{tag}.plate-reads",
        "ANPR_TOPICS_PASSENGERS": f"demo-{tag}.passengers",
        "ANPR_TOPICS_DLQ": f"demo-{tag}.dlq",
        "ANPR_TOPICS_WATCHLIST": f"demo-{tag}.watchlist",
        "ANPR_TOPICS_WATCHLIST_HITS": f"demo-{tag}.watchlist-hits",
        "ANPR_INGEST_CONSUMER_GROUP": f"demo-ingest-{tag}",
        "ANPR_PASSENGERS_CONSUMER_GROUP": f"demo-passengers-{tag}",
        "ANPR_LIVE_CONSUMER_GROUP": f"demo-live-{tag}",
        "COLUMNS": "200",
    }


def _ink(path: Path) -> tuple[tuple[int, int], float, int]:
    image = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
    raw = image.tobytes()
    pixels = list(zip(raw[0::3], raw[1::3], raw[2::3], strict=True))
    ink = sum(1 for p in pixels if p != (255, 255, 255)) / len(pixels)
    strong = {(r // 32, g // 32, b // 32) for r, g, b in pixels if max(r, g, b) - min(r, g, b) > 80}
    return image.size, ink, len(strong)


def _paste(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a printed command as a user would paste it (``anpr`` = this checkout's CLI)."""
    stdin = None
    if " | " in command:
        left, command = command.split(" | ", 1)
        echo = shlex.split(left)
        assert echo[0] == "echo"
        stdin = echo[1] + "\n"
    argv = shlex.split(command)
    assert argv[0] == "anpr"
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *argv[1:]],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _exports(line: str) -> dict[str, str]:
    """The variables of a printed ``export A=x B=y`` line."""
    words = shlex.split(line)
    assert words[0] == "export"
    return dict(word.split("=", 1) for word in words[1:])


def test_demo_runs_reconciles_and_its_queries_work(
    kafka_bootstrap: str, anpr: RunAnpr, tmp_path: Path
) -> None:
    env = _env(kafka_bootstrap, tmp_path)
    report_dir = tmp_path / "report"
    args = ("demo", "--days", "1", "--passages-per-hour", "150", "--seed", "11")
    done = anpr(env, *args, "--report-dir", str(report_dir), timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"report: {report_dir / INDEX}" in done.stdout.replace("\n", "")

    summary = json.loads((report_dir / SUMMARY_JSON).read_text())
    ingest = summary["ingest"]
    # Every message the cameras sent is accounted for: stored, rejected or dropped as a
    # camera retransmission (none is past the limit on arrival).
    assert summary["sent"] > 2000
    assert ingest["consumed"] == summary["sent"]
    assert ingest["stored"] + ingest["rejected"] + ingest["duplicates"] == ingest["consumed"]
    assert ingest["expired"] == 0
    # Every hostile message was rejected, and each rejection is on the DLQ with a reason.
    assert ingest["rejected"] == summary["hostile"] > 0
    assert sum(summary["dlq_by_reason"].values()) == ingest["rejected"]
    assert len(summary["dlq_by_reason"]) >= 3
    # The ferry lists too: lists sent = consumed = accepted + rejected, and people listed =
    # stored + on the rejected lists + repeats dropped; the broken lists are on the DLQ.
    pax = summary["passengers"]
    assert pax["sent"] > 20
    assert pax["ingest"]["consumed"] == pax["sent"]
    assert pax["ingest"]["rejected"] == pax["hostile"] > 0
    assert sum(pax["dlq_by_reason"].values()) == pax["hostile"]
    assert pax["people"] == (
        pax["ingest"]["stored"] + pax["hostile_people"] + pax["ingest"]["duplicates"]
    )
    assert "lists: sent" in done.stdout
    assert "MISMATCH" not in done.stdout
    # The lake holds exactly what ingest stored, and statistics were published.
    settings = load_settings(None, env=env)
    with Lake.open(settings.lake.path, read_only=True) as lake:
        rows = lake.con.execute("SELECT count(*) FROM plate_reads").fetchone()
        people = lake.con.execute("SELECT count(*) FROM passengers").fetchone()
    assert rows == (ingest["stored"],)
    assert people == (pax["ingest"]["stored"],)
    assert summary["tables"]["passengers"] == people[0]
    assert summary["tables"]["plate_reads"] == ingest["stored"]
    assert summary["tables"]["traffic_stats"] > 0
    assert summary["tables"]["trip_stats"] > 0
    # The live app saw every read of a listed plate that the lake holds, once.
    exact = sum(h["hits"] for h in summary["hits"] if h["match"] == "exact")
    assert exact == summary["listed_reads_in_lake"] > 0

    for name in (PASSAGES_PNG, TRIPS_PNG, REJECTS_PNG):
        size, ink, colours = _ink(report_dir / name)
        assert size == (900, 400)
        assert ink > 0.03, name
        assert colours >= 3, name
    page = (report_dir / INDEX).read_text()
    assert all(f'src="{n}"' in page for n in (PASSAGES_PNG, TRIPS_PNG, REJECTS_PNG))

    # No plate in the report: none of the lake's plates appears in the page.
    with Lake.open(settings.lake.path, read_only=True) as lake:
        plates = [
            p for (p,) in lake.con.execute("SELECT DISTINCT plate FROM plate_reads").fetchall()
        ]
    assert not [p for p in plates if p in page]

    # The printed queries work as pasted, after the printed role set-up; the last one is the
    # ferry join of a departure of this run, run as an investigator (passengers are theirs).
    queries = summary["queries"]
    assert len(queries) == 3
    join = queries[-1]
    assert join["role"] == "investigator"
    assert "FROM passengers AS p JOIN plate_reads" in (join["command"])
    printed = done.stdout.replace("\n", "")
    # The demo stopped its query service and printed how to start it again: do that.
    started = re.search(r"anpr --config (\S+) serve &", printed)
    assert started is not None
    config = Path(started.group(1))
    socket_path = Path(tomllib.loads(config.read_text())["serve"]["socket"])
    with running_service(env, socket_path, "--config", str(config)):
        for query in queries:
            assert query["setup"] in printed
            assert query["command"] in printed, query["what"]
            pasted = _paste(query["command"], {**env, **_exports(query["setup"])})
            assert pasted.returncode == 0, (query["command"], pasted.stderr[-2000:])
            counted = re.search(r"(\d+) rows", pasted.stdout)
            assert counted is not None, pasted.stdout
            assert int(counted.group(1)) > 0, pasted.stdout
    # The join finds exactly the reads the demo said it would.
    said = re.search(r"it lists (\d+) rows", printed)
    assert said is not None
    assert said.group(1) == counted.group(1)

    # The demo stopped what it started (the session broker was reused, not stopped).
    assert anpr(env, "kafka", "status").returncode == 0
