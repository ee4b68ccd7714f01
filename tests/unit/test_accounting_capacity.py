"""Capacity units as DynamoDB reports them: the ``ConsumedCapacity`` of a response (one entry or a list
per table), the item estimate when a response reports none, and a real botocore client that asks for
them, answered with responses built from dicts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from service.runtime.accounting import (
    Items,
    Kind,
    RequestCounter,
    RequestCounts,
    Source,
    billed_capacity,
    consumed_capacity,
)

R, W = Kind.READ, Kind.WRITE
REPORTED, ESTIMATED = Source.REPORTED, Source.ESTIMATED


@pytest.mark.parametrize(
    ("operation", "parsed", "expected"),
    [
        ("PutItem", {"ConsumedCapacity": {"TableName": "state", "CapacityUnits": 3.0}}, {("state", W): 3.0}),
        (
            "GetItem",
            {"ConsumedCapacity": {"TableName": "alerts", "CapacityUnits": 0.5}},
            {("alerts", R): 0.5},
        ),
        ("Scan", {"ConsumedCapacity": {"TableName": "leases", "CapacityUnits": 98.0}}, {("leases", R): 98.0}),
        (
            "BatchWriteItem",
            {
                "ConsumedCapacity": [
                    {"TableName": "state", "CapacityUnits": 25.0},
                    {"TableName": "alerts", "CapacityUnits": 2.0},
                ]
            },
            {("state", W): 25.0, ("alerts", W): 2.0},
        ),
        (
            "BatchGetItem",
            {"ConsumedCapacity": [{"TableName": "state", "CapacityUnits": 50.0}]},
            {("state", R): 50.0},
        ),
        (  # a split given by DynamoDB wins over the operation's kind
            "TransactWriteItems",
            {
                "ConsumedCapacity": [
                    {
                        "TableName": "state",
                        "CapacityUnits": 6.0,
                        "ReadCapacityUnits": 2.0,
                        "WriteCapacityUnits": 4.0,
                    }
                ]
            },
            {("state", R): 2.0, ("state", W): 4.0},
        ),
        ("PutItem", {}, None),
        ("PutItem", {"Error": {"Code": "ConditionalCheckFailedException"}}, None),
    ],
)
def test_consumed_capacity(operation: str, parsed: dict[str, Any], expected: dict[Any, float] | None) -> None:
    assert consumed_capacity(operation, parsed) == expected


@pytest.mark.parametrize(
    ("operation", "requested", "parsed", "expected"),
    [
        (
            "UpdateItem",
            Items(writes={"state": 1}),
            {"ConsumedCapacity": {"TableName": "state", "CapacityUnits": 2.0}},
            {("state", W, REPORTED): 2.0},
        ),
        (  # an emulator that omits ConsumedCapacity: one unit per item, named as an estimate
            "BatchGetItem",
            Items(reads={"state": 100}),
            {"UnprocessedKeys": {"state": {"Keys": [{"deviceId": {"S": "d"}}] * 40}}},
            {("state", R, ESTIMATED): 60.0},
        ),
        (  # LocalStack's BatchGetItem reports 0 units for items it read: an omission, not a price
            "BatchGetItem",
            Items(reads={"state": 4}),
            {"ConsumedCapacity": [{"TableName": "state", "CapacityUnits": 0.0}]},
            {("state", R, ESTIMATED): 4.0},
        ),
        (  # a refused conditional write is billed; its error response reports no capacity
            "PutItem",
            Items(writes={"alerts": 1}),
            {"Error": {"Code": "ConditionalCheckFailedException"}},
            {("alerts", W, ESTIMATED): 1.0},
        ),
        (  # a throttled attempt consumes nothing, whatever it carries
            "PutItem",
            Items(writes={"state": 1}),
            {"Error": {"Code": "ProvisionedThroughputExceededException"}},
            {},
        ),
    ],
)
def test_billed_capacity(
    operation: str, requested: Items, parsed: dict[str, Any], expected: dict[Any, float]
) -> None:
    assert billed_capacity(operation, requested, parsed) == expected


def test_units_and_differences() -> None:
    counter = RequestCounter()
    counter.count("dynamodb", "Scan", Items(reads={"leases": 1}), {("leases", R, REPORTED): 0.5})
    before = counter.snapshot()
    counter.count("dynamodb", "Scan", Items(reads={"leases": 1}), {("leases", R, REPORTED): 0.5})
    counter.count("dynamodb", "BatchGetItem", Items(reads={"state": 3}), {("state", R, ESTIMATED): 3.0})
    after = counter.snapshot()
    assert after.units(R) == 4.0
    assert after.units(R, REPORTED) == 1.0
    assert after.units(R, ESTIMATED, table="state") == 3.0
    assert after.units(W) == 0.0
    assert after.since(before).capacity_units == {("leases", R, REPORTED): 0.5, ("state", R, ESTIMATED): 3.0}
    assert RequestCounts().units(R) == 0.0


class _Body:
    """The raw stream of an HTTP response botocore reads (``AWSResponse.raw``)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _client_answering(answers: list[tuple[int, dict[str, Any]]], sent: list[dict[str, Any]]) -> Any:
    """A real boto3 DynamoDB client whose requests are answered, in order, with ``answers``
    (status, JSON body) instead of being sent; their bodies are appended to ``sent``."""
    client = boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )

    def answer(request: Any, **_: Any) -> AWSResponse:
        sent.append(json.loads(request.body))
        status, body = answers.pop(0)
        return AWSResponse(request.url, status, {}, _Body(json.dumps(body).encode()))  # type: ignore[arg-type]

    client.meta.events.register("before-send.dynamodb", answer)
    return client


def test_an_attached_client_asks_for_capacity_and_counts_what_is_reported() -> None:
    sent: list[dict[str, Any]] = []
    client = _client_answering(
        [
            (200, {"ConsumedCapacity": {"TableName": "state", "CapacityUnits": 3.0}}),
            (200, {"Responses": {"state": []}, "UnprocessedKeys": {}}),  # no ConsumedCapacity
            (200, {"ConsumedCapacity": {"TableName": "leases", "CapacityUnits": 1.5}, "Items": []}),
            (400, {"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"}),
        ],
        sent,
    )
    counter = RequestCounter()
    counter.attach(client)
    key = {"deviceId": {"S": "d-1"}}
    client.put_item(TableName="state", Item=key)
    client.batch_get_item(RequestItems={"state": {"Keys": [key, key | {"deviceId": {"S": "d-2"}}]}})
    client.scan(TableName="leases", ReturnConsumedCapacity="INDEXES")
    with pytest.raises(ClientError):
        client.put_item(TableName="alerts", Item=key, ConditionExpression="attribute_not_exists(deviceId)")
    assert [body.get("ReturnConsumedCapacity") for body in sent] == ["TOTAL", "TOTAL", "INDEXES", "TOTAL"]
    counts = counter.snapshot()
    assert counts.capacity_units == {
        ("state", W, REPORTED): 3.0,
        ("state", R, ESTIMATED): 2.0,
        ("leases", R, REPORTED): 1.5,
        ("alerts", W, ESTIMATED): 1.0,
    }
    assert counts.calls("dynamodb") == 4
