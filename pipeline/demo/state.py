"""What the demo's steps share: its options, the :class:`Demo` they fill in turn, and the
records the summary hands to the report and the printed queries."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from pipeline.config import Settings
from pipeline.live.watchlist import Entry
from pipeline.reference.sites import SiteRegistry
from pipeline.simulate.passengers import PassengerSummary
from pipeline.simulate.produce import SimulationSummary

if TYPE_CHECKING:
    from pipeline.demo.service import DemoService


@dataclass(frozen=True)
class Example:
    """A query to paste: what it shows, the role it is run as, the command (as printed)."""

    what: str
    role: str
    command: str
    setup: str = ""  # the line that makes the client act as the role (demo.service.setup)


@dataclass(frozen=True)
class Voyage:
    """A departure of this run whose vehicles the cameras read at the terminal."""

    carrier: str
    voyage_id: str
    site_id: str
    rows: int  # what the join returns: reads of its vehicles x people listed with each


@dataclass(frozen=True)
class DemoOptions:
    days: int = 4
    passages_per_hour: float = 1200.0
    bad_ratio: float = 0.01
    keep_running: bool = False
    seed: int | None = None  # default: from the clock, so a rerun sends new traffic
    config: Path | None = None  # passed on to the child processes
    report_dir: Path | None = None  # default <state.dir>/demo/report
    until_idle_s: float = 10.0


@dataclass
class Demo:
    """What the steps share and find out."""

    settings: Settings
    registry: SiteRegistry
    options: DemoOptions
    console: Console
    jars_dir: Callable[[], Path]
    seed: int = 0
    start: datetime = field(default_factory=lambda: datetime.now(UTC))
    end: datetime = field(default_factory=lambda: datetime.now(UTC))
    expected_reads: int = 0
    started_broker: bool = False
    watchlist: list[Entry] = field(default_factory=list)
    live: subprocess.Popen[bytes] | None = None
    ingest: subprocess.Popen[bytes] | None = None
    ingest_passengers: subprocess.Popen[bytes] | None = None
    live_port: int = 0
    serve: subprocess.Popen[bytes] | None = None
    service: DemoService | None = None
    # (topic, partition) -> end offset before this run: what this run added is after it.
    begin: dict[tuple[str, int], int] = field(default_factory=dict)
    simulated: SimulationSummary | None = None
    ferries: PassengerSummary | None = None
    ingest_line: str = ""
    ingest_counts: dict[str, int] = field(default_factory=dict)
    passengers_line: str = ""
    passengers_counts: dict[str, int] = field(default_factory=dict)
    rejects: Counter[tuple[str, str]] = field(default_factory=Counter)  # (feed, reason)
    hits: Counter[tuple[str, str]] = field(default_factory=Counter)
    expected_exact_hits: int = 0
    maintained: list[tuple[str, str]] = field(default_factory=list)  # (as of, outcome)
    tables: dict[str, int] = field(default_factory=dict)
    findings: Findings | None = None
    queries: list[Example] = field(default_factory=list)
    report: Path | None = None
    timings: list[tuple[str, float]] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.settings.state.dir / "demo"


@dataclass
class Findings:
    """Statistics for the summary and the report (no plate, no event id)."""

    tables: dict[str, int] = field(default_factory=dict)
    passages_per_hour: list[tuple[datetime, str, int]] = field(default_factory=list)
    trip_durations: list[tuple[str, int]] = field(default_factory=list)
    busiest: list[tuple[str, int]] = field(default_factory=list)  # site, passages
    peak: tuple[datetime, str, int] | None = None
    stats_days: int = 0
    suppressed_share: float = 0.0
    oldest: dict[str, datetime | None] = field(default_factory=dict)
    listed_reads: int = 0
    no_return: int = 0  # exits without an entry within 30 days (foreign vehicles, mostly)
    people: list[tuple[str, str, int]] = field(default_factory=list)  # role, format, rows
    voyage: Voyage | None = None  # for the printed ferry join (not in the report)
