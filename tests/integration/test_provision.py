"""``vitalstream provision`` against the emulator: every resource exists through its own API, the
parts an emulator's CloudFormation skips are there anyway, and a second run changes nothing.

MiniStack's event source mappings have no ``TumblingWindowInSeconds`` (``MINISTACK_GAPS``):
provisioning reports it in its warnings; the local ESM reads the template's own value.

On LocalStack two services cannot be had: IoT (not in its free tier: the API answers HTTP 501), which
provisioning reports in its warnings instead of failing, and Lambda functions, which LocalStack
creates only with a Docker engine of its own and runtime images from a registry (``LOCALSTACK_GAPS``):
there the stack is deployed without the function and the function's own test skips with the reason."""

from __future__ import annotations

import uuid
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest

from service.cli import main
from service.tools.packaging import MANIFEST_NAME, PackageManifest
from service.tools.provisioning import ProvisionError, provision_stack

pytestmark = pytest.mark.integration
REGION = "us-east-1"
LOCALSTACK_GAPS = {
    "iot": "LocalStack's free tier does not serve the IoT API (HTTP 501)",
    "lambda": (
        "LocalStack creates Lambda functions only with a Docker engine of its own and runtime images "
        "from an image registry; its container here has neither"
    ),
}


MINISTACK_GAPS = {"window": "MiniStack's event source mappings have no TumblingWindowInSeconds"}
# what each emulator's CloudFormation leaves out of the template, made up for through the service APIs
CLOUDFORMATION_SKIPS = {"moto": {"TelemetryTopicRule", "RawDeliveryStream"}, "ministack": set[str]()}


@pytest.fixture
def gaps(backend: str) -> dict[str, str]:
    """What the backend cannot do at all, with the reason."""
    return {"localstack": LOCALSTACK_GAPS, "ministack": MINISTACK_GAPS}.get(backend, {})


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


def snapshot(endpoint: str, prefix: str, outputs: dict[str, str], gaps: dict[str, str]) -> dict[str, Any]:
    """Every resource read back through its own service API (volatile fields dropped), except the
    services in ``gaps``."""
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
    history_ttl = dynamodb.describe_time_to_live(TableName=outputs["AlertHistoryTableName"])
    firehose = client("firehose").describe_delivery_stream(DeliveryStreamName=f"{prefix}-raw-archive")
    found: dict[str, Any] = {}
    if "iot" not in gaps:
        rule = client("iot").get_topic_rule(ruleName=f"{prefix.replace('-', '_')}_telemetry")["rule"]
        found["rule"] = (rule["sql"], rule["actions"], rule["errorAction"])
        found["device_policy"] = client("iot").get_policy(policyName=outputs["DevicePolicyName"])[
            "policyDocument"
        ]
    if "lambda" not in gaps:
        function = client("lambda").get_function(FunctionName=f"{prefix}-processor")["Configuration"]
        mappings = client("lambda").list_event_source_mappings(FunctionName=f"{prefix}-processor")
        found["function"] = (function["Handler"], function["Runtime"], function["Environment"])
        found["mappings"] = [
            {
                k: m.get(k)  # an endpoint without tumbling windows omits the key (gaps["window"])
                for k in (
                    "UUID",
                    "FunctionResponseTypes",
                    "BisectBatchOnFunctionError",
                    "DestinationConfig",
                    "TumblingWindowInSeconds",
                )
            }
            for m in mappings["EventSourceMappings"]
        ]
    return found | {
        "stream": (stream["StreamStatus"], stream["EncryptionType"], stream["OpenShardCount"]),
        "tables": tables,
        "history_ttl": history_ttl["TimeToLiveDescription"],
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
        "firehose": firehose["DeliveryStreamDescription"]["Destinations"][0][
            "ExtendedS3DestinationDescription"
        ],
    }


def test_provision_builds_every_resource_and_a_rerun_changes_nothing(
    aws_endpoint: str, lambda_zip: Path, gaps: dict[str, str], backend: str
) -> None:
    prefix = f"vs-{uuid.uuid4().hex[:8]}"
    params = {"NamePrefix": prefix, "EnableFirehose": "true"}
    package = None if "lambda" in gaps else lambda_zip
    first = provision_stack(prefix, endpoint_url=aws_endpoint, parameters=params, lambda_zip=package)
    assert first.stack == "created"
    skipped = {
        change.split(":")[0] for change in first.changes if "CFN skipped" in change or "skipped it" in change
    }
    unserved = {warning.split(":")[0] for warning in first.warnings if "does not serve" in warning}
    if "iot" in gaps:  # reported, not failed, and not counted as made up for
        assert unserved == {"DevicePolicy", "TelemetryTopicRule"}
        assert skipped <= {"RawDeliveryStream"}
    else:
        assert skipped == CLOUDFORMATION_SKIPS[backend]
        assert not unserved
    before = snapshot(aws_endpoint, prefix, first.outputs, gaps)
    assert before["stream"] == ("ACTIVE", "KMS", 1)
    assert {status for _, _, status in before["tables"].values()} == {"ENABLED"}
    assert before["history_ttl"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}
    assert set(before["public_access"].values()) == {True}
    assert before["dlq"] == {
        "SqsManagedSseEnabled": "true",
        "FifoQueue": "true",
        "DeduplicationScope": "messageGroup",
        "FifoThroughputLimit": "perMessageGroupId",
    }
    assert first.outputs["DeadLetterQueueUrl"].endswith(f"/{prefix}-dead-letter.fifo")
    if "iot" not in gaps:
        assert before["rule"][0] == "SELECT *, topic(2) AS topicDeviceId FROM 'wearables/+/telemetry'"
        assert before["rule"][1][0]["kinesis"]["partitionKey"] == "${topic(2)}"
        # devices publish by Basic Ingest to this very rule, each as itself (moto returns the document as
        # a Python repr, MiniStack as JSON: the resource is the same text in both)
        rule = first.outputs["TelemetryRuleName"]
        assert rule == f"{prefix.replace('-', '_')}_telemetry"
        basic_ingest = f":topic/$aws/rules/{rule}/wearables/${{iot:Connection.Thing.ThingName}}/telemetry"
        assert basic_ingest in str(before["device_policy"])
        assert ":topic/wearables/" not in str(before["device_policy"])
    if "lambda" not in gaps:
        assert before["mappings"][0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        if "window" in gaps:  # reported, not failed
            assert any("TumblingWindowInSeconds=120" in warning for warning in first.warnings)
        else:
            assert int(before["mappings"][0]["TumblingWindowInSeconds"]) == 120
        assert before["function"][2]["Variables"]["VITALSTREAM_STREAM_NAME"] == first.outputs["StreamName"]

    second = provision_stack(prefix, endpoint_url=aws_endpoint, parameters=params, lambda_zip=package)
    assert second.stack == "unchanged"
    assert second.changes == []
    assert not second.changed
    assert snapshot(aws_endpoint, prefix, second.outputs, gaps) == before
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


def test_a_packaged_zip_sets_the_function_architecture(
    aws_endpoint: str, tmp_path: Path, gaps: dict[str, str]
) -> None:
    if "lambda" in gaps:
        pytest.skip(gaps["lambda"])
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
