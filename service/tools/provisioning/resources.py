"""Checks every stack resource through its own service API, and makes up for what an emulator's
CloudFormation leaves out.

Two kinds of gap are handled, each reported as a change so nothing is hidden:

- *skipped resources* (moto's CloudFormation ignores ``AWS::IoT::TopicRule`` and
  ``AWS::KinesisFirehose::DeliveryStream``): created through the service API from the template's own
  properties, or replaced when they differ;
- *skipped properties* (moto ignores Kinesis ``StreamEncryption``, DynamoDB point-in-time recovery and
  ``SSESpecification``, S3 public-access block, lifecycle and versioning, Lambda ``Architectures``;
  MiniStack ignores the SNS topic's ``KmsMasterKeyId`` and the mapping's ``TumblingWindowInSeconds``):
  applied through the API.

An endpoint that does not serve a service's API at all (HTTP 501: LocalStack's free tier has no IoT)
cannot be made up for: its resources are reported in ``warnings``, with that reason, not failed.

Each step first reads the current state and only writes when it differs, so a second run changes
nothing. On real AWS CloudFormation applies everything and these steps only verify.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from service.tools.provisioning.template import Resolver

NOT_IMPLEMENTED = 501


class VerificationError(RuntimeError):
    """A resource is missing or misconfigured; the message names its logical id and type."""


@dataclass
class Reconciler:
    """Runs the per-type check for each wanted resource. ``client(name)`` returns a boto3 client."""

    client: Callable[[str], Any]
    resolver: Resolver
    template: dict[str, Any]
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def run(self, logical_ids: list[str]) -> None:
        """Verify (and where needed create or complete) each resource, in template order."""
        for logical_id in logical_ids:
            spec = self.template["Resources"][logical_id]
            check = _CHECKS.get(spec["Type"])
            if check is None:
                continue
            props = self.resolver.resolve(spec.get("Properties", {}))
            try:
                check(self, logical_id, props)
            except ClientError as exc:
                error = exc.response.get("Error", {})
                raise VerificationError(
                    f"{logical_id} ({spec['Type']}): {error.get('Code')}: {error.get('Message')}"
                ) from exc

    def _changed(self, logical_id: str, what: str) -> None:
        self.changes.append(f"{logical_id}: {what}")

    def _fail(self, logical_id: str, problem: str) -> None:
        kind = self.template["Resources"][logical_id]["Type"]
        raise VerificationError(f"{logical_id} ({kind}): {problem}")


STREAM_ACTIVE_POLLS = 120  # seconds a stream may stay UPDATING before provisioning gives up


def _kinesis_stream(r: Reconciler, logical_id: str, props: dict[str, Any]) -> None:
    kinesis = r.client("kinesis")
    summary = kinesis.describe_stream_summary(StreamName=props["Name"])["StreamDescriptionSummary"]
    if summary["StreamStatus"] not in ("ACTIVE", "UPDATING"):
        r._fail(logical_id, f"stream status {summary['StreamStatus']}")
    wanted = props.get("StreamEncryption")
    updating = summary["StreamStatus"] == "UPDATING"
    if wanted and summary.get("EncryptionType") != wanted["EncryptionType"]:
        kinesis.start_stream_encryption(
            StreamName=props["Name"], EncryptionType=wanted["EncryptionType"], KeyId=wanted["KeyId"]
        )
        r._changed(logical_id, "server-side encryption started through the Kinesis API")
        updating = True
    if updating:  # e.g. encryption being applied: the stack is usable once the stream is ACTIVE again
        kinesis.get_waiter("stream_exists").wait(
            StreamName=props["Name"], WaiterConfig={"Delay": 1, "MaxAttempts": STREAM_ACTIVE_POLLS}
        )


def _dynamodb_table(r: Reconciler, logical_id: str, props: dict[str, Any]) -> None:
    dynamodb, name = r.client("dynamodb"), props["TableName"]
    table = dynamodb.describe_table(TableName=name)["Table"]
    keys = [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]]
    if keys != [(k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]]:
        r._fail(logical_id, f"key schema {keys} differs from the template")
    if table.get("BillingModeSummary", {}).get("BillingMode") != props.get("BillingMode"):
        r._fail(logical_id, f"billing mode is not {props.get('BillingMode')}")
    if props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
        backups = dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
        if backups.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus") != "ENABLED":
            dynamodb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
            r._changed(logical_id, "point-in-time recovery enabled through the DynamoDB API")
    _time_to_live(r, logical_id, name, props.get("TimeToLiveSpecification"))
    if props.get("SSESpecification", {}).get("SSEEnabled") and not _table_kms_encrypted(table):
        dynamodb.update_table(TableName=name, SSESpecification={"Enabled": True, "SSEType": "KMS"})
        if _table_kms_encrypted(dynamodb.describe_table(TableName=name)["Table"]):
            r._changed(logical_id, "KMS server-side encryption enabled through the DynamoDB API")
        else:
            # moto ignores SSESpecification from CloudFormation (it reads "Enabled", the template
            # says "SSEEnabled") and in UpdateTable. DynamoDB always encrypts at rest; this only
            # concerns the KMS key kind, so it is reported rather than failed.
            r.warnings.append(f"{logical_id}: endpoint does not report KMS encryption for table {name}")


def _time_to_live(r: Reconciler, logical_id: str, name: str, wanted: dict[str, Any] | None) -> None:
    """The table's TTL as the template says: enabled on its attribute (applied through the API when
    the endpoint's CloudFormation skipped it), or off when the template has none enabled."""
    if not wanted or not wanted.get("Enabled"):
        return
    dynamodb, attribute = r.client("dynamodb"), wanted["AttributeName"]
    ttl = dynamodb.describe_time_to_live(TableName=name).get("TimeToLiveDescription", {})
    status = ttl.get("TimeToLiveStatus", "DISABLED")
    if status in ("ENABLED", "ENABLING") and ttl.get("AttributeName") == attribute:
        return
    if status in ("ENABLED", "ENABLING"):  # on another attribute: DynamoDB turns it off first
        r._fail(
            logical_id, f"time to live is on {ttl.get('AttributeName')!r}, the template says {attribute!r}"
        )
    dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"AttributeName": attribute, "Enabled": True}
    )
    r._changed(logical_id, f"time to live on {attribute} enabled through the DynamoDB API")


def _table_kms_encrypted(table: dict[str, Any]) -> bool:
    return table.get("SSEDescription", {}).get("Status") in ("ENABLED", "ENABLING", "UPDATING")


def _s3_bucket(r: Reconciler, logical_id: str, props: dict[str, Any]) -> None:
    s3, bucket = r.client("s3"), props["BucketName"]
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    if not rules:
        r._fail(logical_id, "no default encryption")
    block = props.get("PublicAccessBlockConfiguration")
    if block:
        try:
            current = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchPublicAccessBlockConfiguration":
                raise
            current = {}
        if current != block:
            s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=block)
            r._changed(logical_id, "public access block applied through the S3 API")
    versioning = props.get("VersioningConfiguration")
    if versioning and s3.get_bucket_versioning(Bucket=bucket).get("Status") != versioning["Status"]:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": versioning["Status"]})
        r._changed(logical_id, f"versioning {versioning['Status']} through the S3 API")
    lifecycle = props.get("LifecycleConfiguration")
    if lifecycle:
        wanted = [_lifecycle_rule(rule) for rule in lifecycle["Rules"]]
        try:
            current_rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
                raise
            current_rules = []
        if sorted(rule.get("ID", "") for rule in current_rules) != sorted(rule["ID"] for rule in wanted):
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": wanted})
            r._changed(logical_id, "lifecycle rules applied through the S3 API")


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the S3 API's shape (the fields the template uses)."""
    api: dict[str, Any] = {
        "ID": rule["Id"],
        "Status": rule["Status"],
        "Filter": {"Prefix": rule.get("Prefix", "")},
    }
    if "Transitions" in rule:
        api["Transitions"] = [
            {"Days": int(t["TransitionInDays"]), "StorageClass": t["StorageClass"]}
            for t in rule["Transitions"]
        ]
    if "ExpirationInDays" in rule:
        api["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "NoncurrentVersionExpiration" in rule:
        days = int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
        api["NoncurrentVersionExpiration"] = {"NoncurrentDays": days}
    return api


def _sns_topic(r: Reconciler, logical_id: str, props: dict[str, Any]) -> None:
    sns, arn, key = r.client("sns"), r.resolver.refs[logical_id], props.get("KmsMasterKeyId")
    if not key or sns.get_topic_attributes(TopicArn=arn)["Attributes"].get("KmsMasterKeyId") == key:
        return
    sns.set_topic_attributes(TopicArn=arn, AttributeName="KmsMasterKeyId", AttributeValue=key)
    if sns.get_topic_attributes(TopicArn=arn)["Attributes"].get("KmsMasterKeyId") != key:
        r._fail(logical_id, f"topic not encrypted with {key}")
    r._changed(logical_id, f"encryption with {key} set through the SNS API")


def _sqs_queue(r: Reconciler, logical_id: str, props: dict[str, Any]) -> None:
    sqs, url = r.client("sqs"), r.resolver.refs[logical_id]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    if props.get("SqsManagedSseEnabled") and attributes.get("SqsManagedSseEnabled") != "true":
        r._fail(logical_id, "SQS-managed server-side encryption is off")
    if not props.get("FifoQueue"):
        return
    if attributes.get("FifoQueue") != "true":
        r._fail(logical_id, "not a FIFO queue (a queue's type is fixed when it is created)")
    wanted = {name: str(props[name]) for name in _FIFO_SETTABLE if name in props}
    differ = {name: value for name, value in wanted.items() if attributes.get(name) != value}
    if differ:
        sqs.set_queue_attributes(QueueUrl=url, Attributes=differ)
        r._changed(logical_id, f"{', '.join(sorted(differ))} set through the SQS API")


_FIFO_SETTABLE = ("DeduplicationScope", "FifoThroughputLimit")  # FifoQueue itself cannot change


def _not_served(exc: ClientError) -> bool:
    """The endpoint does not implement this API (HTTP 501 Not Implemented)."""
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)) == NOT_IMPLEMENTED


def _unserved(r: Reconciler, logical_id: str, what: str) -> None:
    r.warnings.append(
        f"{logical_id}: the endpoint does not serve the IoT API (HTTP 501), so {what} is neither "
        "verified nor created: devices cannot publish through IoT Core there"
    )


def _iot_policy(r: Reconciler, logical_id: str, props: dict[str, Any]) -> None:
    try:
        r.client("iot").get_policy(policyName=props["PolicyName"])
    except ClientError as exc:
        if not _not_served(exc):
            raise
        _unserved(r, logical_id, f"device policy {props['PolicyName']}")


def _iam_role(r: Reconciler, logical_id: str, props: dict[str, Any]) -> None:
    r.client("iam").get_role(RoleName=props["RoleName"])


def _log_group(r: Reconciler, logical_id: str, props: dict[str, Any]) -> None:
    groups = r.client("logs").describe_log_groups(logGroupNamePrefix=props["LogGroupName"])["logGroups"]
    if not any(g["logGroupName"] == props["LogGroupName"] for g in groups):
        r._fail(logical_id, f"log group {props['LogGroupName']} not found")


def _lambda_function(r: Reconciler, logical_id: str, props: dict[str, Any]) -> None:
    config = r.client("lambda").get_function(FunctionName=props["FunctionName"])["Configuration"]
    if config.get("Handler") != props["Handler"]:
        r._fail(logical_id, f"handler {config.get('Handler')} is not {props['Handler']}")
    wanted = props.get("Architectures", ["x86_64"])
    if config.get("Architectures", ["x86_64"]) != wanted:
        lambda_ = r.client("lambda")
        code = props["Code"]
        lambda_.update_function_code(
            FunctionName=props["FunctionName"],
            S3Bucket=code["S3Bucket"],
            S3Key=code["S3Key"],
            Architectures=wanted,
        )
        now = lambda_.get_function(FunctionName=props["FunctionName"])["Configuration"]
        if now.get("Architectures", ["x86_64"]) == wanted:
            r._changed(logical_id, f"architecture set to {wanted[0]} through the Lambda API")
        else:
            # moto ignores Architectures, from CloudFormation and in UpdateFunctionCode alike; its
            # functions never run the package, so this is reported rather than failed.
            r.warnings.append(
                f"{logical_id}: endpoint does not report architecture {wanted[0]} for {props['FunctionName']}"
            )


_MAPPING_SETTINGS = ("BisectBatchOnFunctionError", "FunctionResponseTypes", "DestinationConfig")
_MAPPING_NUMBERS = (
    "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds",
    "ParallelizationFactor",
    "BatchSize",
    "TumblingWindowInSeconds",
)


def _event_source_mapping(r: Reconciler, logical_id: str, props: dict[str, Any]) -> None:
    lambda_ = r.client("lambda")
    mappings = lambda_.list_event_source_mappings(
        FunctionName=props["FunctionName"], EventSourceArn=props["EventSourceArn"]
    )["EventSourceMappings"]
    if not mappings:
        r._fail(logical_id, "no event source mapping from the stream to the function")
    differ = _mapping_differences(mappings[0], props)
    if not differ:
        return
    wanted = {key: int(props[key]) if key in _MAPPING_NUMBERS else props[key] for key in differ}
    lambda_.update_event_source_mapping(UUID=mappings[0]["UUID"], **wanted)
    now = lambda_.get_event_source_mapping(UUID=mappings[0]["UUID"])
    still = _mapping_differences(now, props)
    if set(differ) - set(still):
        r._changed(logical_id, f"{', '.join(k for k in differ if k not in still)} set through the Lambda API")
    for key in still:
        if key in now:  # the endpoint holds the setting, at another value: that is a failure
            r._fail(logical_id, f"{key} is {now[key]!r}, the template says {props[key]!r}")
        # MiniStack's mappings have no TumblingWindowInSeconds at all (CloudFormation and the API alike);
        # an endpoint that does not hold a setting is reported, as moto's missing Architectures are
        r.warnings.append(f"{logical_id}: endpoint does not report {key}={props[key]} for the mapping")


def _mapping_differences(mapping: dict[str, Any], props: dict[str, Any]) -> list[str]:
    """The template's mapping settings that ``mapping`` does not have (no window: the key is absent)."""
    differ = [key for key in _MAPPING_SETTINGS if mapping.get(key) != props[key]]
    for key in _MAPPING_NUMBERS:
        current = mapping.get(key, 0 if key == "TumblingWindowInSeconds" else -2)
        if int(current if current is not None else 0) != int(props[key]):
            differ.append(key)
    return differ


def _topic_rule(r: Reconciler, logical_id: str, props: dict[str, Any]) -> None:
    iot, name = r.client("iot"), props["RuleName"]
    payload = _camel(props["TopicRulePayload"])
    try:
        current = iot.get_topic_rule(ruleName=name)["rule"]
    except ClientError as exc:
        if _not_served(exc):
            _unserved(r, logical_id, f"topic rule {name}")
            return
        if exc.response.get("Error", {}).get("Code") not in (
            "ResourceNotFoundException",
            "UnauthorizedException",
        ):
            raise
        iot.create_topic_rule(ruleName=name, topicRulePayload=payload)
        r._changed(logical_id, f"topic rule {name} created through the IoT API (CloudFormation skipped it)")
        return
    if any(current.get(key) != value for key, value in payload.items()):
        iot.replace_topic_rule(ruleName=name, topicRulePayload=payload)
        r._changed(logical_id, f"topic rule {name} replaced through the IoT API to match the template")


def _delivery_stream(r: Reconciler, logical_id: str, props: dict[str, Any]) -> None:
    firehose, name = r.client("firehose"), props["DeliveryStreamName"]
    try:
        stream = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        firehose.create_delivery_stream(**props)
        r._changed(
            logical_id, f"delivery stream {name} created through the Firehose API (CloudFormation skipped it)"
        )
        return
    destination = stream["Destinations"][0].get("ExtendedS3DestinationDescription", {})
    wanted = props["ExtendedS3DestinationConfiguration"]
    if any(destination.get(key) != wanted[key] for key in ("BucketARN", "Prefix", "ErrorOutputPrefix")):
        r._fail(
            logical_id,
            f"delivery stream {name} writes to {destination.get('BucketARN')}/"
            f"{destination.get('Prefix')}, not where the template says",
        )


def _camel(value: Any) -> Any:
    """CloudFormation's PascalCase keys in the IoT API's camelCase (``RoleArn`` → ``roleArn``)."""
    if isinstance(value, dict):
        return {key[:1].lower() + key[1:]: _camel(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_camel(item) for item in value]
    return value


_CHECKS: dict[str, Callable[[Reconciler, str, dict[str, Any]], None]] = {
    "AWS::Kinesis::Stream": _kinesis_stream,
    "AWS::DynamoDB::Table": _dynamodb_table,
    "AWS::S3::Bucket": _s3_bucket,
    "AWS::SNS::Topic": _sns_topic,
    "AWS::SQS::Queue": _sqs_queue,
    "AWS::IoT::Policy": _iot_policy,
    "AWS::IAM::Role": _iam_role,
    "AWS::Logs::LogGroup": _log_group,
    "AWS::Lambda::Function": _lambda_function,
    "AWS::Lambda::EventSourceMapping": _event_source_mapping,
    "AWS::IoT::TopicRule": _topic_rule,
    "AWS::KinesisFirehose::DeliveryStream": _delivery_stream,
}
