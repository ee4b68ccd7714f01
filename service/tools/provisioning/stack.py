"""CloudFormation create/update of one stack, with "nothing to change" detected before calling.

``deploy_stack`` compares the deployed template body and effective parameter values with the
requested ones and skips the update when they are identical (emulators do not always refuse a no-op
update the way CloudFormation does). Failures raise ``StackError`` naming the failed resources and
CloudFormation's reasons from the stack events.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

CAPABILITIES = ["CAPABILITY_NAMED_IAM"]
_DONE = {"CREATE_COMPLETE", "UPDATE_COMPLETE"}
_FAILED_SUFFIXES = ("_FAILED", "ROLLBACK_COMPLETE")


class StackError(RuntimeError):
    """The stack did not reach a complete state; the message names the resources and reasons."""


def deploy_stack(
    cloudformation: Any,
    stack_name: str,
    template_body: str,
    parameters: Mapping[str, str],
    timeout_s: float = 1800.0,
) -> str:
    """Create or update ``stack_name``; return ``"created"``, ``"updated"`` or ``"unchanged"``."""
    deployed = _describe(cloudformation, stack_name)
    request: dict[str, Any] = {
        "StackName": stack_name,
        "TemplateBody": template_body,
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        "Capabilities": CAPABILITIES,
    }
    if deployed is None:
        cloudformation.create_stack(**request, OnFailure="ROLLBACK")
        _wait(cloudformation, stack_name, timeout_s)
        return "created"
    if deployed["StackStatus"].endswith("IN_PROGRESS"):
        deployed = _wait(cloudformation, stack_name, timeout_s)
    if deployed["StackStatus"] == "ROLLBACK_COMPLETE":
        raise StackError(
            f"stack {stack_name} is in ROLLBACK_COMPLETE (its creation failed); delete it and provision "
            f"again. {_failure_reasons(cloudformation, stack_name)}"
        )
    current_body = cloudformation.get_template(StackName=stack_name)["TemplateBody"]
    # LocalStack leaves ParameterValue out where the value is the empty string
    current_params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in deployed.get("Parameters", [])}
    if current_body == template_body and current_params == dict(parameters):
        return "unchanged"
    try:
        cloudformation.update_stack(**request)
    except ClientError as exc:
        # CloudFormation reports a no-op update only as ValidationError + this message: isolated here.
        error = exc.response.get("Error", {})
        if error.get("Code") == "ValidationError" and "No updates are to be performed" in error.get(
            "Message", ""
        ):
            return "unchanged"
        raise
    _wait(cloudformation, stack_name, timeout_s)
    return "updated"


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    stack = _describe(cloudformation, stack_name)
    if stack is None:
        raise StackError(f"stack {stack_name} does not exist")
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def stack_resources(cloudformation: Any, stack_name: str) -> dict[str, dict[str, Any]]:
    """Logical id → resource summary (``PhysicalResourceId``, ``ResourceType``, ``ResourceStatus``)."""
    resources: dict[str, dict[str, Any]] = {}
    for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name):
        for summary in page["StackResourceSummaries"]:
            if summary.get("LogicalResourceId"):  # moto lists resources it skipped with empty ids
                resources[summary["LogicalResourceId"]] = summary
    return resources


def _describe(cloudformation: Any, stack_name: str) -> dict[str, Any] | None:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        # A missing stack is ValidationError too; DescribeStacks has no dedicated code for it.
        if exc.response.get("Error", {}).get("Code") == "ValidationError":
            return None
        raise
    live = [s for s in stacks if s["StackStatus"] != "DELETE_COMPLETE"]
    return dict(live[0]) if live else None


def _wait(cloudformation: Any, stack_name: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        stack = _describe(cloudformation, stack_name)
        if stack is None:
            raise StackError(f"stack {stack_name} disappeared while deploying")
        status = stack["StackStatus"]
        if status in _DONE:
            return stack
        if status.endswith(_FAILED_SUFFIXES) or ("ROLLBACK" in status and not status.endswith("IN_PROGRESS")):
            raise StackError(
                f"stack {stack_name} ended in {status}. {_failure_reasons(cloudformation, stack_name)}"
            )
        if time.monotonic() > deadline:
            raise StackError(f"stack {stack_name} still {status} after {timeout_s:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 10.0)


def _failure_reasons(cloudformation: Any, stack_name: str) -> str:
    events = cloudformation.describe_stack_events(StackName=stack_name).get("StackEvents", [])
    failed = [
        f"{e['LogicalResourceId']} ({e.get('ResourceType', '?')}): {e.get('ResourceStatusReason', '-')}"
        for e in events
        if e.get("ResourceStatus", "").endswith("_FAILED")
    ]
    return "Failed resources: " + "; ".join(failed) if failed else "No failed resource events."
