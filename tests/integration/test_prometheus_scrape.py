"""A real Prometheus server scrapes a running `anpr ingest plates` and `anpr live`.

The server (Debian package `prometheus`, installed by `make setup`) runs on a free loopback
port with its storage in a tmp dir, on a copy of deploy/prometheus/prometheus.yml whose targets
are rewritten to the processes this test starts (jobs it does not start point at a closed port,
so they are down). Then, through the HTTP API: our series arrive with the values the worker
and the live app report, every rule evaluates without error on real data, and AnprIngestDown
picks out exactly the ingest jobs that are not running.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from pipeline.config import load_settings
from pipeline.kafka.admin import topic_plan
from pipeline.kafka.local import free_port
from tests import ops_contract as oc

if TYPE_CHECKING:
    from tests.integration.conftest import MakeTopic, RunAnpr

# Our long-running processes this test starts, by Prometheus job: the variable that sets the
# /metrics port, and the `anpr` arguments.
RUNNING: dict[str, tuple[str, tuple[str, ...]]] = {
    "anpr-ingest-plates": ("ANPR_INGEST_METRICS_PORT", ("ingest", "plates")),
    "anpr-live": ("ANPR_LIVE_METRICS_PORT", ("live",)),
}
READS = 300
DEADLINE_S = 90.0


def _render_config(ports: dict[str, int], rules_glob: Path) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with each job's targets on 127.0.0.1, scraped every 1 s."""
    config = yaml.safe_load((oc.PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config.pop("alerting", None)  # no Alertmanager here; rules still evaluate
    config["rule_files"] = [str(rules_glob)]
    for job in config["scrape_configs"]:
        for discovery in [key for key in job if key.endswith("_configs")]:
            del job[discovery]
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
    return config


def _stop(process: subprocess.Popen[str], timeout: float = 20.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


class PrometheusApi:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/v1/query", query=expr)["result"]
        return result

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False


def _poll(what: str, check: Callable[[], Any], deadline: float) -> Any:
    """Call ``check`` until it returns something truthy; fail naming ``what`` at the deadline."""
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture
def scraped(
    kafka_bootstrap: str, make_topic: MakeTopic, anpr: RunAnpr, tmp_path: Path
) -> Iterator[tuple[PrometheusApi, dict[str, int]]]:
    """Our processes running with READS reads consumed, and Prometheus scraping them."""
    server = shutil.which("prometheus")
    if server is None:
        pytest.fail("prometheus not found: run `make setup` (installs the Debian package)")
    configs = {spec.name: spec.config for spec in topic_plan(load_settings(None, env={}))}
    defaults = load_settings(None, env={}).topics
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ANPR_")},
        "ANPR_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ANPR_TOPICS_PLATE_READS": make_topic(2, configs[defaults.plate_reads]),
        "ANPR_TOPICS_DLQ": make_topic(1, configs[defaults.dlq]),
        "ANPR_TOPICS_WATCHLIST": make_topic(1, configs[defaults.watchlist]),
        "ANPR_TOPICS_WATCHLIST_HITS": make_topic(2, configs[defaults.watchlist_hits]),
        "ANPR_TOPICS_PARTITIONS": "2",
        "ANPR_LAKE_PATH": str(tmp_path / "lake"),
        "ANPR_STATE_DIR": str(tmp_path / "state"),
    }
    env["ANPR_INGEST_CONSUMER_GROUP"] = f"g-{env['ANPR_TOPICS_PLATE_READS']}"
    env["ANPR_LIVE_CONSUMER_GROUP"] = f"live-{env['ANPR_TOPICS_PLATE_READS']}"
    config = yaml.safe_load((oc.PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    ports = {job["job_name"]: free_port() for job in config["scrape_configs"]}

    with contextlib.ExitStack() as stack:

        def start(argv: list[str], log_name: str, **env_extra: str) -> None:
            log = stack.enter_context((tmp_path / log_name).open("w"))
            process = subprocess.Popen(
                argv, env={**env, **env_extra}, stdout=subprocess.DEVNULL, stderr=log, text=True
            )
            stack.callback(_stop, process)  # stopped before its log is closed

        for job, (port_variable, args) in RUNNING.items():
            start(
                [sys.executable, "-m", "pipeline", *args],
                f"{job}.log",
                **{port_variable: str(ports[job])},
            )
        sent = anpr(env, "simulate", "plates", "--count", str(READS))
        assert sent.returncode == 0, sent.stderr

        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(
            yaml.safe_dump(_render_config(ports, oc.RULES_DIR / "*.yml")), encoding="utf-8"
        )
        start(
            [
                server,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                "--log.level=warn",
            ],
            "prometheus.log",
        )
        api = PrometheusApi(ports["prometheus"])
        _poll("Prometheus to be ready", api.ready, time.monotonic() + DEADLINE_S)
        yield api, ports


def _value(api: PrometheusApi, expr: str) -> float | None:
    result = api.query(expr)
    return float(result[0]["value"][1]) if result else None


def _alert_expr(name: str) -> str:
    (rule,) = [rule for rule in oc.rules() if rule.get("alert") == name]
    return str(rule["expr"])


def test_prometheus_scrapes_our_processes_and_evaluates_our_rules(
    scraped: tuple[PrometheusApi, dict[str, int]],
) -> None:
    api, ports = scraped
    deadline = time.monotonic() + DEADLINE_S

    # Our series arrive, with the worker's own numbers: all reads consumed and reconciled.
    consumed = 'sum(anpr_messages_consumed_total{job="anpr-ingest-plates"})'
    _poll(f"{consumed} == {READS}", lambda: _value(api, consumed) == READS, deadline)
    accounted = (
        'sum(anpr_rows_written_total{job="anpr-ingest-plates"})'
        ' + (sum(anpr_duplicates_dropped_total{job="anpr-ingest-plates"}) or vector(0))'
        ' + (sum(anpr_messages_rejected_total{job="anpr-ingest-plates"}) or vector(0))'
        ' + (sum(anpr_messages_expired_on_arrival_total{job="anpr-ingest-plates"}) or vector(0))'
    )
    assert _value(api, accounted) == READS
    assert _value(api, 'anpr_last_commit_timestamp_seconds{job="anpr-ingest-plates"}')
    assert _value(api, 'count(anpr_freshness_seconds_bucket{job="anpr-ingest-plates"})')
    # The live app took the same reads from its own consumer group.
    live = 'sum(anpr_live_reads_total{job="anpr-live"})'
    _poll(f"{live} == {READS}", lambda: _value(api, live) == READS, deadline)

    # Every target we run is up; every other job points at a closed port and is down.
    def up_by_job() -> dict[str, float] | None:
        got = {r["metric"]["job"]: float(r["value"][1]) for r in api.query("up")}
        return got if set(got) == set(ports) else None

    up = _poll("a scrape of every job", up_by_job, deadline)
    assert {job for job, value in up.items() if value == 1} == {*RUNNING, "prometheus"}

    # The alert expression, taken from our rules file, names exactly the ingest jobs not running.
    down = {r["metric"]["job"] for r in api.query(_alert_expr("AnprIngestDown"))}
    expected_down = {job for job in ports if job.startswith("anpr-ingest-") and job not in RUNNING}
    assert down == expected_down
    assert api.query(_alert_expr("AnprIngestNotCommitting")) == []

    # The rule engine loaded every rule and evaluates it on real data without errors...
    names = {rule.get("alert") or rule["record"] for rule in oc.rules()}

    def evaluated_rules() -> list[dict[str, Any]] | None:
        loaded = [r for g in api.get("/api/v1/rules")["groups"] for r in g["rules"]]
        done = [r for r in loaded if r.get("lastEvaluation", "").startswith("20")]
        return loaded if len(done) == len(names) else None

    loaded = _poll("every rule to be evaluated", evaluated_rules, deadline)
    assert {r["name"] for r in loaded} == names
    assert [r["name"] for r in loaded if r["health"] != "ok"] == []

    # ...and AnprIngestDown is pending (for: 2m) for exactly those jobs.
    def pending_down() -> set[str]:
        alerts = api.get("/api/v1/alerts")["alerts"]
        return {a["labels"]["job"] for a in alerts if a["labels"]["alertname"] == "AnprIngestDown"}

    _poll("AnprIngestDown pending", lambda: pending_down() == expected_down, deadline)
