"""One provisioning run: upload the Lambda package, deploy the stack, resolve what it built, then
verify (and where an emulator skipped something, complete) every resource through its own API."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from service.tools.emulator import EMULATOR_KEY
from service.tools.packaging.manifest import ManifestError, read_manifest
from service.tools.provisioning.resources import Reconciler, VerificationError
from service.tools.provisioning.stack import StackError, deploy_stack, stack_outputs, stack_resources
from service.tools.provisioning.template import (
    TEMPLATE_PATH,
    Resolver,
    TemplateError,
    effective_parameters,
    load_template,
)

_ENV_FROM_OUTPUTS = (
    ("VITALSTREAM_REGION", "StackRegion"),
    ("VITALSTREAM_STREAM_NAME", "StreamName"),
    ("VITALSTREAM_ARCHIVE_BUCKET", "ArchiveBucketName"),
    ("VITALSTREAM_ARCHIVE_PREFIX", "ArchivePrefix"),
    ("VITALSTREAM_DEVICE_STATE_TABLE", "DeviceStateTableName"),
    ("VITALSTREAM_ALERT_HISTORY_TABLE", "AlertHistoryTableName"),
    ("VITALSTREAM_ALERT_TOPIC_ARN", "AlertTopicArn"),
    ("VITALSTREAM_DEAD_LETTER_QUEUE_URL", "DeadLetterQueueUrl"),
    ("VITALSTREAM_DEAD_LETTER_BUCKET", "ArchiveBucketName"),
    ("VITALSTREAM_DEAD_LETTER_PREFIX", "DeadLetterPrefix"),
    ("VITALSTREAM_LEASE_TABLE", "LeaseTableName"),
)


class ProvisionError(RuntimeError):
    """Provisioning failed; the message says which step and which resource."""


@dataclass(frozen=True)
class ProvisionResult:
    """What a run did: ``stack`` is ``created``/``updated``/``unchanged``; ``changes`` lists every
    write made outside CloudFormation (empty on a re-run); ``environment`` holds the Settings."""

    stack_name: str
    stack: str
    changes: list[str]
    outputs: dict[str, str]
    environment: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.stack != "unchanged" or bool(self.changes)

    def export_lines(self) -> list[str]:
        return [f"export {key}={value}" for key, value in self.environment.items()]


def provision_stack(
    stack_name: str = "vitalstream",
    *,
    endpoint_url: str | None = None,
    region: str = "us-east-1",
    parameters: Mapping[str, str] | None = None,
    lambda_zip: Path | None = None,
    template_path: Path = TEMPLATE_PATH,
) -> ProvisionResult:
    """Deploy the template as ``stack_name`` and verify every resource; safe to re-run.

    Without ``lambda_zip`` the function and its mapping are left out (``DeployFunction=false``).
    Raises ``ProvisionError`` naming the parameter, stack resource or API call that failed.
    """
    session = _session(region, endpoint_url)
    config = Config(retries={"max_attempts": 5, "mode": "standard"})

    def client(name: str) -> Any:
        return session.client(name, endpoint_url=endpoint_url, config=config)  # type: ignore[call-overload]

    template = load_template(template_path)
    try:
        given = dict(parameters or {})
        if lambda_zip is not None:
            given.update(_package_parameters(template, lambda_zip, given))
            bucket, key = _upload_package(client, stack_name, region, lambda_zip)
            given.update(DeployFunction="true", CodeS3Bucket=bucket, CodeS3Key=key)
        else:
            given.update(DeployFunction="false", CodeS3Bucket="", CodeS3Key="")
        values = effective_parameters(template, given)
        cloudformation = client("cloudformation")
        body = template_path.read_text(encoding="utf-8")
        outcome = deploy_stack(cloudformation, stack_name, body, values)
        outputs = stack_outputs(cloudformation, stack_name)
        deployed = stack_resources(cloudformation, stack_name)
        resolver = _resolver(client, template, values, deployed, cloudformation, stack_name, region)
        reconciler = Reconciler(client, resolver, template)
        reconciler.run([logical_id for logical_id in template["Resources"] if resolver.wanted(logical_id)])
    except (TemplateError, StackError, VerificationError) as exc:
        raise ProvisionError(f"provisioning stack {stack_name}: {exc}") from exc
    except (ClientError, BotoCoreError) as exc:
        raise ProvisionError(f"provisioning stack {stack_name}: AWS call failed: {exc}") from exc
    environment = {env: outputs[key] for env, key in _ENV_FROM_OUTPUTS if key in outputs}
    environment["VITALSTREAM_DEAD_LETTER_TARGET"] = "sqs"
    if endpoint_url:
        environment["VITALSTREAM_ENDPOINT_URL"] = endpoint_url
    return ProvisionResult(
        stack_name,
        outcome,
        reconciler.changes,
        outputs,
        dict(sorted(environment.items())),
        reconciler.warnings,
    )


def _session(region: str, endpoint_url: str | None) -> boto3.Session:
    session = boto3.Session(region_name=region)
    if endpoint_url and session.get_credentials() is None:
        return boto3.Session(
            aws_access_key_id=EMULATOR_KEY,
            aws_secret_access_key=EMULATOR_KEY,
            region_name=region,
        )
    return session


def _package_parameters(template: dict[str, Any], package: Path, given: Mapping[str, str]) -> dict[str, str]:
    """The ``Architecture`` a ``vitalstream package-lambda`` zip was built for (none for a zip
    without a manifest); refuses a package built for another runtime or handler package than the
    template's functions'."""
    try:
        manifest = read_manifest(package)
    except ManifestError as exc:
        raise TemplateError(f"Lambda package {exc}") from exc
    if manifest is None:
        return {}
    for spec in template["Resources"].values():
        if spec.get("Type") != "AWS::Lambda::Function":
            continue
        runtime, handler = spec["Properties"].get("Runtime"), spec["Properties"].get("Handler")
        if runtime != manifest.runtime:
            raise TemplateError(
                f"{package} was built for {manifest.runtime} but the function runs {runtime}; rebuild it "
                f"with vitalstream package-lambda --python-version {str(runtime).removeprefix('python')}"
            )
        # the package holds every module of its handler's package (the processor's and the archive
        # function's handlers alike: ``packaging.sources``)
        if str(handler).partition(".")[0] != manifest.handler.partition(".")[0]:
            raise TemplateError(f"{package} holds handler {manifest.handler}, the function calls {handler}")
    if "Architecture" not in template.get("Parameters", {}):
        return {}
    chosen = given.get("Architecture")
    if chosen is not None and chosen != manifest.architecture:
        raise TemplateError(
            f"--param Architecture={chosen} but {package} was built for {manifest.architecture}"
        )
    return {"Architecture": manifest.architecture}


def _upload_package(client: Any, stack_name: str, region: str, package: Path) -> tuple[str, str]:
    """Put ``package`` into the stack's code bucket under a content-addressed key (no upload when
    present), creating the bucket once; returns (bucket, key)."""
    data = package.read_bytes()
    account = client("sts").get_caller_identity()["Account"]
    bucket = f"{stack_name}-code-{account}-{region}".lower()
    key = f"lambda/{hashlib.sha256(data).hexdigest()[:32]}.zip"
    s3 = client("s3")
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        location = (
            {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        )
        s3.create_bucket(Bucket=bucket, **location)
        block = dict.fromkeys(
            ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
        )
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=block)
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        s3.put_object(Bucket=bucket, Key=key, Body=data, ServerSideEncryption="AES256")
    return bucket, key


def _resolver(
    client: Any,
    template: dict[str, Any],
    values: dict[str, str],
    deployed: dict[str, dict[str, Any]],
    cloudformation: Any,
    stack_name: str,
    region: str,
) -> Resolver:
    stack_id = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]["StackId"]
    _, partition, _, _, account, _ = stack_id.split(":", 5)
    refs = dict(values)
    refs.update(
        {
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::Partition": partition,
            "AWS::StackName": stack_name,
            "AWS::StackId": stack_id,
            "AWS::URLSuffix": "amazonaws.com",
        }
    )
    refs.update({lid: r["PhysicalResourceId"] for lid, r in deployed.items() if r.get("PhysicalResourceId")})
    types = {lid: spec["Type"] for lid, spec in template["Resources"].items()}

    def get_att(logical_id: str, attribute: str) -> str:
        physical, kind = refs.get(logical_id, ""), types.get(logical_id, "")
        if not physical or attribute != "Arn":
            raise TemplateError(f"cannot resolve {logical_id}.{attribute}: resource not deployed")
        if kind == "AWS::IAM::Role":
            return str(client("iam").get_role(RoleName=physical)["Role"]["Arn"])
        if kind == "AWS::Kinesis::Stream":
            summary = client("kinesis").describe_stream_summary(StreamName=physical)
            return str(summary["StreamDescriptionSummary"]["StreamARN"])
        if kind == "AWS::S3::Bucket":
            return f"arn:{partition}:s3:::{physical}"
        if kind == "AWS::SQS::Queue":
            attrs = client("sqs").get_queue_attributes(QueueUrl=physical, AttributeNames=["QueueArn"])
            return str(attrs["Attributes"]["QueueArn"])
        if kind == "AWS::DynamoDB::Table":
            return str(client("dynamodb").describe_table(TableName=physical)["Table"]["TableArn"])
        if kind == "AWS::Logs::LogGroup":
            return f"arn:{partition}:logs:{region}:{account}:log-group:{physical}:*"
        raise TemplateError(f"cannot resolve {logical_id}.{attribute} for {kind}")

    return Resolver(template, refs, get_att)
