"""Provisioning's check of the event source mapping: what the endpoint lacks is set through the Lambda
API; a setting it does not hold at all is reported; one it holds at another value fails."""

from __future__ import annotations

from typing import Any

import pytest

from service.tools.provisioning.resources import Reconciler, VerificationError, _event_source_mapping

PROPS: dict[str, Any] = {
    "FunctionName": "fn",
    "EventSourceArn": "arn:stream",
    "BisectBatchOnFunctionError": True,
    "FunctionResponseTypes": ["ReportBatchItemFailures"],
    "DestinationConfig": {"OnFailure": {"Destination": "arn:queue"}},
    "MaximumRetryAttempts": "5",
    "MaximumRecordAgeInSeconds": "3600",
    "ParallelizationFactor": "1",
    "BatchSize": "500",
    "TumblingWindowInSeconds": "120",
}


class FakeLambda:
    """One mapping; ``ignored`` settings are never stored, ``pinned`` ones keep their value."""

    def __init__(self, mapping: dict[str, Any], ignored: set[str], pinned: set[str] = frozenset()) -> None:
        self.mapping, self.ignored, self.pinned = {"UUID": "u-1", **mapping}, ignored, pinned

    def list_event_source_mappings(self, **_: Any) -> dict[str, Any]:
        return {"EventSourceMappings": [dict(self.mapping)]}

    def get_event_source_mapping(self, UUID: str) -> dict[str, Any]:  # noqa: N803 - the API's name
        return dict(self.mapping)

    def update_event_source_mapping(self, UUID: str, **settings: Any) -> None:  # noqa: N803
        self.mapping.update({k: v for k, v in settings.items() if k not in self.ignored | self.pinned})


def reconciler(fake: FakeLambda) -> Reconciler:
    template = {"Resources": {"Mapping": {"Type": "AWS::Lambda::EventSourceMapping"}}}
    return Reconciler(lambda name: fake, None, template)  # type: ignore[arg-type]


def held(**overrides: Any) -> dict[str, Any]:
    numbers = ("MaximumRetryAttempts", "MaximumRecordAgeInSeconds", "ParallelizationFactor", "BatchSize")
    mapping = {
        k: PROPS[k] for k in ("BisectBatchOnFunctionError", "FunctionResponseTypes", "DestinationConfig")
    }
    return mapping | {k: int(PROPS[k]) for k in numbers} | overrides


def test_a_setting_the_endpoint_does_not_hold_is_reported_and_a_skipped_one_is_set() -> None:
    fake = FakeLambda(held(BatchSize=100), ignored={"TumblingWindowInSeconds"})
    r = reconciler(fake)

    _event_source_mapping(r, "Mapping", PROPS)

    assert fake.mapping["BatchSize"] == 500
    assert r.changes == ["Mapping: BatchSize set through the Lambda API"]
    assert r.warnings == ["Mapping: endpoint does not report TumblingWindowInSeconds=120 for the mapping"]


def test_a_setting_held_at_another_value_fails() -> None:
    fake = FakeLambda(held(BatchSize=100, TumblingWindowInSeconds=120), ignored=set(), pinned={"BatchSize"})

    with pytest.raises(VerificationError, match="BatchSize is 100, the template says '500'"):
        _event_source_mapping(reconciler(fake), "Mapping", PROPS)
