"""Request accounting, the pure part: which DynamoDB items each call shape is billed for, and the
counter's totals and differences."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from service.runtime.accounting import Items, RequestCounter, RequestCounts, billed_items, requested_items

KEY = {"deviceId": {"S": "d-1"}}
PUT = {"PutRequest": {"Item": KEY}}
DELETE = {"DeleteRequest": {"Key": KEY}}


@pytest.mark.parametrize(
    ("operation", "params", "expected"),
    [
        ("PutItem", {"TableName": "state", "Item": KEY}, Items(writes={"state": 1})),
        ("UpdateItem", {"TableName": "state", "Key": KEY}, Items(writes={"state": 1})),
        ("DeleteItem", {"TableName": "alerts", "Key": KEY}, Items(writes={"alerts": 1})),
        (
            "BatchWriteItem",
            {"RequestItems": {"state": [PUT] * 5 + [DELETE] * 2, "alerts": [PUT]}},
            Items(writes={"state": 7, "alerts": 1}),
        ),
        (
            "TransactWriteItems",
            {
                "TransactItems": [
                    {"Put": {"TableName": "state", "Item": KEY}},
                    {"Update": {"TableName": "state", "Key": KEY}},
                    {"Delete": {"TableName": "alerts", "Key": KEY}},
                    {"ConditionCheck": {"TableName": "leases", "Key": KEY}},
                ]
            },
            Items(writes={"state": 2, "alerts": 1, "leases": 1}),
        ),
        ("GetItem", {"TableName": "alerts", "Key": KEY}, Items(reads={"alerts": 1})),
        ("Query", {"TableName": "leases"}, Items(reads={"leases": 1})),
        ("Scan", {"TableName": "leases"}, Items(reads={"leases": 1})),
        (
            "BatchGetItem",
            {"RequestItems": {"state": {"Keys": [KEY] * 100}, "alerts": {"Keys": [KEY] * 3}}},
            Items(reads={"state": 100, "alerts": 3}),
        ),
        (
            "TransactGetItems",
            {"TransactItems": [{"Get": {"TableName": "state", "Key": KEY}}] * 4},
            Items(reads={"state": 4}),
        ),
        ("DescribeTable", {"TableName": "state"}, Items()),
        ("CreateTable", {"TableName": "state"}, Items()),
    ],
)
def test_requested_items(operation: str, params: dict[str, Any], expected: Items) -> None:
    assert requested_items(operation, params) == expected


@pytest.mark.parametrize(
    ("requested", "parsed", "expected"),
    [
        (Items(writes={"state": 1}), {}, Items(writes={"state": 1})),
        (  # a refused conditional write is billed
            Items(writes={"alerts": 1}),
            {"Error": {"Code": "ConditionalCheckFailedException"}},
            Items(writes={"alerts": 1}),
        ),
        (  # a throttled attempt consumes no capacity
            Items(writes={"state": 1}),
            {"Error": {"Code": "ProvisionedThroughputExceededException"}},
            Items(),
        ),
        (Items(reads={"state": 100}), {"Error": {"Code": "ThrottlingException"}}, Items()),
        (
            Items(writes={"state": 7, "alerts": 1}),
            {"UnprocessedItems": {"state": [PUT, PUT, DELETE]}},
            Items(writes={"state": 4, "alerts": 1}),
        ),
        (
            Items(reads={"state": 100}),
            {"UnprocessedKeys": {"state": {"Keys": [KEY] * 40}}},
            Items(reads={"state": 60}),
        ),
        (Items(writes={"state": 7}), {"UnprocessedItems": {}}, Items(writes={"state": 7})),
    ],
)
def test_billed_items(requested: Items, parsed: dict[str, Any], expected: Items) -> None:
    assert billed_items(requested, parsed) == expected


def test_counter_totals_and_differences() -> None:
    counter = RequestCounter()
    counter.count("dynamodb", "UpdateItem", Items(writes={"state": 1}))
    before = counter.snapshot()
    counter.count("dynamodb", "UpdateItem", Items(writes={"state": 1}))
    counter.count("dynamodb", "BatchGetItem", Items(reads={"state": 30}))
    counter.count("s3", "PutObject", Items())
    after = counter.snapshot()
    assert after.requests == {
        ("dynamodb", "UpdateItem"): 2,
        ("dynamodb", "BatchGetItem"): 1,
        ("s3", "PutObject"): 1,
    }
    assert after.item_writes == {"state": 2}
    assert after.item_reads == {"state": 30}
    assert after.calls() == 4
    assert after.calls("dynamodb") == 3
    assert after.calls("s3", "PutObject") == 1
    delta = after.since(before)
    assert delta.requests[("dynamodb", "UpdateItem")] == 1
    assert delta.item_writes == {"state": 1}
    assert delta.calls() == 3
    assert RequestCounts().calls() == 0


def test_counter_is_exact_across_threads() -> None:
    counter = RequestCounter()

    def count() -> None:
        for _ in range(2_000):
            counter.count("sqs", "SendMessageBatch", Items(writes={"t": 1}))

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = counter.snapshot()
    assert counts.requests == {("sqs", "SendMessageBatch"): 16_000}
    assert counts.item_writes == {"t": 16_000}
