"""Alerts to SNS, at most once per ``alertId``, recorded in a DynamoDB alert history table.

Per alert: put the history row (``alertId`` hash key, the alert's fields, ``state`` = PENDING) if
absent; a row already PUBLISHED means a previous delivery published it, so nothing is sent. Otherwise
publish, then mark the row PUBLISHED. An alert counts as done only once its row says PUBLISHED, so
the one window for a repeat is a failure between the publish and that update; on a FIFO topic the
``MessageDeduplicationId`` (the alert id) closes it too.

Every row carries ``expiresAt`` (epoch seconds, the table's DynamoDB TTL attribute): the moment it
was first put plus the retention. DynamoDB deletes expired rows within days of that moment, so a
redelivery of an alert older than the retention may publish it again; the retention must outlast
the stream's (a redelivery comes from a record still in the stream).

A failed call is kept as the cause of its device's failure (``FailedDevices``): sink ``alerts``,
resource the history table or the topic ARN, whichever refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, cast

from botocore.exceptions import ClientError

from service.core import Alert
from service.runtime.adapters._errors import calling, error_code
from service.runtime.ports import FailedDevices, Sink, SinkError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef
    from mypy_boto3_sns.client import SNSClient
    from mypy_boto3_sns.type_defs import MessageAttributeValueTypeDef


EXPIRES_AT = "expiresAt"  # the alert-history table's TTL attribute (infra/template.yaml)
DAY_S = 86_400


class DeliveryState(StrEnum):
    PENDING = "PENDING"
    PUBLISHED = "PUBLISHED"


class SnsAlertPublisher:
    """``AlertPublisher``. Returns the devices with an alert not yet PUBLISHED; after a device's
    first failure its later alerts in the same call are not attempted (they come again with it).
    ``retention_days``: how long a history row is kept (``expiresAt`` = ``clock()`` + that)."""

    def __init__(
        self,
        dynamodb_client: DynamoDBClient,
        history_table: str,
        sns_client: SNSClient,
        topic_arn: str,
        *,
        retention_days: int = 90,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retention_days < 1:
            raise ValueError("retention_days must be at least 1")
        self._dynamodb = dynamodb_client
        self._table = history_table
        self._sns = sns_client
        self._topic_arn = topic_arn
        self._fifo = topic_arn.endswith(".fifo")
        self._retention_s = retention_days * DAY_S
        self._clock = clock

    def publish(self, alerts: Sequence[Alert]) -> FailedDevices:
        failed: set[str] = set()
        causes: list[SinkError] = []
        for alert in alerts:
            if alert.deviceId in failed:
                continue
            try:
                self._publish_once(alert)
            except SinkError as exc:
                failed.add(alert.deviceId)
                causes.append(exc)
        return FailedDevices(failed, causes)

    def _publish_once(self, alert: Alert) -> None:
        with calling(Sink.ALERTS, self._table):
            claimed = self._claim(alert)
        if claimed is DeliveryState.PUBLISHED:
            return
        with calling(Sink.ALERTS, self._topic_arn):
            self._send(alert)
        with calling(Sink.ALERTS, self._table):
            self._mark_published(alert)

    def _claim(self, alert: Alert) -> DeliveryState | None:
        """Record the alert as PENDING unless a row exists; return the existing row's state."""
        try:
            self._dynamodb.put_item(
                TableName=self._table,
                Item=_history_item(alert, int(self._clock()) + self._retention_s),
                ConditionExpression="attribute_not_exists(alertId)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            old = cast("dict[str, AttributeValueTypeDef]", exc.response.get("Item") or {})
            if not old:
                old = self._dynamodb.get_item(
                    TableName=self._table, Key={"alertId": {"S": alert.alertId}}, ConsistentRead=True
                ).get("Item", {})
            state = old.get("state", {}).get("S", "")
            return DeliveryState(state) if state in DeliveryState.__members__ else None
        return None

    def _send(self, alert: Alert) -> None:
        attributes: dict[str, MessageAttributeValueTypeDef] = {
            "type": {"DataType": "String", "StringValue": alert.type.value},
            "severity": {"DataType": "String", "StringValue": alert.severity.value},
            "deviceId": {"DataType": "String", "StringValue": alert.deviceId},
        }
        message = alert.to_json().decode("utf-8")
        if self._fifo:
            self._sns.publish(
                TopicArn=self._topic_arn,
                Message=message,
                MessageAttributes=attributes,
                MessageGroupId=alert.deviceId,
                MessageDeduplicationId=alert.alertId,
            )
        else:
            self._sns.publish(TopicArn=self._topic_arn, Message=message, MessageAttributes=attributes)

    def _mark_published(self, alert: Alert) -> None:
        self._dynamodb.update_item(
            TableName=self._table,
            Key={"alertId": {"S": alert.alertId}},
            UpdateExpression="SET #state = :published",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={":published": {"S": DeliveryState.PUBLISHED.value}},
        )


def _history_item(alert: Alert, expires_at_s: int) -> dict[str, AttributeValueTypeDef]:
    item: dict[str, AttributeValueTypeDef] = {
        "alertId": {"S": alert.alertId},
        "deviceId": {"S": alert.deviceId},
        "type": {"S": alert.type.value},
        "severity": {"S": alert.severity.value},
        "startedAt": {"S": alert.startedAt},
        "detectedAt": {"S": alert.detectedAt},
        "value": {"N": repr(alert.value)},
        "message": {"S": alert.message},
        "state": {"S": DeliveryState.PENDING.value},
        EXPIRES_AT: {"N": str(expires_at_s)},
    }
    if alert.threshold is not None:
        item["threshold"] = {"N": repr(alert.threshold)}
    if alert.baseline is not None:
        item["baseline"] = {"N": repr(alert.baseline)}
    return item
