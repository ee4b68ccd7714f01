"""The chart's observability artefacts as data: every PromQL expression of the Grafana dashboard and
of the alert rules, the metric names an expression reads, and the names the consumer exports.

Tests that check the expressions statically (metric names, promtool) and tests that run them against
a real Prometheus scraping a running consumer load them from here, so both see the same list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART_DIR = ROOT / "helm" / "vitalstream"
DASHBOARD_FILE = CHART_DIR / "dashboards" / "vitalstream.json"
DOCS_DASHBOARD_FILE = ROOT / "docs" / "grafana-dashboard.json"
RULES_FILE = CHART_DIR / "rules" / "vitalstream-rules.yaml"

# Grafana's interval variables, and what a test against Prometheus substitutes for them.
GRAFANA_INTERVALS = ("$__rate_interval", "$__interval", "$__range")


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL expression: ``source`` is ``dashboard`` or ``rules``; ``title`` names the panel
    (with the target's refId) or the alert."""

    source: str
    title: str
    expr: str


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return loaded


def rule_groups() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULES_FILE.read_text())
    return loaded


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # rows nest their panels


def dashboard_queries() -> Iterator[Query]:
    for panel in _panels(dashboard()["panels"]):
        for target in panel.get("targets", []):
            yield Query("dashboard", f"{panel['title']} [{target['refId']}]", target["expr"])


def rule_queries() -> Iterator[Query]:
    for group in rule_groups()["groups"]:
        for rule in group["rules"]:
            yield Query("rules", rule.get("alert") or rule["record"], rule["expr"])


def all_queries() -> list[Query]:
    return [*dashboard_queries(), *rule_queries()]


def for_prometheus(expr: str, interval: str = "1m") -> str:
    """The expression as Prometheus itself accepts it: Grafana's interval variables replaced."""
    for variable in GRAFANA_INTERVALS:
        expr = expr.replace(variable, interval)
    return expr


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"}
    | {"offset", "inf", "nan", "atan2"}
)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: identifiers that are not functions, aggregations,
    keywords, label names (matchers, ``by``/``on`` lists) or parts of durations and numbers."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        word, called = match.group(1), match.group(2)
        if called or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


def exported_metric_names() -> set[str]:
    """Sample names the consumer exposes, from its metrics module: counters as ``_total``, histograms
    as ``_bucket``/``_sum``/``_count``, gauges as they are (``_created`` series are left out)."""
    from service.runtime.consumer.metrics import ConsumerMetrics  # noqa: PLC0415 - only callers need the service

    names: set[str] = set()
    for family in ConsumerMetrics().registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names
