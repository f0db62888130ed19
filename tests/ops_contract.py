"""What the operations files (deploy/) may refer to, in one place, for the tests that check them.

The alert rules and the dashboard are written against the metric names of the interface
contract, and the deployment files against the ``anpr`` commands. Some of those are built on
other branches at the same time; until they are merged they are listed here as *pending*.
After a merge, tests fail for every pending entry the code now defines, naming it: delete that
entry, and from then on the code itself is the reference.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULES_DIR = PROMETHEUS_DIR / "rules"
DASHBOARD_DIR = REPO / "deploy" / "grafana"
RUNBOOK = REPO / "docs" / "runbook.md"

# Metric names of the contract (shared/DESIGN + the brief) that no code on this branch defines
# yet, with their type. Empty it as the work is merged.
PENDING_METRICS: dict[str, str] = {}

# Commands the deployment files run that the CLI on this branch does not have yet. Only the
# command words are checked for them, not their flags.
PENDING_COMMANDS: frozenset[tuple[str, ...]] = frozenset()

# Series that Prometheus and node_exporter make, not our code.
EXTERNAL_METRICS: dict[str, str] = {
    "up": "gauge",
    "ALERTS": "gauge",
    "node_textfile_scrape_error": "gauge",
}

# What a metric of each type exposes (prometheus-client 0.26, OpenMetrics off).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}
_METRIC_CLASSES = {
    "Counter": "counter",
    "Gauge": "gauge",
    "Histogram": "histogram",
    "BulkHistogram": "histogram",
    "Summary": "summary",
}


def series_names(name: str, kind: str) -> set[str]:
    """The sample names a metric called ``name`` of type ``kind`` exposes."""
    base = name.removesuffix("_total") if kind == "counter" else name
    return {base + suffix for suffix in _SUFFIXES[kind]}


def metric_definitions() -> Iterator[tuple[Path, str, str]]:
    """(file, name, kind) of every ``Counter("anpr_...", ...)`` and the like in the package.

    Reading the source by AST rather than instantiating classes finds the metrics of every
    stage, including ones merged later, without this module knowing their classes.
    """
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            cls = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            first = node.args[0]
            if (
                cls in _METRIC_CLASSES
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                yield path, first.value, _METRIC_CLASSES[cls]


def defined_metrics() -> dict[str, str]:
    """Every metric the package defines, name -> kind."""
    return {name: kind for _, name, kind in metric_definitions()}


def allowed_series() -> set[str]:
    """Sample names an expression may use: defined, pending, external, or a recording rule."""
    allowed: set[str] = set()
    for table in (defined_metrics(), PENDING_METRICS, EXTERNAL_METRICS):
        for name, kind in table.items():
            allowed |= series_names(name, kind)
    allowed |= {rule["record"] for rule in rules() if "record" in rule}
    return allowed


# --- PromQL, just enough to find metric names ---------------------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "atan2", "start", "end",
}  # fmt: skip


def metric_names_in(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions or keywords.

    ``sum by (job) (rate(anpr_x_total{a="b"}[5m])) > 0`` → ``{"anpr_x_total"}``.
    """
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call is None and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


# --- the files ---------------------------------------------------------------------------------


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def rules() -> list[dict[str, Any]]:
    """Every rule (alerting and recording) of every group in deploy/prometheus/rules."""
    out: list[dict[str, Any]] = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            out.extend(group["rules"])
    return out


def dashboards() -> list[Path]:
    return sorted(DASHBOARD_DIR.glob("*.json"))


# Grafana's own variables, replaced by typical values before an expression is parsed.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "6h",
}


def dashboard_expressions(path: Path) -> Iterator[tuple[str, str]]:
    """``(where, expr)`` for every query of a dashboard: panel targets and annotations."""
    board = json.loads(path.read_text(encoding="utf-8"))
    for annotation in board.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            yield f"annotation {annotation['name']!r}", annotation["expr"]
    for panel in _panels(board.get("panels", [])):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} target {target['refId']}", target["expr"]


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def expand_grafana_variables(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr
