"""One maintenance run: statistics, compaction, retention, purge, the activity log's and the
erasure ledger's retention, verification of the lake and the state folder, in that order.

Each step is idempotent and commits in small transactions (one period, one day), so a run
killed at any point (SIGKILL) is completed by the next. A failing statistics or compaction
step is logged and reported but never stops retention: deleting late is illegal, missing
statistics only raise an alert (``anpr_statistics_days_pending``). The run fails (exit 1)
at the end if any step failed or the verification found data past a limit.

Time is injected: ``as_of`` decides every cutoff and which days are closed; ``clock`` is the
wall clock, used for snapshot expiry, orphan age and the metrics' timestamps.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.access.audit import ActivityLog, store_for
from pipeline.config import Settings
from pipeline.erasure import ErasureLedger
from pipeline.errors import ConfigError, PipelineError
from pipeline.files import write_atomic
from pipeline.lake.backend import Storage
from pipeline.lake.catalog import CATALOG, Lake
from pipeline.lake.s3 import refuse_versioned_bucket
from pipeline.lake.tables import PERSONAL_DATA_TABLES
from pipeline.maintain import compact as compaction
from pipeline.maintain import stats as statistics
from pipeline.maintain.inventory import files_by_day, table_exists
from pipeline.maintain.lock import maintain_lock
from pipeline.maintain.purge import META, purge
from pipeline.maintain.retention import Cutoff, cutoff_for, delete_expired, expired_days, sweep
from pipeline.maintain.state import verify_state
from pipeline.maintain.verify import catalog_dead_tuples, sampled_values, verify
from pipeline.metrics import MaintainMetrics
from pipeline.retention import log_cutoff

logger = logging.getLogger(__name__)

STEPS: Final = ("stats", "compact", "retention")
STATS_SOURCE_TABLE: Final = "plate_reads"


class MaintenanceFailed(PipelineError):
    """A step failed or the verification found data past its limit (details in the report)."""


@dataclass(frozen=True)
class MaintainOptions:
    as_of: datetime
    dry_run: bool = False
    only: frozenset[str] = frozenset(STEPS)
    check_topics: bool = True
    lock_wait_s: float = 0.0  # how long to queue behind another host's run (maintain/lock.py)


@dataclass
class RunReport:
    """What a run did, counts only (written as JSON under ``<lake>/reports/``)."""

    as_of: str
    started_at: str
    dry_run: bool
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    finished_at: str = ""


def check_limits(settings: Settings) -> dict[str, int]:
    """Retention months per registered table; unknown table names refused (exit 2)."""
    unknown = set(settings.retention.tables) - set(PERSONAL_DATA_TABLES)
    if unknown:
        raise ConfigError(
            f"retention.tables.{sorted(unknown)[0]}",
            f"not a personal-data table; known: {', '.join(PERSONAL_DATA_TABLES)}",
        )
    return {t: settings.retention.months_for(t) for t in PERSONAL_DATA_TABLES}


def maintain(
    settings: Settings,
    options: MaintainOptions,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    metrics: MaintainMetrics | None = None,
    console: Console | None = None,
) -> RunReport:
    """Run the steps in ``options.only`` (see the module doc); raise MaintenanceFailed at the
    end if a step failed. Writes the metrics textfile and the JSON report unless dry-run."""
    months = check_limits(settings)
    out = console or Console(stderr=True)
    metrics = metrics or MaintainMetrics()
    prom = settings.state.dir / "metrics" / "maintain.prom"
    metrics.carry_over(prom)
    as_of = options.as_of.astimezone(UTC)
    report = RunReport(
        as_of=as_of.isoformat(), started_at=clock().isoformat(), dry_run=options.dry_run
    )
    storage = Storage.existing(settings.lake)
    refuse_versioned_bucket(storage)  # its deletes would keep every byte as an old version
    runner = _Run(settings, options, as_of, months, clock, metrics, out, report)
    # Never two runs on one lake, from any host: they would delete and rewrite the same days.
    # A dry run changes no byte (not even a lock file) and reads a snapshot: it takes no lock.
    with (
        contextlib.nullcontext()
        if options.dry_run
        else maintain_lock(storage, wait_s=options.lock_wait_s),
        Lake.open(settings.lake.path, create=False, storage=storage) as lake,
    ):
        runner.lake = lake
        runner.run()
    if options.check_topics:
        runner.topics()
    report.finished_at = clock().isoformat()
    if not options.dry_run:
        metrics.write(prom)
        _write_report(settings.lake.path / "reports", report, clock())
    if report.failed:
        raise MaintenanceFailed(f"maintenance steps failed: {', '.join(report.failed)}")
    return report


class _Run:
    lake: Lake

    def __init__(
        self,
        settings: Settings,
        options: MaintainOptions,
        as_of: datetime,
        months: Mapping[str, int],
        clock: Callable[[], datetime],
        metrics: MaintainMetrics,
        out: Console,
        report: RunReport,
    ) -> None:
        self.settings = settings
        self.options = options
        self.as_of = as_of
        self.months = months
        self.clock = clock
        self.metrics = metrics
        self.out = out
        self.report = report
        self.grace = timedelta(hours=settings.maintain.late_grace_h)

    # -- driver ------------------------------------------------------------------------------

    def run(self) -> None:
        lake = self.lake
        self.cuts: dict[str, Cutoff] = {
            table: cutoff_for(table, column, self.months[table], self.as_of)
            for table, column in PERSONAL_DATA_TABLES.items()
            if table_exists(lake, CATALOG, table)
        }
        for table, cut in self.cuts.items():
            self.metrics.limit.labels(table).set(cut.limit_seconds)
        only = self.options.only
        if "stats" in only:
            self._step("stats", self.stats)
        if "compact" in only:
            self._step("compact", self.compact)
        if "retention" in only:
            if self._step("retention", self.retention):
                self._step("purge", self.purge)
            # After the lake: a log that fails to verify must never hold up the lake's purge.
            self._step("activity_log", self.activity_log)
            self._step("erasure_ledger", self.erasure_ledger)
            # Last: the state folder is checked after the log's and the ledger's retention.
            self._step("verify", self.verify)

    def _step(self, name: str, body: Callable[[], dict[str, Any]]) -> bool:
        started = self.clock()
        logger.info("maintain: step %s started", name)
        if not self.options.dry_run:
            self.metrics.last_run.labels(name).set(started.timestamp())
        try:
            result = body()
        except Exception as exc:
            # Any failure of one step is reported and the run goes on: retention must run.
            logger.error("maintain step %s failed: %s", name, exc, exc_info=True)
            self.report.failed.append(name)
            self.report.steps[name] = {"ok": False, "error": type(exc).__name__}
            self.out.print(f"[red]{name}: failed ({type(exc).__name__}); see the log[/red]")
            return False
        ok = bool(result.pop("ok", True))
        result["seconds"] = round((self.clock() - started).total_seconds(), 3)
        self.report.steps[name] = {"ok": ok, **result}
        if not ok:
            self.report.failed.append(name)
        elif not self.options.dry_run:
            self.metrics.last_success.labels(name).set(self.clock().timestamp())
        return ok

    @contextmanager
    def _progress(self, what: str, total: int) -> Iterator[Callable[[], None]]:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.out,
            transient=True,
        ) as bar:
            task = bar.add_task(what, total=total)
            yield lambda: bar.advance(task)

    def _first_kept_day(self, table: str) -> date:
        cut = self.cuts.get(table)
        return cut.first_kept_day if cut else date.min

    # -- steps -------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        lake, k = self.lake, self.settings.maintain.k_anonymity
        if STATS_SOURCE_TABLE not in self.cuts:
            return {"periods": 0}
        days = files_by_day(lake, STATS_SOURCE_TABLE)
        have_tables = table_exists(lake, CATALOG, "stats_periods")
        plan = statistics.plan_statistics(
            as_of=self.as_of,
            grace=self.grace,
            first_kept_day=self._first_kept_day(STATS_SOURCE_TABLE),
            day_signatures={d: f.signature for d, f in days.items()},
            done=statistics.stored_periods(lake) if have_tables else {},
        )
        self.metrics.stats_pending.set(plan.pending)
        periods = [(statistics.TRAFFIC, d, s) for d, s in plan.traffic_days] + [
            (statistics.TRIPS, w, s) for w, s in plan.trip_weeks
        ]
        summary: dict[str, Any] = {
            "traffic_days": len(plan.traffic_days),
            "trip_weeks": len(plan.trip_weeks),
        }
        if self.options.dry_run:
            self.out.print(
                f"stats: would compute {len(plan.traffic_days)} traffic days"
                f"{_span([d for d, _ in plan.traffic_days])} and {len(plan.trip_weeks)} trip "
                f"weeks{_span([w for w, _ in plan.trip_weeks])} (k = {k})"
            )
            return summary
        statistics.ensure_stats_tables(lake)
        changed = 0
        left = len(periods)
        with self._progress("statistics", len(periods)) as advance:
            for kind, start, sig in periods:
                now = self.clock()
                rows = statistics.compute_period(lake, kind, start, k=k, computed_at=now)
                changed += statistics.write_period(lake, kind, start, rows, sig, now)
                logger.debug("statistics written: %s %s", kind, start)
                left -= 1
                self.metrics.stats_pending.set(left)
                advance()
        self.out.print(
            f"stats: {summary['traffic_days']} traffic days, {summary['trip_weeks']} trip weeks "
            f"computed ({changed} changed)"
        )
        return {**summary, "changed": changed}

    def compact(self) -> dict[str, Any]:
        lake = self.lake
        tasks: list[compaction.CompactTask] = []
        for table, cut in self.cuts.items():
            tasks += compaction.plan_compaction(
                table,
                cut.column,
                files_by_day(lake, table, cut.column),
                as_of=self.as_of,
                grace=self.grace,
                first_kept_day=cut.first_kept_day,
                min_files=self.settings.maintain.compact_min_files,
            )
        before = sum(t.files for t in tasks)
        if self.options.dry_run:
            self.out.print(
                f"compact: would rewrite {len(tasks)} days{_span([t.day for t in tasks])} "
                f"({before} files)"
            )
            return {"days": len(tasks), "files_before": before}
        if tasks:
            compaction.ensure_row_groups(lake)
        with self._progress("compaction", len(tasks)) as advance:
            rows = compaction.run_compaction(lake, tasks, lambda _t: advance())
        after = 0
        for table in {t.table for t in tasks}:
            inventory = files_by_day(lake, table, self.cuts[table].column)
            after += sum(
                inventory[t.day].files for t in tasks if t.table == table and t.day in inventory
            )
        if table_exists(lake, CATALOG, "traffic_stats"):
            compaction.merge_small_tables(lake, ("traffic_stats", "trip_stats", "stats_periods"))
        self.metrics.compaction_files.labels("before").set(before)
        self.metrics.compaction_files.labels("after").set(after)
        self.out.print(f"compact: {len(tasks)} days, {before} files -> {after} ({rows} rows)")
        return {"days": len(tasks), "files_before": before, "files_after": after, "rows": rows}

    def retention(self) -> dict[str, Any]:
        lake = self.lake
        plans = {table: expired_days(lake, cut) for table, cut in self.cuts.items()}
        out: dict[str, Any] = {}
        for table, cut in self.cuts.items():
            days = plans[table]
            out[table] = {
                "months": cut.months,
                "cutoff": cut.cutoff.isoformat(),
                "delete_before": cut.delete_before.isoformat(),
                "deleted_per_day": {d.isoformat(): n for d, n in days.items()},
            }
            if self.options.dry_run:
                self.out.print(
                    f"retention: {table} ({cut.months} months, "
                    f"cutoff {cut.cutoff:%Y-%m-%d %H:%M}Z): "
                    f"would delete {sum(days.values())} rows on {len(days)} days{_span(list(days))}"
                )
        if self.options.dry_run:
            return out
        total_days = sum(len(d) for d in plans.values())
        with self._progress("retention (days)", total_days) as advance:
            for table, cut in self.cuts.items():
                deleted = delete_expired(lake, cut, lambda _d, _n: advance())
                out[table]["deleted_per_day"] = {d.isoformat(): n for d, n in deleted.items()}
                rows = sum(deleted.values())
                self.metrics.deleted.labels(table, "retention").inc(rows)
                self.out.print(f"retention: {table}: {rows} rows deleted on {len(deleted)} days")
        return out

    def purge(self) -> dict[str, Any]:
        if self.options.dry_run:
            return self._purge_plan()
        report = purge(
            self.lake,
            now=self.clock(),
            orphan_grace=timedelta(seconds=self.settings.maintain.orphan_grace_s),
        )
        swept = sweep(self.lake, self.cuts)
        self.out.print(
            f"purge: {report.files_rewritten} files rewritten, {report.snapshots_expired} "
            f"snapshots expired, {report.files_removed + report.orphans_removed + swept} files "
            "removed, catalog vacuumed"
        )
        return {**asdict(report), "expired_day_files_swept": swept}

    def _purge_plan(self) -> dict[str, Any]:
        """What purge would do now (before this run's deletes, which a dry run does not make)."""
        lake = self.lake
        (carrying,) = lake.execute(
            f"SELECT count(*) FROM {META}.ducklake_delete_file WHERE end_snapshot IS NULL"
        ).fetchone() or (0,)
        (snapshots,) = lake.execute(
            f"SELECT count(*) FROM {META}.ducklake_snapshot"
        ).fetchone() or (0,)
        expiring = max(int(snapshots) - 1, 0)
        self.out.print(
            f"purge: would rewrite {carrying} files carrying deletes (plus those of the days "
            f"retention deletes), expire {expiring} snapshots, remove their old and orphaned "
            "files and vacuum the catalog"
        )
        return {"files_with_deletes": int(carrying), "snapshots_to_expire": expiring}

    def verify(self) -> dict[str, Any]:
        checks = verify(self.lake, self.cuts)
        out: dict[str, Any] = {"ok": all(c.ok for c in checks)}
        for check in checks:
            age = (self.as_of - check.oldest).total_seconds() if check.oldest else 0.0
            self.metrics.oldest_age.labels(check.table).set(max(age, 0.0))
            out[check.table] = {
                "oldest": check.oldest.isoformat() if check.oldest else None,
                "rows_past_limit": check.rows_past_limit,
                "files_in_expired_days": check.files_in_expired_days,
                "catalog_past_limit": check.catalog_past_limit,
            }
            if not check.ok and not self.options.dry_run:
                self.out.print(
                    f"[red]verify: {check.table}: {check.rows_past_limit} rows, "
                    f"{check.files_in_expired_days} files and {check.catalog_past_limit} "
                    "catalog values past the limit[/red]"
                )
        dead = catalog_dead_tuples(self.lake.storage)
        if dead is not None:
            out["catalog_dead_tuples"] = dead
        sampled = sampled_values(self.lake.storage)
        if sampled is not None:
            # The purge turns these off; any left would keep rows' values in pg_statistic.
            out["planner_statistics_on_values"] = sampled
            out["ok"] = out["ok"] and not sampled
            if sampled and not self.options.dry_run:
                self.out.print(
                    f"[red]verify: planner statistics still sample {len(sampled)} value "
                    "columns of the catalog (see the purge's warnings)[/red]"
                )
        state = verify_state(self.settings, self.as_of)
        out["state_folder"] = {
            "files": state.files,
            "findings": [asdict(f) for f in state.findings],
        }
        out["ok"] = out["ok"] and state.ok
        if not self.options.dry_run:
            for finding in state.findings:
                self.out.print(
                    f"[red]verify: state folder: {escape(finding.path)}: "
                    f"{escape(finding.problem)}[/red]"
                )
        if self.options.dry_run:
            out["ok"] = True  # nothing was deleted, so data past the limit is expected
        return out

    def activity_log(self) -> dict[str, Any]:
        """Drop activity-log entries past ``access.log_retention_months`` (MAC chain kept)."""
        months = self.settings.access.log_retention_months
        store = store_for(self.settings)
        # Checked first: opening the log would create an audit key where none is needed.
        with contextlib.closing(store):
            if not store.exists():
                return {"months": months, "dropped": 0}
            log = ActivityLog.from_settings(self.settings, store=store)
            return self._activity_log_retention(log, months)

    def _activity_log_retention(self, log: ActivityLog, months: int) -> dict[str, Any]:
        if self.options.dry_run:
            cutoff = log_cutoff(self.as_of, months)
            old = sum(1 for e in log.entries() if datetime.fromisoformat(e["at"]) < cutoff)
            self.out.print(f"activity log: would drop {old} entries older than {months} months")
            return {"months": months, "would_drop": old}
        dropped = log.apply_retention(self.as_of, months)
        self.metrics.deleted.labels("activity_log", "retention").inc(dropped)
        self.out.print(f"activity log: {dropped} entries older than {months} months dropped")
        return {"months": months, "dropped": dropped}

    def erasure_ledger(self) -> dict[str, Any]:
        """Forget erasures older than the topics' retention (Kafka no longer holds them)."""
        ledger = ErasureLedger.from_settings(self.settings)
        if self.options.dry_run:
            due = sum(1 for e in ledger.entries() if e.keep_until <= self.as_of)
            self.out.print(f"erasure ledger: would forget {due} erasures")
            return {"would_forget": due}
        forgotten = ledger.prune(self.as_of)
        self.out.print(f"erasure ledger: {forgotten} erasures past the topics' retention forgotten")
        return {"forgotten": forgotten, "kept": len(ledger.entries())}

    def topics(self) -> None:
        from pipeline.kafka.retention_check import check_topic_retentions  # noqa: PLC0415

        try:
            checks = check_topic_retentions(self.settings, self.metrics.topics)
        except Exception as exc:  # a broker we cannot reach must not fail retention
            logger.warning("could not read Kafka topic retention: %s", exc)
            self.report.steps["topics"] = {"ok": False, "error": type(exc).__name__}
            return
        self.report.steps["topics"] = {
            "ok": True,
            "exceeded": [c.topic for c in checks if c.exceeded],
        }


def _span(days: list[date]) -> str:
    if not days:
        return ""
    return f" ({min(days)}..{max(days)})" if len(days) > 1 else f" ({days[0]})"


def _write_report(folder: Path, report: RunReport, now: datetime) -> Path:
    """Atomically write the run report as JSON (tmp file in the folder, fsync, replace)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"maintain-{now:%Y%m%dT%H%M%S}Z-{uuid.uuid4().hex[:8]}.json"
    return write_atomic(path, json.dumps(asdict(report), indent=1, sort_keys=True))
