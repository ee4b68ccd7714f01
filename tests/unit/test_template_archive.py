"""The archive role in the template: its own function, role and mapping, least privilege, and the
processor told to archive nothing when it is deployed."""

from __future__ import annotations

from typing import Any

from service.runtime.config import LambdaArchive, Settings
from service.tools.provisioning.template import load_template

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
PARAMETERS: dict[str, Any] = TEMPLATE["Parameters"]


def props(logical_id: str) -> dict[str, Any]:
    return dict(RESOURCES[logical_id]["Properties"])


def test_files_is_the_default_and_the_processor_is_told() -> None:
    archive = PARAMETERS["LambdaArchive"]
    assert archive["Default"] == LambdaArchive.FILES.value
    assert set(archive["AllowedValues"]) == {mode.value for mode in LambdaArchive}
    variables = props("ProcessorFunction")["Environment"]["Variables"]
    assert variables["VITALSTREAM_LAMBDA_ARCHIVE"] == {"Ref": "LambdaArchive"}


def test_the_archive_function_and_its_mapping_exist_only_in_files_mode() -> None:
    condition = TEMPLATE["Conditions"]["WithArchiveFunction"]
    assert condition == {
        "Fn::And": [{"Condition": "WithFunction"}, {"Fn::Equals": [{"Ref": "LambdaArchive"}, "files"]}]
    }
    for lid in ("ArchiverRole", "ArchiverFunction", "ArchiverEventSourceMapping", "ArchiverLogGroup"):
        assert RESOURCES[lid]["Condition"] == "WithArchiveFunction", lid


def test_the_archive_function_runs_the_archive_handler_with_only_its_settings() -> None:
    function = props("ArchiverFunction")
    assert function["Handler"] == "lambda_shim.archive_handler.handler"
    assert function["Role"] == {"Fn::GetAtt": ["ArchiverRole", "Arn"]}
    names = set(function["Environment"]["Variables"])
    assert names <= {f"VITALSTREAM_{name.upper()}" for name in Settings.model_fields}
    assert "VITALSTREAM_ARCHIVE_BUCKET" in names
    assert not {"VITALSTREAM_DEVICE_STATE_TABLE", "VITALSTREAM_ALERT_TOPIC_ARN"} & names


def test_the_archive_role_reads_the_stream_and_writes_only_archive_objects() -> None:
    (policy,) = props("ArchiverRole")["Policies"]
    actions = {
        action: statement["Resource"]
        for statement in policy["PolicyDocument"]["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    }
    services = {action.split(":")[0] for action in actions}
    assert services == {"kinesis", "logs", "s3", "sqs"}
    assert {a for a in actions if a.startswith("s3:")} == {"s3:GetObject", "s3:PutObject"}
    assert actions["s3:PutObject"] == {"Fn::Sub": "${ArchiveBucket.Arn}/${ArchivePrefix}*"}
    assert actions["sqs:SendMessage"] == {"Fn::GetAtt": ["BatchFailureQueue", "Arn"]}
    assert all(
        resource == {"Fn::GetAtt": ["TelemetryStream", "Arn"]}
        for a, resource in actions.items()
        if a.startswith("kinesis:")
    )


def test_the_archive_mapping_batches_long_never_gives_up_and_carries_its_mark_in_a_window() -> None:
    mapping = props("ArchiverEventSourceMapping")
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["TelemetryStream", "Arn"]}
    assert mapping["BatchSize"] == {"Ref": "ArchiveBatchSize"}
    assert mapping["MaximumBatchingWindowInSeconds"] == {"Ref": "ArchiveBatchingWindowInSeconds"}
    assert mapping["TumblingWindowInSeconds"] == {"Ref": "ArchiveTumblingWindowInSeconds"}
    assert (mapping["MaximumRetryAttempts"], mapping["MaximumRecordAgeInSeconds"]) == (-1, -1)
    assert mapping["ParallelizationFactor"] == 1
    assert mapping["BisectBatchOnFunctionError"] is False
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert PARAMETERS["ArchiveBatchSize"]["Default"] == PARAMETERS["ArchiveBatchSize"]["MaxValue"] == 10_000
    window = PARAMETERS["ArchiveBatchingWindowInSeconds"]
    assert window["Default"] == window["MaxValue"] == 300
    assert PARAMETERS["ArchiveTumblingWindowInSeconds"]["MinValue"] >= 1


def test_the_detection_mapping_keeps_its_short_window_and_its_tumbling_window() -> None:
    mapping = props("ProcessorEventSourceMapping")
    assert mapping["TumblingWindowInSeconds"] == {"Ref": "TumblingWindowInSeconds"}
    assert PARAMETERS["MaximumBatchingWindowInSeconds"]["Default"] <= 1


def test_the_local_event_source_mapping_runs_the_archive_mapping_as_the_template_sets_it() -> None:
    from service.tools.esm import EsmConfig  # noqa: PLC0415
    from service.tools.serverless import archive_mapping_config  # noqa: PLC0415

    assert archive_mapping_config() == EsmConfig(
        batch_size=10_000,
        batching_window_s=300.0,
        max_retry_attempts=-1,
        max_record_age_s=-1,
        bisect_on_error=False,
        tumbling_window_s=900,
    )
    assert archive_mapping_config({"ArchiveBatchingWindowInSeconds": "30"}).batching_window_s == 30.0
