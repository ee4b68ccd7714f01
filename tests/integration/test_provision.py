"""``vitalstream provision`` against the emulator: every resource exists through its own API, the
parts moto's CloudFormation skips are there anyway, and a second run changes nothing."""

from __future__ import annotations

import uuid
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest

from service.cli import main
from service.packaging import MANIFEST_NAME, PackageManifest
from service.provisioning import ProvisionError, provision_stack

pytestmark = pytest.mark.integration
REGION = "us-east-1"


@pytest.fixture(autouse=True)
def emulator_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


@pytest.fixture
def lambda_zip(tmp_path: Path) -> Path:
    package = tmp_path / "function.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("lambda_shim/__init__.py", "")
    return package


def snapshot(endpoint: str, prefix: str, outputs: dict[str, str]) -> dict[str, Any]:
    """Every resource read back through its own service API (volatile fields dropped)."""
    session = boto3.Session(region_name=REGION)

    def client(name: str) -> Any:
        return session.client(name, endpoint_url=endpoint)  # type: ignore[call-overload]

    kinesis, dynamodb, s3 = client("kinesis"), client("dynamodb"), client("s3")
    bucket = outputs["ArchiveBucketName"]
    stream = kinesis.describe_stream_summary(StreamName=outputs["StreamName"])["StreamDescriptionSummary"]
    tables = {}
    for key in ("DeviceStateTableName", "AlertHistoryTableName", "LeaseTableName"):
        table = dynamodb.describe_table(TableName=outputs[key])["Table"]
        pitr = dynamodb.describe_continuous_backups(TableName=outputs[key])["ContinuousBackupsDescription"]
        tables[key] = (
            table["KeySchema"],
            table["BillingModeSummary"]["BillingMode"],
            pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"],
        )
    rule = client("iot").get_topic_rule(ruleName=f"{prefix.replace('-', '_')}_telemetry")["rule"]
    firehose = client("firehose").describe_delivery_stream(DeliveryStreamName=f"{prefix}-raw-archive")
    function = client("lambda").get_function(FunctionName=f"{prefix}-processor")["Configuration"]
    mappings = client("lambda").list_event_source_mappings(FunctionName=f"{prefix}-processor")
    return {
        "stream": (stream["StreamStatus"], stream["EncryptionType"], stream["OpenShardCount"]),
        "tables": tables,
        "encryption": s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"],
        "public_access": s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"],
        "lifecycle": s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"],
        "versioning": s3.get_bucket_versioning(Bucket=bucket)["Status"],
        "topic_kms": client("sns").get_topic_attributes(TopicArn=outputs["AlertTopicArn"])["Attributes"][
            "KmsMasterKeyId"
        ],
        "dlq": client("sqs").get_queue_attributes(
            QueueUrl=outputs["DeadLetterQueueUrl"],
            AttributeNames=["SqsManagedSseEnabled", "FifoQueue", "DeduplicationScope", "FifoThroughputLimit"],
        )["Attributes"],
        "device_policy": client("iot").get_policy(policyName=outputs["DevicePolicyName"])["policyDocument"],
        "rule": (rule["sql"], rule["actions"], rule["errorAction"]),
        "firehose": firehose["DeliveryStreamDescription"]["Destinations"][0][
            "ExtendedS3DestinationDescription"
        ],
        "function": (function["Handler"], function["Runtime"], function["Environment"]),
        "mappings": [
            {
                k: m[k]
                for k in (
                    "UUID",
                    "FunctionResponseTypes",
                    "BisectBatchOnFunctionError",
                    "DestinationConfig",
                    "TumblingWindowInSeconds",
                )
            }
            for m in mappings["EventSourceMappings"]
        ],
    }


def test_provision_builds_every_resource_and_a_rerun_changes_nothing(
    aws_endpoint: str, lambda_zip: Path
) -> None:
    prefix = f"vs-{uuid.uuid4().hex[:8]}"
    params = {"NamePrefix": prefix, "EnableFirehose": "true"}
    first = provision_stack(prefix, endpoint_url=aws_endpoint, parameters=params, lambda_zip=lambda_zip)
    assert first.stack == "created"
    skipped = {
        change.split(":")[0] for change in first.changes if "CFN skipped" in change or "skipped it" in change
    }
    assert skipped == {"TelemetryTopicRule", "RawDeliveryStream"}
    before = snapshot(aws_endpoint, prefix, first.outputs)
    assert before["stream"] == ("ACTIVE", "KMS", 1)
    assert {status for _, _, status in before["tables"].values()} == {"ENABLED"}
    assert set(before["public_access"].values()) == {True}
    assert before["dlq"] == {
        "SqsManagedSseEnabled": "true",
        "FifoQueue": "true",
        "DeduplicationScope": "messageGroup",
        "FifoThroughputLimit": "perMessageGroupId",
    }
    assert first.outputs["DeadLetterQueueUrl"].endswith(f"/{prefix}-dead-letter.fifo")
    assert before["rule"][0] == "SELECT *, topic(2) AS topicDeviceId FROM 'wearables/+/telemetry'"
    assert before["rule"][1][0]["kinesis"]["partitionKey"] == "${topic(2)}"
    assert before["mappings"][0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert int(before["mappings"][0]["TumblingWindowInSeconds"]) == 120
    assert before["function"][2]["Variables"]["VITALSTREAM_STREAM_NAME"] == first.outputs["StreamName"]

    second = provision_stack(prefix, endpoint_url=aws_endpoint, parameters=params, lambda_zip=lambda_zip)
    assert second.stack == "unchanged"
    assert second.changes == []
    assert not second.changed
    assert snapshot(aws_endpoint, prefix, second.outputs) == before
    assert second.environment == first.environment


def test_cli_prints_outputs_and_environment(aws_endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = f"vs-{uuid.uuid4().hex[:8]}"
    argv = [
        "provision",
        "--endpoint-url",
        aws_endpoint,
        "--stack-name",
        prefix,
        "--param",
        f"NamePrefix={prefix}",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"export VITALSTREAM_STREAM_NAME={prefix}-telemetry" in out
    assert f"export VITALSTREAM_ENDPOINT_URL={aws_endpoint}" in out
    assert main(argv) == 0
    assert "no changes" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"ShardCount": "0"}, "ShardCount"),
        ({"StreamMode": "FAST"}, "StreamMode"),
        ({"ShardCout": "2"}, "ShardCout"),
    ],
)
def test_bad_parameter_is_named(aws_endpoint: str, params: dict[str, str], named: str) -> None:
    with pytest.raises(ProvisionError, match=named):
        provision_stack(f"vs-{uuid.uuid4().hex[:8]}", endpoint_url=aws_endpoint, parameters=params)


def packaged_zip(path: Path, manifest: PackageManifest) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("lambda_shim/__init__.py", "")
        archive.writestr(MANIFEST_NAME, manifest.to_json())
    return path


def test_a_packaged_zip_sets_the_function_architecture(aws_endpoint: str, tmp_path: Path) -> None:
    package = packaged_zip(tmp_path / "arm.zip", PackageManifest(runtime="python3.12", architecture="arm64"))
    prefix = f"vs-{uuid.uuid4().hex[:8]}"

    result = provision_stack(
        prefix, endpoint_url=aws_endpoint, parameters={"NamePrefix": prefix}, lambda_zip=package
    )

    cloudformation = boto3.client("cloudformation", region_name=REGION, endpoint_url=aws_endpoint)
    (stack,) = cloudformation.describe_stacks(StackName=prefix)["Stacks"]
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert parameters["Architecture"] == "arm64"
    function = boto3.client("lambda", region_name=REGION, endpoint_url=aws_endpoint).get_function(
        FunctionName=f"{prefix}-processor"
    )
    # moto ignores Architectures altogether: then provisioning says so instead of passing silently
    assert function["Configuration"]["Architectures"] == ["arm64"] or any(
        "architecture arm64" in warning for warning in result.warnings
    )


@pytest.mark.parametrize(
    ("manifest", "params", "named"),
    [
        (PackageManifest(runtime="python3.11", architecture="x86_64"), {}, "python3.11"),
        (PackageManifest(runtime="python3.12", architecture="arm64"), {"Architecture": "x86_64"}, "arm64"),
        (PackageManifest(runtime="python3.12", architecture="x86_64", handler="app.main"), {}, "app.main"),
    ],
    ids=["other-python", "other-architecture", "other-handler"],
)
def test_a_package_built_for_another_target_is_refused(
    aws_endpoint: str, tmp_path: Path, manifest: PackageManifest, params: dict[str, str], named: str
) -> None:
    package = packaged_zip(tmp_path / "function.zip", manifest)
    prefix = f"vs-{uuid.uuid4().hex[:8]}"

    with pytest.raises(ProvisionError, match=named):
        provision_stack(
            prefix, endpoint_url=aws_endpoint, parameters={"NamePrefix": prefix, **params}, lambda_zip=package
        )
