"""promtool on deploy/: Prometheus config, rules, rule unit tests, dashboard PromQL.

promtool comes with the Debian package `prometheus`, which `make setup` installs.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests import ops_contract as oc


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: run `make setup` (installs the Debian package prometheus)")
    return path


def _run(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def test_prometheus_config_is_valid(promtool: str) -> None:
    result = _run(promtool, "check", "config", oc.PROMETHEUS_DIR / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(oc.rule_files())} rule files found" in result.stdout


def test_rules_are_valid(promtool: str) -> None:
    result = _run(promtool, "check", "rules", *oc.rule_files())
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(oc.rule_files())


def test_alert_unit_tests_pass(promtool: str) -> None:
    tests = sorted((oc.PROMETHEUS_DIR / "tests").glob("*.yml"))
    assert tests
    result = _run(promtool, "test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout


def _check_expressions(promtool: str, exprs: list[str], tmp_path: Path) -> str:
    """Parse PromQL with promtool: each expression becomes a recording rule, then check rules."""
    rules = {
        "groups": [
            {
                "name": "parse-check",
                "rules": [{"record": f"parse_check:q{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "exprs.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    result = _run(promtool, "check", "rules", path)
    return "" if result.returncode == 0 else result.stdout + result.stderr


def test_every_dashboard_expression_parses(promtool: str, tmp_path: Path) -> None:
    exprs = [
        oc.expand_grafana_variables(expr)
        for board in oc.dashboards()
        for _, expr in oc.dashboard_expressions(board)
    ]
    assert len(exprs) > 20
    assert _check_expressions(promtool, exprs, tmp_path) == ""


def test_a_broken_expression_is_caught(promtool: str, tmp_path: Path) -> None:
    """The parse check above can fail: a missing parenthesis is reported."""
    assert "parse error" in _check_expressions(promtool, ["sum(rate(up[5m])"], tmp_path)
