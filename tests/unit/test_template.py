"""Least privilege and the pipeline's safety settings, asserted on the parsed CloudFormation template."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from service.runtime.config import ConsumerSettings
from service.tools.provisioning.template import load_template

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


def of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {lid: spec["Properties"] for lid, spec in RESOURCES.items() if spec["Type"] == kind}


def policy_statements() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every permission statement of every IAM role and IoT policy (not trust policies)."""
    for lid, props in of_type("AWS::IAM::Role").items():
        for policy in props.get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                yield lid, statement
    for lid, props in of_type("AWS::IoT::Policy").items():
        for statement in props["PolicyDocument"]["Statement"]:
            yield lid, statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def references_own_resource(value: Any) -> bool:
    """A resource expression built from this stack's logical ids or its pseudo parameters."""
    if isinstance(value, dict):
        ((key, arg),) = value.items()
        if key == "Ref":
            return arg in RESOURCES
        if key == "Fn::GetAtt":
            return arg[0] in RESOURCES
        if key == "Fn::Sub":
            text = arg if isinstance(arg, str) else arg[0]
            own = any(f"${{{lid}." in text or f"${{{lid}}}" in text for lid in RESOURCES)
            account_scoped = "${AWS::AccountId}" in text and "${AWS::Region}" in text
            return own or account_scoped
        if key == "Fn::Join":  # scoped by its first part (a Sub or Ref), the rest literal text
            _, parts = arg
            return references_own_resource(parts[0]) and all(isinstance(p, str) for p in parts[1:])
    return False


def test_no_wildcard_action_anywhere() -> None:
    for lid, statement in policy_statements():
        for action in as_list(statement["Action"]):
            assert action != "*", f"{lid}: wildcard action"
            assert not action.endswith(":*"), f"{lid}: wildcard action {action}"


def test_no_wildcard_resource_and_every_resource_is_the_stacks_own() -> None:
    for lid, statement in policy_statements():
        for resource in as_list(statement["Resource"]):
            assert resource != "*", f"{lid}: Resource *"
            assert references_own_resource(resource), f"{lid}: {resource} is not one of the stack's resources"


def joined(value: dict[str, Any]) -> str:
    """A ``Fn::Join`` of a ``Fn::Sub`` prefix and literal parts, as one string (a Sub's variable map is
    substituted as ``${Name}`` left in place; see ``sub_variables``)."""
    separator, parts = value["Fn::Join"]
    return str(separator).join(sub_text(part) if isinstance(part, dict) else part for part in parts)


def sub_text(part: dict[str, Any]) -> str:
    sub = part["Fn::Sub"]
    return sub if isinstance(sub, str) else sub[0]


def sub_variables(value: dict[str, Any]) -> dict[str, Any]:
    """The variable map of the ``Fn::Sub`` that starts a ``Fn::Join`` (empty for a plain Sub)."""
    sub = value["Fn::Join"][1][0]["Fn::Sub"]
    return {} if isinstance(sub, str) else dict(sub[1])


def rule() -> dict[str, Any]:
    (props,) = of_type("AWS::IoT::TopicRule").values()
    return props


def test_iot_policy_binds_each_device_to_its_own_thing_name() -> None:
    (policy,) = of_type("AWS::IoT::Policy").values()
    statements = {s["Action"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert set(statements) == {"iot:Connect", "iot:Publish"}
    assert all(s["Effect"] == "Allow" for s in statements.values())
    # Fn::Join of a Sub prefix and the literal policy variable (not Sub's ${!...} escape)
    connect = joined(statements["iot:Connect"]["Resource"])
    assert connect.endswith(":client/${iot:Connection.Thing.ThingName}")
    assert connect.startswith("arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:")
    assert statements["iot:Connect"]["Condition"]["Bool"]["iot:Connection.Thing.IsAttached"] == "true"


def test_devices_may_publish_only_by_basic_ingest_to_the_rule_as_themselves() -> None:
    """Exactly one topic: the rule's Basic Ingest topic for the connection's own thing name. No plain
    ``wearables/...`` topic (the message broker, charged per message), no wildcard, no other rule."""
    (policy,) = of_type("AWS::IoT::Policy").values()
    (publish,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Action"] == "iot:Publish"]
    resource = publish["Resource"]
    assert joined(resource) == (
        "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:"
        "topic/$aws/rules/${RuleName}/wearables/${iot:Connection.Thing.ThingName}/telemetry"
    )
    # ${RuleName} is the rule's own name, by the same expression (the rule is not Ref'd: moto skips it)
    assert sub_variables(resource) == {"RuleName": rule()["RuleName"]}


def test_the_rule_name_resolves_as_aws_would_and_is_an_output() -> None:
    from service.tools.provisioning.template import Resolver  # noqa: PLC0415 - this test only

    resolver = Resolver(TEMPLATE, {"NamePrefix": "acme-prod-1"}, lambda *_: "")
    assert resolver.resolve(rule()["RuleName"]) == "acme_prod_1_telemetry"
    assert TEMPLATE["Outputs"]["TelemetryRuleName"]["Value"] == rule()["RuleName"]


def test_topic_rule_partitions_by_device_and_has_an_error_action() -> None:
    payload = rule()["TopicRulePayload"]
    # Basic Ingest hides its $aws/rules/<rule>/ prefix from topic(): topic(2) is the device id
    assert payload["Sql"] == "SELECT *, topic(2) AS topicDeviceId FROM 'wearables/+/telemetry'"
    (action,) = payload["Actions"]
    assert action["Kinesis"]["PartitionKey"] == "${topic(2)}"
    assert action["Kinesis"]["StreamName"] == {"Ref": "TelemetryStream"}
    assert payload["ErrorAction"]


def test_event_source_mapping_has_lambda_safety_settings() -> None:
    esm = RESOURCES["ProcessorEventSourceMapping"]["Properties"]
    assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert esm["BisectBatchOnFunctionError"] is True
    assert esm["StartingPosition"] == "TRIM_HORIZON"
    for key in (
        "MaximumRetryAttempts",
        "MaximumRecordAgeInSeconds",
        "ParallelizationFactor",
        "BatchSize",
        "TumblingWindowInSeconds",
    ):
        assert esm[key] == {"Ref": key}
    assert esm["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["BatchFailureQueue", "Arn"]
    }


def test_tumbling_windows_are_on_by_default_within_lambdas_range() -> None:
    window = TEMPLATE["Parameters"]["TumblingWindowInSeconds"]
    assert (window["MinValue"], window["MaxValue"]) == (0, 900)
    assert window["Default"] > 0
    budget = TEMPLATE["Parameters"]["WindowStateBudgetBytes"]
    assert budget["Default"] < budget["MaxValue"] == 1_048_576


def test_function_environment_uses_the_settings_names() -> None:
    from service.runtime.config import Settings  # noqa: PLC0415

    function = RESOURCES["ProcessorFunction"]["Properties"]
    assert function["Handler"] == "lambda_shim.handler.handler"
    assert function["Runtime"] in {"python3.11", "python3.12"}
    names = set(function["Environment"]["Variables"])
    assert all(name.startswith("VITALSTREAM_") for name in names)
    settings_fields = {f"VITALSTREAM_{field.upper()}" for field in Settings.model_fields}
    assert names <= settings_fields
    emulators = {"VITALSTREAM_ENDPOINT_URL", "VITALSTREAM_KINESIS_ENDPOINT_URL"}
    assert settings_fields - names <= {*emulators, "VITALSTREAM_DETECTION"}


@pytest.mark.parametrize("table", ["DeviceStateTable", "AlertHistoryTable", "LeaseTable"])
def test_tables_are_on_demand_with_pitr_and_encryption(table: str) -> None:
    props = RESOURCES[table]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True


def test_table_keys_match_the_adapters() -> None:
    keys = {
        lid: RESOURCES[lid]["Properties"]["KeySchema"][0]["AttributeName"]
        for lid in ("DeviceStateTable", "AlertHistoryTable", "LeaseTable")
    }
    assert keys == {"DeviceStateTable": "deviceId", "AlertHistoryTable": "alertId", "LeaseTable": "leaseKey"}


def test_archive_bucket_blocks_public_access_encrypts_and_ages_out() -> None:
    props = RESOURCES["ArchiveBucket"]["Properties"]
    assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    rules = {rule["Id"]: rule for rule in props["LifecycleConfiguration"]["Rules"]}
    assert set(rules) == {"archive-tiering", "shard-snapshots"}
    tiering = rules["archive-tiering"]
    assert [t["StorageClass"] for t in tiering["Transitions"]] == ["STANDARD_IA", "GLACIER"]
    assert tiering["ExpirationInDays"] > 0
    # shard snapshots live under the consumer's default prefix and expire within days
    snapshots = rules["shard-snapshots"]
    assert snapshots["Prefix"] == ConsumerSettings.model_fields["snapshot_prefix"].default
    assert 1 <= snapshots["ExpirationInDays"] <= 30


def test_stream_topic_and_queues_are_encrypted() -> None:
    stream = RESOURCES["TelemetryStream"]["Properties"]
    assert stream["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    assert RESOURCES["AlertTopic"]["Properties"]["KmsMasterKeyId"]
    for queue in of_type("AWS::SQS::Queue").values():
        assert queue["SqsManagedSseEnabled"] is True


def test_dead_letter_queue_is_fifo_deduplicated_per_shard_and_batch_failures_standard() -> None:
    dead_letters = RESOURCES["DeadLetterQueue"]["Properties"]
    assert dead_letters["QueueName"] == {"Fn::Sub": "${NamePrefix}-dead-letter.fifo"}
    assert dead_letters["FifoQueue"] is True
    assert dead_letters["DeduplicationScope"] == "messageGroup"
    assert dead_letters["FifoThroughputLimit"] == "perMessageGroupId"
    assert "ContentBasedDeduplication" not in dead_letters  # the adapter names each position itself
    failures = RESOURCES["BatchFailureQueue"]["Properties"]
    assert "FifoQueue" not in failures  # Lambda's on-failure destination cannot be a FIFO queue
    mapping = RESOURCES["ProcessorEventSourceMapping"]["Properties"]
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["BatchFailureQueue", "Arn"]
    }


def test_optional_parts_are_conditional() -> None:
    assert RESOURCES["RawDeliveryStream"]["Condition"] == "WithFirehose"
    assert RESOURCES["ProcessorFunction"]["Condition"] == "WithFunction"
    assert RESOURCES["ProcessorEventSourceMapping"]["Condition"] == "WithFunction"
    assert TEMPLATE["Conditions"]["IsOnDemand"] == {"Fn::Equals": [{"Ref": "StreamMode"}, "ON_DEMAND"]}
