"""The Grafana dashboard for Lambda mode (``docs/grafana-dashboard-lambda.json``, CloudWatch data
source): every query reads the namespace, the dimension set and the metrics the shim's EMF lines
actually carry, and it covers the signals the consumer's dashboard shows."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from service.runtime import emf
from service.runtime.config import Settings
from service.runtime.invocation import Invocation, Mode, WindowFacts
from service.runtime.ports import Sink, SinkError
from tests.unit.test_emf import REQUESTS, mixed_event, run
from tests.unit.test_window import NOW_MS

DASHBOARD_FILE = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard-lambda.json"
SEARCH = re.compile(
    r"^SEARCH\('\{\$namespace,(?P<dimensions>[^}]*)\} service=\"\$service\" (?P<family>\w+) "
    r"NOT MetricName=\"(?P<excluded>\w+)\"', '(?P<statistic>\w+)', \$__period_auto\)$"
)
STATISTICS = re.compile(r"^(Sum|Average|Maximum|Minimum|SampleCount|p\d{1,2}(\.\d+)?)$")


def dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return board


def targets() -> list[tuple[str, dict[str, Any]]]:
    return [(panel["title"], target) for panel in dashboard()["panels"] for target in panel["targets"]]


def emitted() -> set[str]:
    """Every metric name the shim's EMF lines carry for a batch with records, rejects, an alert, a sink
    error, AWS requests and a window (the keyed ones this batch has)."""
    ran = run(mixed_event())
    error = SinkError(Sink.ALERTS, "Throttled", "topic", permanent=False)
    invocation = Invocation(
        Mode.WINDOW,
        ran.span,
        duration_ms=5,
        requests=REQUESTS,
        result=ran.result,
        errors=(error,),
        window=WindowFacts(1_000, 1, 1, 1, closed=True),
    )
    return {m.name for m in emf.invocation_metrics(invocation, NOW_MS)}


def test_the_variables_default_to_the_shims_namespace_and_service() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "cloudwatch")
    settings = Settings()
    assert variables["namespace"]["query"] == settings.metrics_namespace == "VitalStream"
    assert variables["service"]["query"] == settings.service_name


def test_every_panel_and_query_uses_the_datasource_variable() -> None:
    board = dashboard()
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "cloudwatch", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            assert target["region"] == "$region"


@pytest.mark.parametrize(
    ("title", "target"), targets(), ids=lambda t: t if isinstance(t, str) else t["refId"]
)
def test_every_query_names_a_metric_the_shim_emits(title: str, target: dict[str, Any]) -> None:
    names = emitted()
    assert STATISTICS.match(target["statistic"]), title
    if target["metricEditorMode"] == 0:  # the query builder: one metric
        assert target["namespace"] == "$namespace"
        assert target["metricName"] in names, f"{title}: {target['metricName']} is not emitted"
        assert set(target["dimensions"]) == set(emf.DIMENSIONS), title
        assert target["matchExact"] is True
        return
    search = SEARCH.match(target["expression"])  # a search expression: a family of keyed metrics
    assert search is not None, f"{title}: {target['expression']}"
    assert search["dimensions"].split(",") == sorted(emf.DIMENSIONS)  # CloudWatch's schema lists them sorted
    family = search["family"]
    assert family in emf.FAMILIES
    assert any(name.startswith(f"{family}_") for name in names), f"{title}: no {family}_* is emitted"
    assert search["excluded"] == family  # the family's total, when it has one, is not one of its keys
    assert search["statistic"] == target["statistic"]


def test_the_dashboard_covers_the_signals_of_the_consumers() -> None:
    queried = {t["metricName"] for _, t in targets() if t["metricName"]}
    families = {m["family"] for _, t in targets() if (m := SEARCH.match(t["expression"]))}
    assert {
        "Samples_processed",
        "Samples_rejected",
        "Samples_retried",
        "SinkLatency",
        "DetectionLatency",
    } <= queried
    assert {"WindowStateSize", "InvocationErrors", "LateSamples"} <= queried
    assert {"Alerts", "Rejects", "SinkErrors", "AwsRequests", "ItemWrites"} <= families
    percentiles = {t["statistic"] for _, t in targets() if t["metricName"] == "SinkLatency"}
    assert percentiles == {"p50", "p95", "p99"}
