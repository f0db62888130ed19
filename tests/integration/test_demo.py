"""`anpr demo` end to end at a small size: on the session broker, with its own topics, groups,
lake and state; the numbers reconcile, the report's charts show something, and the queries it
prints work when pasted."""

from __future__ import annotations

import getpass
import io
import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

from PIL import Image

from pipeline.config import load_settings
from pipeline.demo import ANALYST_SETUP, EXAMPLE_QUERIES, SUMMARY_JSON
from pipeline.lake.catalog import Lake
from pipeline.report import INDEX, PASSAGES_PNG, REJECTS_PNG, TRIPS_PNG
from tests.integration.conftest import RunAnpr


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
    # The lake holds exactly what ingest stored, and statistics were published.
    settings = load_settings(None, env=env)
    with Lake.open(settings.lake.path, read_only=True) as lake:
        rows = lake.con.execute("SELECT count(*) FROM plate_reads").fetchone()
    assert rows == (ingest["stored"],)
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

    # The printed queries work as pasted, after the printed role set-up.
    assert ANALYST_SETUP.startswith("export ANPR_ACCESS_USERS=")
    analyst = {**env, "ANPR_ACCESS_USERS": f"{getpass.getuser()}=analyst"}
    for what, command in EXAMPLE_QUERIES:
        assert command in done.stdout.replace("\n", ""), what
        pasted = _paste(command, analyst)
        assert pasted.returncode == 0, (command, pasted.stderr[-2000:])
        counted = re.search(r"(\d+) rows", pasted.stdout)
        assert counted is not None, pasted.stdout
        assert int(counted.group(1)) > 0, pasted.stdout

    # The demo stopped what it started (the session broker was reused, not stopped).
    assert anpr(env, "kafka", "status").returncode == 0
