"""The alert history ages out: every row carries the table's TTL attribute, the template enables TTL on
that attribute, and provisioning applies it where an endpoint's CloudFormation skipped it."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from service.core import Alert, AnomalyType, Severity
from service.runtime.adapters.sns_alerts import DAY_S, EXPIRES_AT, SnsAlertPublisher
from service.tools.provisioning.resources import Reconciler, VerificationError, _time_to_live
from service.tools.provisioning.template import load_template

NOW_S = 1_790_000_000.7


def alert(alert_id: str = "a-1") -> Alert:
    return Alert(
        alertId=alert_id,
        deviceId="d-1",
        type=AnomalyType.TACHYCARDIA,
        severity=Severity.HIGH,
        startedAt="2026-03-01T10:00:00.000Z",
        detectedAt="2026-03-01T10:00:30.000Z",
        value=130,
        threshold=120,
        message="heart rate 130 at rest for 30 s",
    )


class FakeHistory:
    """The alert-history table (put-if-absent, update) and the topic, in memory."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.sent: list[str] = []

    def put_item(self, *, Item: dict[str, Any], **_: Any) -> None:  # noqa: N803 - the API's names
        key = Item["alertId"]["S"]
        if key in self.rows:
            error = {"Error": {"Code": "ConditionalCheckFailedException"}, "Item": self.rows[key]}
            raise ClientError(error, "PutItem")  # type: ignore[arg-type]
        self.rows[key] = dict(Item)

    def update_item(self, **call: Any) -> None:
        self.rows[call["Key"]["alertId"]["S"]]["state"] = call["ExpressionAttributeValues"][":published"]

    def publish(self, *, Message: str, **_: Any) -> None:  # noqa: N803
        self.sent.append(Message)


def publisher(history: FakeHistory, clock: list[float], retention_days: int = 90) -> SnsAlertPublisher:
    return SnsAlertPublisher(
        history,  # type: ignore[arg-type]
        "alerts",
        history,  # type: ignore[arg-type]
        "arn:topic",
        retention_days=retention_days,
        clock=lambda: clock[0],
    )


@pytest.mark.parametrize("days", [1, 90])
def test_every_history_row_expires_its_retention_after_it_was_put(days: int) -> None:
    history = FakeHistory()

    assert publisher(history, [NOW_S], days).publish([alert()]) == set()

    row = history.rows["a-1"]
    assert row[EXPIRES_AT] == {"N": str(int(NOW_S) + days * DAY_S)}
    assert row["state"] == {"S": "PUBLISHED"}


def test_a_redelivery_keeps_the_first_expiry_and_sends_nothing() -> None:
    history, clock = FakeHistory(), [NOW_S]
    alerts = publisher(history, clock)
    alerts.publish([alert()])
    clock[0] += 7 * DAY_S

    assert alerts.publish([alert()]) == set()

    assert history.rows["a-1"][EXPIRES_AT] == {"N": str(int(NOW_S) + 90 * DAY_S)}
    assert len(history.sent) == 1


def test_a_retention_under_a_day_is_refused() -> None:
    with pytest.raises(ValueError, match="retention_days"):
        publisher(FakeHistory(), [NOW_S], retention_days=0)


def test_the_template_expires_alert_history_on_the_attribute_the_adapter_writes() -> None:
    props = load_template()["Resources"]["AlertHistoryTable"]["Properties"]
    assert props["TimeToLiveSpecification"] == {"AttributeName": EXPIRES_AT, "Enabled": True}


class FakeTtl:
    """DescribeTimeToLive / UpdateTimeToLive of one table; ``ignores`` drops updates (an emulator)."""

    def __init__(self, status: str = "DISABLED", attribute: str | None = None, ignores: bool = False) -> None:
        self.status, self.attribute, self.ignores = status, attribute, ignores
        self.updates: list[dict[str, Any]] = []

    def describe_time_to_live(self, TableName: str) -> dict[str, Any]:  # noqa: N803
        description: dict[str, Any] = {"TimeToLiveStatus": self.status}
        if self.attribute is not None:
            description["AttributeName"] = self.attribute
        return {"TimeToLiveDescription": description}

    def update_time_to_live(self, TableName: str, TimeToLiveSpecification: dict[str, Any]) -> None:  # noqa: N803
        self.updates.append(TimeToLiveSpecification)
        if not self.ignores:
            self.status, self.attribute = "ENABLED", TimeToLiveSpecification["AttributeName"]


def reconciler(fake: FakeTtl) -> Reconciler:
    template = {"Resources": {"History": {"Type": "AWS::DynamoDB::Table"}}}
    return Reconciler(lambda name: fake, None, template)  # type: ignore[arg-type]


WANTED = {"AttributeName": "expiresAt", "Enabled": True}


def test_ttl_a_table_lacks_is_enabled_through_the_api_and_reported() -> None:
    fake = FakeTtl()
    r = reconciler(fake)

    _time_to_live(r, "History", "alerts", WANTED)

    assert fake.updates == [WANTED]
    assert r.changes == ["History: time to live on expiresAt enabled through the DynamoDB API"]


def test_ttl_already_on_the_attribute_changes_nothing() -> None:
    fake = FakeTtl("ENABLED", "expiresAt")
    r = reconciler(fake)

    _time_to_live(r, "History", "alerts", WANTED)

    assert fake.updates == []
    assert r.changes == []


def test_ttl_on_another_attribute_fails() -> None:
    with pytest.raises(VerificationError, match="time to live is on 'ttl'"):
        _time_to_live(reconciler(FakeTtl("ENABLED", "ttl")), "History", "alerts", WANTED)


def test_a_table_without_ttl_in_the_template_is_left_alone() -> None:
    fake = FakeTtl()

    _time_to_live(reconciler(fake), "Devices", "devices", None)

    assert fake.updates == []
