"""The Grafana dashboard and the alert rules: valid for Prometheus, reading only metrics the consumer
exports, and the alerts fire (and stay quiet) as they claim, checked with promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability import (
    DASHBOARD_FILE,
    DOCS_DASHBOARD_FILE,
    RULES_FILE,
    all_queries,
    dashboard,
    dashboard_queries,
    exported_metric_names,
    for_prometheus,
    metric_names,
    rule_groups,
    rule_queries,
)
from tests.tools import require_tool

ALERTS = {
    "VitalStreamReplicaNotReady",
    "VitalStreamFallingBehind",
    "VitalStreamNoProgress",
    "VitalStreamSinkErrors",
    "VitalStreamSinkPermanentError",
    "VitalStreamDeadLetterGrowth",
    "VitalStreamLeaseImbalance",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool", "prometheus")


def run_promtool(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def test_docs_dashboard_is_the_charts_dashboard() -> None:
    assert DOCS_DASHBOARD_FILE.read_bytes() == DASHBOARD_FILE.read_bytes(), (
        "docs/grafana-dashboard.json must be a copy of helm/vitalstream/dashboards/vitalstream.json"
    )


def test_dashboard_has_a_datasource_variable_that_every_query_uses() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_covers_the_consumers_signals() -> None:
    exprs = {q.title: q.expr for q in dashboard_queries()}
    joined = "\n".join(exprs.values())
    for quantile in ("0.5", "0.95", "0.99"):
        assert (
            f"histogram_quantile({quantile}, sum by (le) (rate(vitalstream_event_to_sink_seconds_bucket"
            in joined
        )
    assert "sum by (outcome) (rate(vitalstream_records_total" in joined
    assert "by (shard_id) (vitalstream_millis_behind_latest)" in joined
    assert "vitalstream_leases_held" in joined
    for metric, label in (
        ("vitalstream_alerts_total", "type"),
        ("vitalstream_dead_letters_total", "reason"),
        ("vitalstream_sink_errors_total", "sink"),
        ("vitalstream_throttles_total", "api"),
    ):
        assert f"sum by ({label}) (rate({metric}" in joined


def test_rules_file_has_the_documented_alerts() -> None:
    names = {q.title for q in rule_queries()}
    assert names >= ALERTS


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (
            "sum by (outcome) (rate(vitalstream_records_total[$__rate_interval]))",
            {"vitalstream_records_total"},
        ),
        (
            'sum(rate(a_total{outcome!="x",b=~"y|z"}[5m] offset 1h)) / on (job) group_left sum(b_count)',
            {"a_total", "b_count"},
        ),
        ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[1m])))", {"x_bucket"}),
        ("max(x) by (shard_id) - min without (pod) (y) > 1e3 and up == bool 1", {"x", "y", "up"}),
    ],
)
def test_metric_names_parser(expr: str, expected: set[str]) -> None:
    assert metric_names(expr) == expected


def test_every_expression_reads_only_metrics_the_consumer_exports() -> None:
    exported = exported_metric_names()
    assert "vitalstream_records_total" in exported
    assert "vitalstream_event_to_sink_seconds_bucket" in exported
    queries = all_queries()
    assert len(queries) >= 15
    for query in queries:
        names = metric_names(query.expr)
        assert names, f"{query.source} {query.title}: no metric in {query.expr!r}"
        unknown = names - exported
        assert not unknown, (
            f"{query.source} {query.title}: {sorted(unknown)} not in service/runtime/consumer/metrics.py"
        )


def test_promtool_check_rules(promtool: str) -> None:
    result = run_promtool(promtool, "check", "rules", RULES_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_dashboard_queries_parse_as_promql(promtool: str, tmp_path: Path) -> None:
    # promtool checks PromQL only inside rule files: each panel query becomes a recording rule
    rules = [
        {"record": f"vitalstream_dashboard_query_{n}", "expr": for_prometheus(q.expr)}
        for n, q in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool(promtool, "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- alert behaviour: promtool test rules on synthetic series ----------------------------------------

SERIES = 'namespace="telemetry",job="vitalstream"'


def series(metric: str, labels: str, values: str) -> dict[str, str]:
    return {"series": f"{metric}{{{SERIES}{',' if labels else ''}{labels}}}", "values": values}


def alert(name: str, at: str, *labels: dict[str, str]) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": name,
        "exp_alerts": [
            {"exp_labels": {"namespace": "telemetry", "job": "vitalstream", **extra}} for extra in labels
        ],
    }


ALERT_CASES: dict[str, dict[str, Any]] = {
    "falling behind after 5 minutes above a minute": {
        "input_series": [series("vitalstream_millis_behind_latest", 'shard_id="shardId-0"', "90000x20")],
        "alert_rule_test": [
            alert("VitalStreamFallingBehind", "4m"),
            alert("VitalStreamFallingBehind", "6m", {"severity": "warning"}),
        ],
    },
    "not falling behind below the threshold": {
        "input_series": [series("vitalstream_millis_behind_latest", 'shard_id="shardId-0"', "30000x20")],
        "alert_rule_test": [alert("VitalStreamFallingBehind", "10m")],
    },
    "no progress: only retries while behind": {
        "input_series": [
            series("vitalstream_records_total", 'outcome="processed"', "100x30"),
            series("vitalstream_records_total", 'outcome="retried"', "0+50x30"),
            series("vitalstream_millis_behind_latest", 'shard_id="shardId-0"', "5000x30"),
        ],
        "alert_rule_test": [alert("VitalStreamNoProgress", "20m", {"severity": "critical"})],
    },
    "progress while behind is not a stall": {
        "input_series": [
            series("vitalstream_records_total", 'outcome="processed"', "0+100x30"),
            series("vitalstream_millis_behind_latest", 'shard_id="shardId-0"', "5000x30"),
        ],
        "alert_rule_test": [alert("VitalStreamNoProgress", "20m")],
    },
    "idle at the tip is not a stall": {
        "input_series": [
            series("vitalstream_records_total", 'outcome="processed"', "100x30"),
            series("vitalstream_millis_behind_latest", 'shard_id="shardId-0"', "0x30"),
        ],
        "alert_rule_test": [alert("VitalStreamNoProgress", "20m")],
    },
    "sink errors in a tenth of batches": {
        "input_series": [
            series("vitalstream_sink_errors_total", 'sink="archive",code="SlowDown"', "0+6x30"),
            series("vitalstream_sink_errors_total", 'sink="alerts",code="Throttled"', "0x30"),
            series("vitalstream_batch_seconds_count", "", "0+60x30"),
        ],
        "alert_rule_test": [
            alert("VitalStreamSinkErrors", "20m", {"sink": "archive", "severity": "warning"})
        ],
    },
    "a permanent sink error outstanding for 2 minutes": {
        "input_series": [
            series("vitalstream_sink_permanent_errors", 'sink="archive",instance="10.0.0.1:9400"', "0 1x10"),
            series("vitalstream_sink_permanent_errors", 'sink="alerts",instance="10.0.0.1:9400"', "0x10"),
        ],
        "alert_rule_test": [
            alert("VitalStreamSinkPermanentError", "2m"),
            alert("VitalStreamSinkPermanentError", "4m", {"sink": "archive", "severity": "critical"}),
        ],
    },
    "a permanent sink error that cleared": {
        "input_series": [
            series(
                "vitalstream_sink_permanent_errors", 'sink="archive",instance="10.0.0.1:9400"', "0 1 0x10"
            ),
        ],
        "alert_rule_test": [alert("VitalStreamSinkPermanentError", "5m")],
    },
    "dead letters above one percent": {
        "input_series": [
            series("vitalstream_dead_letters_total", 'reason="INVALID_JSON"', "0+5x40"),
            series("vitalstream_records_total", 'outcome="processed"', "0+100x40"),
        ],
        "alert_rule_test": [alert("VitalStreamDeadLetterGrowth", "35m", {"severity": "warning"})],
    },
    "a few dead letters are not growth": {
        "input_series": [
            series("vitalstream_dead_letters_total", 'reason="INVALID_JSON"', "0+0.5x40"),
            series("vitalstream_records_total", 'outcome="processed"', "0+100x40"),
        ],
        "alert_rule_test": [alert("VitalStreamDeadLetterGrowth", "35m")],
    },
    "leases 3 and 1 across replicas": {
        "input_series": [
            series("vitalstream_leases_held", 'instance="10.0.0.1:9400"', "3x20"),
            series("vitalstream_leases_held", 'instance="10.0.0.2:9400"', "1x20"),
        ],
        "alert_rule_test": [
            alert("VitalStreamLeaseImbalance", "9m"),
            alert("VitalStreamLeaseImbalance", "11m", {"severity": "info"}),
        ],
    },
    "a replica not ready for 10 minutes": {
        "input_series": [
            series("vitalstream_ready", 'instance="10.0.0.1:9400"', "1x20"),
            series("vitalstream_ready", 'instance="10.0.0.2:9400"', "0x20"),
        ],
        "alert_rule_test": [
            alert("VitalStreamReplicaNotReady", "5m"),
            alert("VitalStreamReplicaNotReady", "11m", {"instance": "10.0.0.2:9400", "severity": "warning"}),
        ],
    },
    "leases 2 and 1 are balanced enough": {
        "input_series": [
            series("vitalstream_leases_held", 'instance="10.0.0.1:9400"', "2x20"),
            series("vitalstream_leases_held", 'instance="10.0.0.2:9400"', "1x20"),
        ],
        "alert_rule_test": [alert("VitalStreamLeaseImbalance", "15m")],
    },
}


@pytest.mark.parametrize("case", list(ALERT_CASES), ids=list(ALERT_CASES))
def test_alert_fires_as_documented(promtool: str, tmp_path: Path, case: str) -> None:
    # annotations are templates promtool would compare verbatim: test the rules without them
    groups = rule_groups()
    for group in groups["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(groups))
    spec = {
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", **ALERT_CASES[case]}],
    }
    test_file = tmp_path / "test.yaml"
    test_file.write_text(yaml.safe_dump(spec))
    result = run_promtool(promtool, "test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_case_where_it_fires() -> None:
    fired = {
        check["alertname"]
        for case in ALERT_CASES.values()
        for check in case["alert_rule_test"]
        if check["exp_alerts"]
    }
    assert fired == {q.title for q in rule_queries()}
