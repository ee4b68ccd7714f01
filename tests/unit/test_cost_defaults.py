"""`vitalstream cost`'s shipped defaults: the issue's two targets, and the inputs behind them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from service.cli import main
from service.runtime.config import ConsumerSettings, LambdaArchive
from service.tools.cost.bill import bill
from service.tools.cost.data import PRICES_FILE, measured
from service.tools.cost.model import (
    LATEST_STATE_HEARTBEAT_S,
    Bill,
    Deployment,
    Ingest,
    Mode,
)

ROOT = Path(__file__).resolve().parents[2]
MONTH_S = 730 * 3600
PRICES = json.loads(PRICES_FILE.read_text())


def target(devices: int, **settings: object) -> Bill:
    """The issue's shape: 12 samples a message over Basic Ingest, consumer mode."""
    return bill(
        Deployment(
            devices,
            samples_per_message=12,
            ingest=Ingest.BASIC_INGEST,
            mode=Mode.CONSUMER,
            **settings,  # type: ignore[arg-type]
        )
    )


def test_10k_devices_cost_at_most_300_dollars_a_month_with_the_shipped_defaults() -> None:
    assert target(10_000).total <= 300


def test_10m_devices_cost_at_most_250k_dollars_a_month_with_the_shipped_defaults() -> None:
    assert target(10_000_000).total <= 250_000


def test_the_command_prices_the_same_bill_every_line_itemised(capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["--samples-per-message", "12", "--ingest", "basic-ingest", "--mode", "consumer", "--json"]
    assert main(["cost", "--devices", "10000", *flags]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["total_usd_per_month"] == pytest.approx(target(10_000).total, abs=0.01)
    assert len(result["lines"]) == len(target(10_000).lines)
    assert result["inputs"]["latest_state_interval_s"] == LATEST_STATE_HEARTBEAT_S


def test_the_heartbeat_is_the_runtimes_default_and_the_helm_charts() -> None:
    runtime_ms = ConsumerSettings.model_fields["latest_state_interval_ms"].default
    assert LATEST_STATE_HEARTBEAT_S == runtime_ms / 1000 == 600
    values = (ROOT / "helm" / "vitalstream" / "values.yaml").read_text()
    assert f"# latest_state_interval_ms: {runtime_ms} " in values
    assert "latest_state_interval_ms" not in (yaml.safe_load(values)["config"] or {})  # the default


def test_60_s_freshness_costs_the_device_state_writes_ten_times_over() -> None:
    shipped, fresh = target(10_000), target(10_000, latest_state_interval_s=60)

    def heartbeat(b: Bill) -> float:
        return next(li.usd_per_month for li in b.lines if li.item.startswith("device-state write units"))

    assert heartbeat(fresh) == pytest.approx(10 * heartbeat(shipped))
    assert heartbeat(shipped) == pytest.approx(10_000 / 600 * MONTH_S * PRICES["dynamodb"]["write_unit"])
    assert fresh.total > 300  # the targets need the heartbeat


def test_alerts_are_an_input_each_one_publish_and_four_item_writes() -> None:
    quiet, busy = target(10_000, alerts_per_device_day=0.0), target(10_000, alerts_per_device_day=2.0)
    alerts = 10_000 * 2.0 * 730 / 24
    sns = next(li for li in busy.lines if li.service == "sns")
    assert sns.quantity == pytest.approx(alerts)
    assert sns.item == "alert publishes (2 per device-day)"
    extra = busy.by_service()["dynamodb"] - quiet.by_service()["dynamodb"]
    assert extra == pytest.approx(4 * alerts * PRICES["dynamodb"]["write_unit"])
    # None takes the measured figures' rate (a demo report's), as the simulator's dense fleet had it
    measured_rate = target(10_000, alerts_per_device_day=None)
    per_sample = measured("consumer").per_sample("sns_publish")
    assert next(li for li in measured_rate.lines if li.service == "sns").quantity == pytest.approx(
        per_sample * 2_000 * MONTH_S
    )


def test_the_archive_is_priced_under_the_templates_lifecycle() -> None:
    template = (ROOT / "infra" / "template.yaml").read_text()
    for rule in (
        "TransitionInDays: 30",
        "TransitionInDays: 90",
        "ExpirationInDays: 365",
        "NoncurrentDays: 30",
    ):
        assert rule in template
    lines = {li.item: li for li in target(10_000_000).lines}
    gz_month_gb = (
        2_000_000 * MONTH_S * measured("consumer").per_sample("archive_bytes_gzip") / 1024**3
    )  # a month's archive
    ia = next(li for item, li in lines.items() if "Standard-IA, days" in item)
    assert ia.quantity == pytest.approx(gz_month_gb * 60 / (365 / 12))
    glacier = next(li for item, li in lines.items() if "Glacier Flexible Retrieval, days" in item)
    assert glacier.quantity > gz_month_gb * 305 / (365 / 12)  # plus the index of each object
    assert glacier.unit_price_usd == PRICES["s3"]["gb_month_glacier"]
    # a small object stays in Standard for its whole life (S3 does not transition objects under 128 KB)
    per_batch = Deployment(100, mode=Mode.LAMBDA, lambda_archive=LambdaArchive.PER_BATCH)
    small = {li.item: li for li in bill(per_batch).lines}
    kept = next(li for item, li in small.items() if item.startswith("archive storage"))
    assert "not transitioned" in kept.item
    assert not any("transitions" in item for item in small)


def test_consumer_vcpu_covers_the_measured_cpu_per_sample_not_just_the_pods() -> None:
    big = target(10_000_000)
    cores = 2_000_000 * measured("consumer").per_sample("cpu_seconds")
    vcpu = next(li for li in big.lines if li.item.startswith("consumer pods vCPU"))
    assert vcpu.quantity == pytest.approx(cores / 0.7 * 730)
    memory = next(li for li in big.lines if li.item.startswith("consumer pods memory"))
    assert memory.quantity == pytest.approx(2 * vcpu.quantity)  # Fargate's least: 2 GB per vCPU
