"""Every Grafana dashboard query and every alert rule expression, run by a real Prometheus that scrapes
running consumer replicas (the Debian package's ``prometheus`` binary, on 127.0.0.1).

Two ``vitalstream consume`` replicas share a 2-shard stream; the traffic holds valid samples, poison
records (dead-letter series) and one device at 30 bpm for over a minute of event time (a bradycardia
alert, so ``vitalstream_alerts_total`` has a series). Then each dashboard query must return data. An
alert expression is empty while nothing is wrong, so for a rule the full expression must evaluate
without error and every metric it reads must return data.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from service.tools.emulators import free_port
from tests.integration.conftest import AwsStack
from tests.integration.consumer_rig import ConsumerRig, wait_for
from tests.observability import Query, dashboard_queries, for_prometheus, metric_names, rule_queries
from tests.tools import require_tool

if TYPE_CHECKING:
    from mypy_boto3_kinesis.type_defs import PutRecordsRequestEntryTypeDef

pytestmark = pytest.mark.integration

SCRAPE_INTERVAL = "1s"
RATE_INTERVAL = "1m"  # what $__rate_interval becomes: many scrapes at 1 s, so rate() has points
JOB = "vitalstream"
NAMESPACE = "vitalstream-it"
QUERY_TIMEOUT_S = 60.0


class Prometheus:
    """A running Prometheus: ``query(expr)`` is the HTTP API's instant query."""

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> dict[str, Any]:
        params = urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/query?{params}", timeout=10) as response:
                body: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as error:  # 400/422: a bad expression; the body says why
            body = json.load(error)
        return body

    def result(self, expr: str) -> list[dict[str, Any]]:
        body = self.query(expr)
        assert body["status"] == "success", f"{expr}: {body.get('errorType')}: {body.get('error')}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


StartPrometheus = Callable[[Mapping[str, int]], Prometheus]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[StartPrometheus]:
    """``prometheus({worker_id: metrics_port})``: a Prometheus scraping those replicas every second,
    each target labelled ``pod`` (its worker id), ``namespace`` and ``job`` (``instance`` is the
    target's address), as the dashboard and rules group by them; stopped after the test."""
    binary = require_tool("prometheus", "prometheus")
    processes: list[subprocess.Popen[bytes]] = []

    def start(targets: Mapping[str, int]) -> Prometheus:
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "scrape_timeout": SCRAPE_INTERVAL,
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{port}"], "labels": {"pod": pod, "namespace": NAMESPACE}}
                        for pod, port in targets.items()
                    ],
                }
            ],
        }
        config_file = tmp_path / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        port = free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                "--storage.tsdb.retention.time=1h",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        processes.append(process)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited {process.returncode}: see {tmp_path}/prometheus.log")
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_for(ready, 60, "prometheus /-/ready")
        return Prometheus(url)

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture
def rig(aws: AwsStack, kinesis_endpoint: str, tmp_path: Path) -> Iterator[ConsumerRig]:
    made = ConsumerRig(aws, kinesis_endpoint, 2, tmp_path / "rig")
    yield made
    made.close()


def put_bradycardia(rig: ConsumerRig, device: str, samples: int = 16, step_ms: int = 5_000) -> None:
    """One device at 30 bpm for ``(samples - 1) * step_ms`` of event time, ending now: one alert."""
    now = int(time.time() * 1000)
    entries: list[PutRecordsRequestEntryTypeDef] = []
    for seq in range(1, samples + 1):
        at_ms = now - (samples - seq) * step_ms
        stamp = datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        body = {"deviceId": device, "timestamp": stamp, "heartRate": 30, "steps": 0, "spo2": 97, "seq": seq}
        entries.append({"Data": json.dumps(body).encode(), "PartitionKey": device})
    response = rig.kinesis.put_records(StreamName=rig.stream, Records=entries)
    assert response.get("FailedRecordCount", 0) == 0


def has_data(prom: Prometheus, expr: str) -> bool:
    return bool(prom.result(expr))


def wait_for_data(prom: Prometheus, query: Query, exprs: list[str]) -> list[str]:
    """Poll until every expression returns data; the ones still empty at the deadline."""
    empty = list(exprs)
    deadline = time.monotonic() + QUERY_TIMEOUT_S
    while True:
        empty = [expr for expr in empty if not has_data(prom, expr)]
        if not empty or time.monotonic() > deadline:
            return [f"{query.source} / {query.title}: {expr}" for expr in empty]
        time.sleep(1)


def test_every_dashboard_query_and_rule_expression_returns_data_from_a_real_scrape(
    rig: ConsumerRig, prometheus: StartPrometheus
) -> None:
    started = time.monotonic()
    replicas = rig.replicas.start(2)
    rig.replicas.wait_ready()
    prom = prometheus({r.worker_id: r.port for r in replicas})
    wait_for(
        lambda: len([s for s in prom.result(f'up{{job="{JOB}"}}') if s["value"][1] == "1"]) == 2,
        60,
        "prometheus to scrape both replicas",
    )

    feed = rig.feed(devices=10, rate=10)
    feed.put(50, poison=5)
    put_bradycardia(rig, "brady-0001")
    feed.start()  # traffic keeps flowing while the queries run, so rate() over it is above zero
    try:
        for name, expr in (
            ("processed records", 'vitalstream_records_total{outcome="processed"} > 0'),
            ("a dead letter", "vitalstream_dead_letters_total > 0"),
            ("a bradycardia alert", "vitalstream_alerts_total > 0"),
        ):
            wait_for(partial(has_data, prom, expr), 90, f"{name} in a scrape", poll_s=1.0)

        failures: list[str] = []
        proven: dict[str, list[str]] = {"dashboard": [], "rules": []}
        for query in dashboard_queries():
            expr = for_prometheus(query.expr, RATE_INTERVAL)
            missing = wait_for_data(prom, query, [expr])
            failures += missing
            if not missing:
                values = [s["value"][1] for s in prom.result(expr)]
                proven["dashboard"].append(f"{query.title}: {len(values)} series, e.g. {values[0]}")
        for query in rule_queries():
            expr = for_prometheus(query.expr, RATE_INTERVAL)
            prom.result(expr)  # the whole expression is valid PromQL that evaluates (empty when calm)
            selectors = sorted(f'{name}{{job="{JOB}"}}' for name in metric_names(expr))
            assert selectors, f"{query.title}: no metric in {expr}"
            missing = wait_for_data(prom, query, selectors)
            failures += missing
            if not missing:
                proven["rules"].append(f"{query.title}: {', '.join(sorted(metric_names(expr)))}")
    finally:
        feed.stop()

    took = time.monotonic() - started
    print(f"\n[prometheus-scrape] took={took:.0f}s dashboard={len(proven['dashboard'])} rules=", end="")
    print(len(proven["rules"]))
    for source, lines in proven.items():
        for line in lines:
            print(f"  {source}: {line}")
    assert failures == [], "queries without data:\n" + "\n".join(failures)
    quantiles = [
        prom.result(for_prometheus(q.expr, RATE_INTERVAL))
        for q in dashboard_queries()
        if "histogram_quantile" in q.expr
    ]
    assert all(not math.isnan(float(s["value"][1])) for result in quantiles for s in result), quantiles
