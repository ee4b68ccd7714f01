"""`vitalstream cost`: the bill of a deployment from the price file and the measured figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from service.cli import main
from service.runtime.config import LambdaArchive
from service.tools.cost import docs
from service.tools.cost.bill import bill
from service.tools.cost.data import PRICES_FILE, Measured, measured, per_record_shares
from service.tools.cost.model import (
    SECONDS_PER_MONTH,
    SERVICES,
    Deployment,
    Ingest,
    Mode,
    archive_files_per_s,
    invocations_per_s,
)

ROOT = Path(__file__).resolve().parents[2]
MONTH_S = 730 * 3600
PRICES = json.loads(PRICES_FILE.read_text())
SEED = Deployment(10_000, samples_per_message=1, ingest=Ingest.IOT_CORE, mode=Mode.CONSUMER)


def cost_json(capsys: pytest.CaptureFixture[str], *flags: str) -> dict[str, object]:
    assert main(["cost", *flags, "--json"]) == 0
    out: dict[str, object] = json.loads(capsys.readouterr().out)
    return out


def usd(result: dict[str, object], service: str, contains: str = "") -> float:
    lines = result["lines"]
    assert isinstance(lines, list)
    return float(
        sum(
            line["usd_per_month"] for line in lines if line["service"] == service and contains in line["item"]
        )
    )


def test_the_seed_shape_priced_honestly(capsys: pytest.CaptureFixture[str]) -> None:
    result = cost_json(
        capsys,
        "--devices",
        "10000",
        "--samples-per-message",
        "1",
        "--ingest",
        "iot-core",
        "--mode",
        "consumer",
    )
    assert 4_300 <= usd(result, "iot-core", "messaging") <= 5_400
    assert isinstance(result["total_usd_per_month"], float)
    assert result["total_usd_per_month"] >= 5_000
    assert result["per_device_usd_per_month"] == pytest.approx(
        result["total_usd_per_month"] / 10_000, rel=1e-3
    )


def test_the_json_has_the_documented_schema(capsys: pytest.CaptureFixture[str]) -> None:
    result = cost_json(capsys, "--devices", "500", "--mode", "lambda", "--ingest", "basic-ingest")
    assert {"total_usd_per_month", "per_device_usd_per_month", "prices_as_of", "inputs", "lines"} <= set(
        result
    )
    assert result["prices_as_of"] == PRICES["as_of"]
    inputs = result["inputs"]
    assert isinstance(inputs, dict)
    assert inputs["devices"] == 500
    assert inputs["mode"] == "lambda"
    lines = result["lines"]
    assert isinstance(lines, list)
    for line in lines:
        assert set(line) == {"service", "item", "quantity", "unit", "unit_price_usd", "usd_per_month"}
        assert line["service"] in SERVICES
        assert line["usd_per_month"] == pytest.approx(line["quantity"] * line["unit_price_usd"], abs=0.006)
    assert sum(line["usd_per_month"] for line in lines) == pytest.approx(
        result["total_usd_per_month"], abs=0.1
    )


@pytest.mark.parametrize(
    ("mode", "ingest", "services"),
    [
        (Mode.CONSUMER, Ingest.IOT_CORE, {"iot-core", "kinesis", "compute", "dynamodb", "s3", "sns", "sqs"}),
        (
            Mode.LAMBDA,
            Ingest.IOT_CORE,
            {"iot-core", "kinesis", "lambda", "cloudwatch", "dynamodb", "s3", "sns", "sqs"},
        ),
        (Mode.CONSUMER, Ingest.BRIDGE, {"kinesis", "compute", "dynamodb", "s3", "sns", "sqs"}),
    ],
)
def test_each_mode_lists_every_service_it_uses(mode: Mode, ingest: Ingest, services: set[str]) -> None:
    result = bill(Deployment(10_000, mode=mode, ingest=ingest))
    assert {line.service for line in result.lines} == services
    # every service it lists costs something (a measured "other" line may be 0: the model explains it)
    assert all(total > 0 for total in result.by_service().values()), result.by_service()


def test_three_lines_recomputed_by_hand_from_the_price_file() -> None:
    lines = {line.item: line for line in bill(SEED).lines}
    iot, kinesis, ddb = PRICES["iot-core"], PRICES["kinesis"], PRICES["dynamodb"]
    # connectivity: 10K devices x 60 x 730 minutes
    assert lines["connectivity"].usd_per_month == pytest.approx(10_000 * 60 * 730 * iot["connection_minute"])
    # messaging: 2,000 messages/s (one 200-byte sample each, one 5 KB unit) over the volume tiers
    messages = 10_000 / 5 * MONTH_S
    (first, p1), (second, p2), (_, p3) = iot["message_tiers"]
    by_hand = first * p1 + second * p2 + (messages - first - second) * p3
    assert sum(line.usd_per_month for item, line in lines.items() if "messaging" in item) == pytest.approx(
        by_hand
    )
    # shards: 2,000 records/s / 1,000 x 1.25 headroom = 2.5 -> 3 shards, 730 hours
    shard_line = next(line for item, line in lines.items() if item.startswith("shard-hours"))
    assert shard_line.usd_per_month == pytest.approx(3 * 730 * kinesis["shard_hour"])
    # device-state writes: every device once per 10 min heartbeat, one write unit each
    state = next(line for item, line in lines.items() if item.startswith("device-state write units"))
    assert state.usd_per_month == pytest.approx(10_000 / 600 * MONTH_S * ddb["write_unit"])


def test_a_multi_sample_message_is_one_iot_message_and_one_kinesis_record() -> None:
    one, twelve = bill(SEED), bill(Deployment(10_000, samples_per_message=12))
    messages = 10_000 / (5 * 12) * MONTH_S  # samples / 12
    puts = [next(li for li in b.lines if li.item.startswith("PUT payload")) for b in (one, twelve)]
    assert puts[1].quantity == pytest.approx(messages)
    assert puts[1].quantity == pytest.approx(puts[0].quantity / 12)
    rules = [next(li for li in b.lines if li.item.startswith("rules triggered")) for b in (one, twelve)]
    assert rules[1].quantity == pytest.approx(messages)
    messaging = [sum(li.quantity for li in b.lines if "messaging" in li.item) for b in (one, twelve)]
    assert messaging[1] == pytest.approx(messaging[0] / 12)
    # per-sample lines stay per sample: the archive's bytes, our CPU
    archive = [next(li for li in b.lines if "Standard-IA, days" in li.item) for b in (one, twelve)]
    assert archive[1].quantity == pytest.approx(archive[0].quantity)
    cpu = [next(li for li in b.lines if li.item.startswith("consumer pods vCPU")) for b in (one, twelve)]
    assert cpu[1].quantity == pytest.approx(cpu[0].quantity)


def test_basic_ingest_drops_messaging_and_keeps_rules() -> None:
    items = {line.item for line in bill(Deployment(10_000, ingest=Ingest.BASIC_INGEST)).lines}
    assert not any("messaging" in item for item in items)
    assert any(item.startswith("rules triggered") for item in items)


def batched(n: int) -> Deployment:
    return Deployment(1_000, samples_per_message=n, ingest=Ingest.BASIC_INGEST)


def test_a_batch_is_the_contracts_envelope_around_samples_without_their_device_id() -> None:
    sample = measured("consumer").sample_bytes
    envelope = '{"deviceId":"wearable-000001","samples":[]}'
    without_id = sample - len('"deviceId":"wearable-000001",')
    assert batched(1).message_bytes(sample) == sample
    assert batched(12).message_bytes(sample) == len(envelope) + 12 * without_id + 11
    assert 1_400 < batched(12).message_bytes(sample) < 1_600  # ≈ 1.5 KB
    # IoT Core meters the topic too; the rule's topicDeviceId goes into the Kinesis record
    topic = "$aws/rules/vitalstream_telemetry/wearables/wearable-000001/telemetry"
    assert batched(12).metered_bytes(sample) == batched(12).message_bytes(sample) + len(topic)
    added = ',"topicDeviceId":"wearable-000001"'
    assert batched(12).record_bytes(sample) == batched(12).message_bytes(sample) + len(added)


@pytest.mark.parametrize(
    ("n", "iot_steps", "kinesis_units"),
    [
        (12, 1, 1),  # ≈ 1.5 KB
        (42, 1, 1),  # the most measured samples in one 5 KB step with the Basic Ingest topic
        (43, 2, 1),  # one more crosses 5 KB
        (216, 5, 1),  # just under 25 KB of record
        (217, 6, 2),  # just over
    ],
)
def test_iot_core_meters_5_kb_steps_and_kinesis_25_kb_units(
    n: int, iot_steps: int, kinesis_units: int
) -> None:
    sample = measured("consumer").sample_bytes
    d = batched(n)
    assert math.ceil(d.metered_bytes(sample) / 5120) == iot_steps
    assert math.ceil(d.record_bytes(sample) / 25600) == kinesis_units
    messages = 1_000 / (5 * n) * MONTH_S
    by_item = {line.item: line for line in bill(d).lines}
    assert by_item["rules triggered (5 KB steps)"].quantity == pytest.approx(messages * iot_steps)
    assert by_item["actions executed (Kinesis, 5 KB steps)"].quantity == pytest.approx(messages * iot_steps)
    assert by_item["PUT payload units (25 KB)"].quantity == pytest.approx(messages * kinesis_units)


def test_shards_follow_bytes_when_records_are_big() -> None:
    sample = measured("consumer").sample_bytes
    d = Deployment(10_000_000, samples_per_message=12, ingest=Ingest.BASIC_INGEST)
    by_records = d.messages_per_s / 1000
    by_bytes = d.messages_per_s * d.record_bytes(sample) / 1_048_576
    assert by_bytes > by_records
    shard_line = next(li for li in bill(d).lines if li.item.startswith("shard-hours"))
    assert shard_line.quantity == math.ceil(by_bytes * 1.25) * 730


def test_settings_move_the_bill() -> None:
    base = bill(SEED)
    fresher = bill(Deployment(10_000, latest_state_interval_s=60))
    assert fresher.by_service()["dynamodb"] > base.by_service()["dynamodb"]
    efo = bill(Deployment(10_000, efo=True, retention_hours=7 * 24 + 24))
    assert {"enhanced fan-out data retrieved", "long-term retention (beyond 7 days)"} <= {
        li.item for li in efo.lines
    }
    eventual = bill(Deployment(10_000_000, lease_scan_strong=False))
    scans = [
        next(li for li in b.lines if "Scans" in li.item) for b in (bill(Deployment(10_000_000)), eventual)
    ]
    assert scans[1].usd_per_month == pytest.approx(scans[0].usd_per_month / 2)


def test_on_demand_is_shown_and_not_added() -> None:
    result = bill(SEED)
    assert result.alternatives
    assert result.total == pytest.approx(sum(line.usd_per_month for line in result.lines))


def test_a_demo_report_is_priced_from_its_own_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = {
        "devices": 2_000,
        "duration_s": 246.0,
        "mode": "consumer",
        "calls_per_1k": {"s3.PutObject": 1.0, "sns.Publish": 4.9, "sqs.SendMessageBatch": 0.9},
        "dynamodb_item_writes_per_1k": {"vitalstream-device-state": 200.0, "vitalstream-leases": 197.5},
        "dynamodb_item_reads_per_1k": {"vitalstream-device-state": 20.8},
    }
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(report))
    result = cost_json(capsys, "--from-report", str(path))
    assert isinstance(result["inputs"], dict)
    assert result["inputs"]["devices"] == 2_000
    figures = Measured.from_report(report, measured("consumer"))
    assert figures.per_1k["dynamodb_write_units"] == 200.0
    assert figures.per_1k["s3_put"] == 1.0
    # the run's archive files and one snapshot each are modelled per second, not priced per record
    with_files = Measured.from_report({**report, "sent": 40_000, "s3_objects": 10}, measured("consumer"))
    assert with_files.per_1k["s3_put"] == pytest.approx(1.0 - 2 * 1000 * 10 / 40_000)
    assert Measured.from_report({**report, "sent": 40_000, "s3_objects": 10}, measured("lambda")).per_1k[
        "s3_put"
    ] == pytest.approx(1.0)
    # the 83.3 per 1K the measurement's 60 s interval explains, and 4 writes per alert of the run's
    # 4.9 alerts per 1K, are modelled apart
    samples = 2_000 / 5 * MONTH_S
    by_hand = (200.0 - 1000 * 5 / 60 - 4 * 4.9) / 1000 * samples * PRICES["dynamodb"]["write_unit"]
    assert usd(result, "dynamodb", "other write") == pytest.approx(by_hand, abs=0.01)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--devices", "0"], "--devices"),
        (["--devices", "ten"], "--devices"),
        (["--devices", "10", "--mode", "batch"], "--mode"),
        (["--devices", "10", "--ingest", "mqtt"], "--ingest"),
        (["--devices", "10", "--sample-period", "soon"], "--sample-period"),
        (["--devices", "10", "--shard-headroom", "0.5"], "--shard-headroom"),
        (["--devices", "10", "--lambda-memory", "64"], "--lambda-memory"),
        (["--devices", "10", "--alerts-per-device-day", "-1"], "--alerts-per-device-day"),
        ([], "--devices"),
        (["--from-report", "/nonexistent/demo.json"], "--from-report"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    flags: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cost", *flags]) == 2
    assert named in capsys.readouterr().err


def test_the_table_says_what_is_not_in_the_total(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--devices", "10000"]) == 0
    out = capsys.readouterr().out
    assert "not in the total" in out
    assert "iot-core" in out


def test_docs_cost_md_holds_what_the_calculator_generates() -> None:
    text = (ROOT / "docs" / "cost.md").read_text()
    assert docs.section(text) == docs.generated(), "run: .venv/bin/vitalstream cost --docs docs/cost.md"
    assert "$205" in docs.generated()


def test_a_lambda_runs_one_more_window_per_device_is_taken_out_of_its_state_units() -> None:
    # 300 devices over 240 s of 120 s windows touch about 3 windows each (the last one's handoff
    # counted as the writes it owes); the reference explains 2; each device was read once, at first
    # sight, and then handed on from window to window
    setup = {"records": 15_000, "devices": 300, "duration_s": 240, "window_s": 120, "batch_size": 500}
    raw = {"dynamodb_write_units": 65.0, "dynamodb_read_units": 21.0, "s3_put": 40.0}
    shares = per_record_shares(raw, setup)
    assert shares["dynamodb_write_units"] == pytest.approx(65.0 - 20.0)
    assert shares["dynamodb_read_units"] == pytest.approx(21.0 - 20.0)
    assert shares["s3_put"] == 40.0  # one object per invocation: it follows records, no cuts by age


@pytest.mark.parametrize(
    ("devices", "shards", "per_shard_per_s"),
    [
        (2, 1, 0.4),  # a record every 2.5 s: one invocation a record
        (100, 1, 1.0),  # 20 records/s: the batching window (1 s) decides
        (10_000, 2, 2.0),  # 1,000 records/s a shard: full batches of 500
    ],
)
def test_lambda_invocations_follow_the_mappings_batching_not_a_short_runs_batches(
    devices: int, shards: int, per_shard_per_s: float
) -> None:
    d = Deployment(devices, mode=Mode.LAMBDA, lambda_archive=LambdaArchive.PER_BATCH)
    finals = shards / d.window_s
    assert invocations_per_s(d, shards) == pytest.approx(shards * per_shard_per_s + finals)
    lines = {line.item: line for line in bill(d).lines}
    requests = next(line for item, line in lines.items() if item.startswith("requests"))
    puts = lines["archive object PUTs (one per invocation, batches modelled)"]
    assert requests.quantity == puts.quantity  # one archive object per invocation


@pytest.mark.parametrize(
    ("devices", "shards", "files_per_shard_per_s"),
    [
        (10, 1, 1 / 300),  # a quiet fleet: a file every batching window (300 s)
        (10_000, 2, 1_000 / 10_000),  # 1,000 records/s a shard: full batches of 10,000
    ],
)
def test_lambda_archive_files_follow_the_archive_mapping_not_the_detection_invocations(
    devices: int, shards: int, files_per_shard_per_s: float
) -> None:
    d = Deployment(devices, mode=Mode.LAMBDA)
    assert d.lambda_archive is LambdaArchive.FILES
    cuts = shards / d.archive_window_s
    assert archive_files_per_s(d, shards, 300) == pytest.approx(shards * files_per_shard_per_s + cuts)
    if devices > 1_000:  # big records fill the 6 MB payload before the batch size
        assert archive_files_per_s(d, shards, 3_000) > archive_files_per_s(d, shards, 300)
    lines = {line.item: line for line in bill(d).lines}
    puts = next(line for item, line in lines.items() if item.startswith("archive file PUTs"))
    archive = next(line for item, line in lines.items() if item.startswith("archive function requests"))
    assert archive.quantity > puts.quantity  # and each window's final invocation, which writes nothing
    requests = next(line for item, line in lines.items() if item.startswith("requests"))
    assert puts.quantity < requests.quantity  # files no longer follow the detection invocations


@pytest.mark.parametrize(("devices", "handed_on"), [(50, False), (10_000, True)])
def test_a_lambda_fleet_larger_than_a_close_writes_pays_handoffs_and_no_window_reads(
    devices: int, handed_on: bool
) -> None:
    d = Deployment(devices, mode=Mode.LAMBDA)
    lines = {line.item: line for line in bill(d).lines}
    reads = next(line for item, line in lines.items() if item.startswith("device-state read units"))
    handoffs = [line for item, line in lines.items() if item.startswith("window handoff")]
    writes = next(line for item, line in lines.items() if item.startswith("device-state write units"))
    assert writes.quantity == pytest.approx(devices / d.window_s * SECONDS_PER_MONTH)  # once a window
    if handed_on:
        assert reads.quantity == 0
        puts, gets = handoffs
        assert puts.quantity == 2 * gets.quantity  # a PUT and a LIST for each GET
        assert gets.quantity < writes.quantity / 100  # one object per shard instead of its devices' reads
    else:
        assert reads.quantity == pytest.approx(devices / d.window_s * SECONDS_PER_MONTH)
        assert handoffs == []
