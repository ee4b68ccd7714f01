"""docs/deploy.md, checked against the code: every `vitalstream` line parses with the real CLI parser,
the values file renders with the chart (helm-python-sdk, as tests/unit/test_helm_chart.py does), the IAM
policy names every AWS operation the consumer calls, and names, paths and images agree across the doc."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import boto3
import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from service.cli import build_parser
from tests.observability import CHART_DIR, ROOT

DOC = ROOT / "docs" / "deploy.md"
KUBE_VERSION = "1.31.0"
VALUES_MARKER = "# values-prod.yaml"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "ScaledObject", "TriggerAuthentication"}
CLAIMED_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule", "ConfigMap"}
# How the doc's header says each command is exercised; a new kind of command must be classified there.
CHECKED = {"vitalstream", "helm", "docker", "eksctl"}
NOT_RUN = {"aws", "kubectl", "curl", "promtool"}
# The code the consumer runs (vitalstream consume); kinesis_writer.py is the simulator's publisher.
CONSUMER_CODE = [ROOT / "service" / "consumer", ROOT / "service" / "adapters"]
NOT_CONSUMER = {"kinesis_writer.py"}
AWS_SERVICES = ("kinesis", "dynamodb", "s3", "sns", "sqs")
# API operations authorised by another IAM action.
IAM_ACTION_OF = {"s3:HeadObject": "s3:GetObject", "sqs:SendMessageBatch": "sqs:SendMessage"}
# get_paginator("scan") and the waiter table_exists, which the method scan below cannot see.
PAGINATED_AND_WAITED = {"dynamodb:Scan", "dynamodb:DescribeTable"}


def blocks() -> list[tuple[str, str]]:
    """(info string, body) of every fenced block."""
    return re.findall(r"^```([^\n]*)\n(.*?)^```", DOC.read_text(), flags=re.MULTILINE | re.DOTALL)


def commands() -> list[list[str]]:
    """Every command line of the bash blocks, continuation lines joined, split like a shell would."""
    lines: list[list[str]] = []
    for info, body in blocks():
        if info.strip() != "bash":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                lines.append(words)
    return lines


def commands_of(program: str, *sub: str) -> list[list[str]]:
    return [c for c in commands() if c[0] == program and c[1 : 1 + len(sub)] == list(sub)]


def option(words: list[str], *names: str) -> str:
    for i, word in enumerate(words):
        for name in names:
            if word == name:
                return words[i + 1]
            if word.startswith(name + "="):
                return word.split("=", 1)[1]
    raise AssertionError(f"{names[0]} missing from {shlex.join(words)}")


def values_doc() -> dict[str, Any]:
    found = [body for info, body in blocks() if info.strip() == "yaml" and body.startswith(VALUES_MARKER)]
    assert len(found) == 1, f"expected one yaml block starting with {VALUES_MARKER!r}"
    values: dict[str, Any] = yaml.safe_load(found[0])
    return values


def policy() -> dict[str, Any]:
    found = [json.loads(body) for info, body in blocks() if info.strip() == "json" and '"Statement"' in body]
    assert len(found) == 1, "expected one IAM policy json block"
    document: dict[str, Any] = found[0]
    return document


def release_and_namespace() -> tuple[str, str]:
    (install,) = commands_of("helm", "install")
    return install[2], option(install, "-n", "--namespace")


def rendered() -> list[dict[str, Any]]:
    release, namespace = release_and_namespace()
    with helm.Chart.load(CHART_DIR) as chart:
        chart.validate_schema(chart.merge_values(values_doc()))
        text = chart.render(values_doc(), name=release, namespace=namespace, is_install=True)
    return [
        doc
        for path, body in text.items()
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(body)
        if doc
    ]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in docs if doc["kind"] == kind]
    return found


def statement_actions() -> set[str]:
    actions: set[str] = set()
    for statement in policy()["Statement"]:
        assert statement["Effect"] == "Allow"
        action = statement["Action"]
        actions |= {action} if isinstance(action, str) else set(action)
    return actions


def resources() -> list[str]:
    found: list[str] = []
    for statement in policy()["Statement"]:
        resource = statement["Resource"]
        found += [resource] if isinstance(resource, str) else resource
    return found


def operations_called() -> set[str]:
    """service:Operation for every boto3 client method named in the consumer's code."""
    methods: dict[str, str] = {}
    for service in AWS_SERVICES:
        client = boto3.client(service, region_name="us-east-1")
        for method, api in client.meta.method_to_api_mapping.items():
            methods[method] = f"{service}:{api}"
    called = set(PAGINATED_AND_WAITED)
    for directory in CONSUMER_CODE:
        for path in directory.glob("*.py"):
            if path.name in NOT_CONSUMER:
                continue
            called |= {methods[m] for m in re.findall(r"\.([a-z_]+)\(", path.read_text()) if m in methods}
    return called


# --- (a) vitalstream commands -----------------------------------------------------------------------


def test_every_command_is_classified() -> None:
    assert commands()
    programs = {words[0] for words in commands()}
    assert programs <= CHECKED | NOT_RUN, sorted(programs - CHECKED - NOT_RUN)


def test_vitalstream_lines_parse_with_the_real_cli() -> None:
    lines = commands_of("vitalstream")
    assert {words[1] for words in lines} >= {"provision", "package-lambda"}
    parser = build_parser()
    for words in lines:
        parser.parse_args(words[1:])  # SystemExit(2) on an unknown subcommand or flag


def test_serverless_provision_uses_the_zip_package_lambda_writes() -> None:
    (package,) = commands_of("vitalstream", "package-lambda")
    out = option(package, "--out")
    parser = build_parser()
    zips = [parser.parse_args(w[1:]).lambda_zip for w in commands_of("vitalstream", "provision")]
    assert Path(out) in zips
    assert None in zips  # Kubernetes mode: the stack without the function


# --- (b) values-prod.yaml rendered by the chart ------------------------------------------------------


def test_values_render_the_claimed_kinds_and_validate() -> None:
    docs = rendered()
    kinds = {doc["kind"] for doc in docs}
    assert kinds >= CLAIMED_KINDS, sorted(CLAIMED_KINDS - kinds)
    for doc in docs:
        if doc["kind"] not in CRD_KINDS:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    assert one(docs, "ConfigMap")["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_values_pass_helm_lint_strict() -> None:
    _, namespace = release_and_namespace()
    report = helm.lint(
        CHART_DIR, values_doc(), strict=True, namespace=namespace, kube_version=f"v{KUBE_VERSION}"
    )
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_keda_scales_on_the_stream_within_its_shards() -> None:
    values = values_doc()
    scaled = one(rendered(), "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "aws-kinesis-stream"
    assert trigger["metadata"]["streamName"] == values["config"]["stream_name"]
    parser = build_parser()
    shard_counts = {
        int(pair.split("=", 1)[1])
        for w in commands_of("vitalstream", "provision")
        for pair in parser.parse_args(w[1:]).param
        if pair.startswith("ShardCount=")
    }
    assert shard_counts, "provision lines give --param ShardCount=N"
    assert scaled["spec"]["maxReplicaCount"] <= min(shard_counts)
    assert values["replicas"] <= min(shard_counts)


# --- (c) IAM policy ----------------------------------------------------------------------------------


def test_policy_names_every_operation_the_consumer_calls() -> None:
    actions = statement_actions()
    assert {
        "kinesis:GetRecords",
        "kinesis:ListShards",
        "kinesis:GetShardIterator",
        "kinesis:DescribeStreamSummary",
        "kinesis:RegisterStreamConsumer",
        "kinesis:DescribeStreamConsumer",
        "kinesis:SubscribeToShard",
        "dynamodb:UpdateItem",
        "s3:PutObject",
        "s3:GetObject",
        "sns:Publish",
        "sqs:SendMessage",
    } <= actions
    needed = {IAM_ACTION_OF.get(op, op) for op in operations_called()}
    assert needed <= actions, sorted(needed - actions)


def test_policy_actions_exist() -> None:
    operations = {
        f"{service}:{name}"
        for service in AWS_SERVICES
        for name in boto3.client(service, region_name="us-east-1").meta.service_model.operation_names
    }
    actions = statement_actions()
    assert actions <= operations, sorted(actions - operations)


def test_policy_resources_are_the_configured_ones() -> None:
    config = values_doc()["config"]
    found = " ".join(resources())
    for name in ("stream_name", "lease_table", "device_state_table", "alert_history_table", "archive_bucket"):
        assert config[name] in found, name
    assert config["alert_topic_arn"] in resources()
    queue = config["dead_letter_queue_url"].rsplit("/", 1)[1]
    assert any(r.startswith("arn:aws:sqs:") and r.endswith(f":{queue}") for r in resources())


# --- (d) helm and eksctl lines ------------------------------------------------------------------------


def test_helm_lines_name_the_chart_release_and_namespace() -> None:
    release, namespace = release_and_namespace()
    for sub in ("install", "upgrade"):
        for words in commands_of("helm", sub):
            assert (ROOT / words[3] / "Chart.yaml").is_file(), words[3]
            assert option(words, "-f", "--values") == "values-prod.yaml"
    tests = commands_of("helm", "test")
    assert tests
    for words in [*tests, *commands_of("helm", "upgrade")]:
        assert (words[2], option(words, "-n", "--namespace")) == (release, namespace)
    for words in commands_of("kubectl"):
        assert option(words, "-n", "--namespace") == namespace


def test_eksctl_role_matches_the_rendered_service_account() -> None:
    (eksctl,) = commands_of("eksctl", "create", "iamserviceaccount")
    _, namespace = release_and_namespace()
    account = one(rendered(), "ServiceAccount")
    assert option(eksctl, "--namespace") == namespace == account["metadata"]["namespace"]
    assert option(eksctl, "--name") == account["metadata"]["name"]
    assert "--role-only" in eksctl  # the chart owns the ServiceAccount
    role_arn = values_doc()["serviceAccount"]["roleArn"]
    assert role_arn.endswith(":role/" + option(eksctl, "--role-name"))
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role_arn
    (create_policy,) = commands_of("aws", "iam", "create-policy")
    assert option(eksctl, "--attach-policy-arn").endswith(":policy/" + option(create_policy, "--policy-name"))


# --- (e) docker and paths -----------------------------------------------------------------------------


def test_docker_build_context_and_image() -> None:
    (build,) = commands_of("docker", "build")
    context = ROOT / build[-1]
    dockerfile = ROOT / option(build, "-f") if "-f" in build else context / "Dockerfile"
    assert dockerfile.is_file()
    image = option(build, "-t", "--tag")
    assert [w[2] for w in commands_of("docker", "push")] == [image]
    values = values_doc()["image"]
    assert image == f"{values['repository']}:{values['tag']}"


def test_repository_paths_exist() -> None:
    text = DOC.read_text()
    paths = set(re.findall(r"(?<![\w/.-])((?:helm|docs|infra|service|tests)/[\w./-]*\w)", text))
    assert paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert missing == []


@pytest.mark.parametrize("line", ["docker build", "helm install", "helm test", "eksctl create"])
def test_the_doc_shows(line: str) -> None:
    assert any(shlex.join(words).startswith(line) for words in commands())
