"""``vitalstream demo`` end to end: emulator, stack, fleet, local serverless processing, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.cli import main
from service.core import KinesisRecord, decode_records

pytestmark = pytest.mark.integration


def _core_decodes_batches() -> bool:
    batch = (
        b'{"deviceId":"d-1","samples":[{"timestamp":"2026-11-28T00:00:00.000Z","heartRate":70,"steps":0},'
        b'{"timestamp":"2026-11-28T00:00:05.000Z","heartRate":71,"steps":0}]}'
    )
    return len(decode_records([KinesisRecord(batch, "shardId-0", "1", 0)]).samples) == 2


@pytest.mark.parametrize(
    "samples_per_message",
    [
        1,
        pytest.param(
            12,
            marks=pytest.mark.skipif(
                not _core_decodes_batches(), reason="the core decodes multi-sample messages (issue 24)"
            ),
        ),
    ],
)
def test_a_short_demo_loses_nothing_and_duplicates_no_effect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], samples_per_message: int
) -> None:
    report_path = tmp_path / "report.json"

    # 60 s is the shortest run with room for a sustained episode (30 s to raise, 40-50 s long).
    code = main(
        [
            "demo",
            "--devices",
            "40",
            "--duration",
            "60s",
            "--share",
            "0.1",
            "--samples-per-message",
            str(samples_per_message),
            "--report",
            str(report_path),
        ]
    )

    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, out
    live = [line for line in captured.err.splitlines() if " s  sent " in line]
    assert live, captured.err  # the live line, every 5 s when stderr is not a terminal
    assert "detection p50 " in live[-1]
    assert "calls/1K " in live[-1]
    report = json.loads(report_path.read_text())
    assert (report["lost"], report["duplicate_effects"]) == (0, 0)
    assert report["processed"] == report["sent"] - report["rejected"] - report["device_duplicates"]
    assert report["dynamodb_items"] == 40
    assert report["s3_objects"] > 0
    assert report["mode"] == "consumer"  # the default: replica processes sharing the shards by lease
    assert report["latency"]["count"] == report["processed"]  # every archived sample, from the consumers
    assert report["samples_per_message"] == samples_per_message
    assert report["messages"] * samples_per_message >= report["sent"]
    alerts = sum(row["alerts"] for row in report["alerts"].values())
    assert report["alert_messages"] == alerts > 0
    assert all(row["precision"] == 1.0 and row["recall"] == 1.0 for row in report["alerts"].values())
    assert report["alerts_during_runs"] == 0
    assert "lost 0, duplicate effects 0" in out

    # request accounting, scraped from the replicas: per 1,000 records sent
    calls, writes = report["calls_per_1k"], report["dynamodb_item_writes_per_1k"]
    assert report["aws_calls_per_1k"] == pytest.approx(sum(calls.values()), abs=1)
    for call in ("kinesis.GetRecords", "dynamodb.BatchGetItem", "dynamodb.UpdateItem", "s3.PutObject"):
        assert calls[call] > 0, call
    thousands = report["sent"] / 1000
    assert report["s3_puts_per_1k"] * thousands >= report["s3_objects"]  # one PUT at least per object
    assert sum(writes.values()) * thousands >= report["dynamodb_items"]  # every device item was written
    assert max(report["dynamodb_item_reads_per_1k"].values()) > 0
    cost = report["monthly_cost_usd"]
    assert cost["total"] == pytest.approx(sum(v for k, v in cost.items() if k != "total"), abs=0.1)
    assert cost["iot-core"] > 0  # all-in: the ingest the fleet pays for first
    assert cost["dynamodb"] > 0
    assert report["monthly_cost_usd_at_run_fleet"] < cost["total"]
    assert "AWS requests per 1K records" in out
    assert "at 10,000 devices" in out
    if samples_per_message == 1:  # a message per sample: IoT Core's messaging is most of the bill
        assert "biggest line at 10,000 devices: iot-core" in out


def test_a_short_lambda_demo_times_detection_and_counts_the_workers_requests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path = tmp_path / "report.json"
    args = ["demo", "--mode", "lambda", "--devices", "40", "--duration", "60s", "--share", "0.1"]
    code = main([*args, "--report", str(report_path)])

    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(report_path.read_text())
    assert (report["lost"], report["duplicate_effects"]) == (0, 0)
    assert report["mode"] == "lambda"
    alerts = sum(row["alerts"] for row in report["alerts"].values())
    assert report["alert_messages"] == alerts > 0
    # device time → the alert's arrival in the subscriber queue, every alert once
    assert report["detection_latency"]["count"] == alerts
    assert report["detection_latency"]["p50_ms"] > 0
    # counted in the shim's worker processes and read back from them
    calls = report["calls_per_1k"]
    for call in ("dynamodb.BatchGetItem", "dynamodb.UpdateItem", "s3.PutObject", "sns.Publish"):
        assert calls.get(call, 0) > 0, call
    assert "detection latency device → alert published" in out


def test_a_bad_flag_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--duration", "5s"]) == 2
    assert "--duration" in capsys.readouterr().err
