"""The alert rules and the dashboard, read as data: names, annotations, runbook, test coverage.

promtool itself (syntax, unit tests) runs in tests/integration/test_prometheus_rules.py.
"""

from __future__ import annotations

import re

import pytest
import yaml

from tests import ops_contract as oc

ALERTS = [rule for rule in oc.rules() if "alert" in rule]


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, spaces to dashes, punctuation out."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _runbook_anchors() -> set[str]:
    text = oc.RUNBOOK.read_text(encoding="utf-8")
    return {_slug(m.group(1)) for m in re.finditer(r"(?m)^#{1,6} (.+)$", text)}


def _alert_tests() -> dict[str, dict[str, int]]:
    """alertname -> {"firing": cases expecting alerts, "quiet": cases expecting none}."""
    seen: dict[str, dict[str, int]] = {}
    for path in sorted((oc.PROMETHEUS_DIR / "tests").glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in group.get("alert_rule_test", []):
                counts = seen.setdefault(case["alertname"], {"firing": 0, "quiet": 0})
                counts["firing" if case.get("exp_alerts") else "quiet"] += 1
    return seen


def test_there_is_an_alert_for_each_required_condition() -> None:
    names = {rule["alert"] for rule in ALERTS}
    required = {
        "AnprIngestDown",
        "AnprIngestNotCommitting",
        "AnprConsumerLagHigh",
        "AnprConsumerLagSecondsHigh",
        "AnprRejectRateHigh",
        "AnprFreshnessP99High",
        "AnprRetentionOverdue",
        "AnprMaintenanceMissed",
        "AnprStatisticsMissed",
        "AnprTopicRetentionAboveLimit",
        "AnprCameraSilent",
        "AnprWatchlistHitsNotFlowing",
    }
    assert required <= names, sorted(required - names)


@pytest.mark.parametrize("rule", ALERTS, ids=[rule["alert"] for rule in ALERTS])
def test_every_alert_has_severity_summary_description_and_runbook_section(rule: dict) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning"}
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert len(annotations["description"].split()) >= 8
    path, _, anchor = annotations["runbook_url"].partition("#")
    assert path == "docs/runbook.md"
    assert anchor == rule["alert"].lower()
    assert anchor in _runbook_anchors(), f"docs/runbook.md has no section '## {rule['alert']}'"


def test_every_runbook_alert_section_has_an_alert() -> None:
    """No stale sections: each '## Anpr...' heading belongs to a rule."""
    text = oc.RUNBOOK.read_text(encoding="utf-8")
    sections = set(re.findall(r"(?m)^## (Anpr\w+)$", text))
    assert sections == {rule["alert"] for rule in ALERTS}


def test_every_alert_has_unit_tests_firing_and_quiet() -> None:
    tested = _alert_tests()
    for rule in ALERTS:
        counts = tested.get(rule["alert"], {"firing": 0, "quiet": 0})
        assert counts["firing"] >= 1, f"{rule['alert']}: no promtool case where it fires"
        assert counts["quiet"] >= 1, f"{rule['alert']}: no promtool case where it stays quiet"


def test_retention_overdue_is_the_contract_expression() -> None:
    """Fires a day before the limit: the contract with `anpr maintain` (issue 6)."""
    (rule,) = [r for r in ALERTS if r["alert"] == "AnprRetentionOverdue"]
    expr = " ".join(rule["expr"].split())
    assert expr == "anpr_oldest_record_age_seconds > anpr_retention_limit_seconds - 86400"


def test_rules_use_only_metrics_that_exist() -> None:
    allowed = oc.allowed_series()
    unknown = {
        (rule.get("alert") or rule["record"], name)
        for rule in oc.rules()
        for name in oc.metric_names_in(rule["expr"])
        if name not in allowed
    }
    assert not unknown, sorted(unknown)


def test_dashboard_uses_only_metrics_that_exist() -> None:
    allowed = oc.allowed_series()
    boards = oc.dashboards()
    assert boards
    unknown = []
    for path in boards:
        for where, expr in oc.dashboard_expressions(path):
            text = oc.expand_grafana_variables(expr)
            assert "$" not in text, f"{path.name} {where}: unknown Grafana variable in {expr!r}"
            unknown += [(where, n) for n in oc.metric_names_in(text) if n not in allowed]
    assert not unknown, sorted(unknown)


def test_dashboard_covers_the_operations_topics() -> None:
    """Throughput, rejects, lag, freshness, retention, maintenance, hits, camera silence."""
    (board,) = oc.dashboards()
    used = {n for _, e in oc.dashboard_expressions(board) for n in oc.metric_names_in(e)}
    for needed in (
        "anpr_messages_consumed_total",
        "anpr_messages_rejected_total",
        "job_topic:anpr_consumer_lag_messages:sum",
        "job:anpr_freshness_seconds:p99_10m",
        "anpr_oldest_record_age_seconds",
        "anpr_maintenance_last_success_timestamp_seconds",
        "anpr_watchlist_hits_total",
        "anpr_camera_silent",
    ):
        assert needed in used, needed


def test_pending_metrics_are_not_defined_yet() -> None:
    """After a merge, the code defines them: delete them from PENDING_METRICS."""
    now_defined = sorted(set(oc.PENDING_METRICS) & set(oc.defined_metrics()))
    assert not now_defined, f"remove from tests/ops_contract.py PENDING_METRICS: {now_defined}"


def test_defined_metrics_are_found_in_the_code() -> None:
    defined = oc.defined_metrics()
    assert defined["anpr_messages_consumed_total"] == "counter"
    assert defined["anpr_freshness_seconds"] == "histogram"
    assert defined["anpr_consumer_lag_messages"] == "gauge"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up == 0", {"up"}),
        (
            'sum by (job) (rate(anpr_x_total{a="b", c=~"d|e"}[5m])) > 0',
            {"anpr_x_total"},
        ),
        (
            "a / ignoring (reason) group_left sum by (job) (b) and on () c offset 1d",
            {"a", "b", "c"},
        ),
        ("histogram_quantile(0.99, sum(rate(h_bucket[1m])) by (le)) > 2.5e3", {"h_bucket"}),
        ('label_replace(x, "dst", "$1", "src", "(.*)") or vector(0)', {"x"}),
        ("job:anpr_freshness_seconds:p99_10m > 2", {"job:anpr_freshness_seconds:p99_10m"}),
        ("time() - max(anpr_t) > 26 * 3600 unless bool +Inf", {"anpr_t"}),
    ],
)
def test_metric_names_in(expr: str, names: set[str]) -> None:
    assert oc.metric_names_in(expr) == names


def test_series_names_follow_prometheus_client() -> None:
    assert oc.series_names("anpr_x_total", "counter") == {"anpr_x_total", "anpr_x_created"}
    assert "anpr_h_bucket" in oc.series_names("anpr_h", "histogram")
    assert oc.series_names("anpr_g", "gauge") == {"anpr_g"}
