"""Request accounting against a real endpoint: real boto3 and aiobotocore calls are counted exactly —
requests per attempt (retries included), DynamoDB item writes and reads per table, a refused
conditional write billed — and ``build_pipeline`` counts every sink's client."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aioboto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from service.core import KinesisRecord
from service.runtime.accounting import Kind, RequestCounter, Source
from service.runtime.composition import build_pipeline, client
from service.runtime.consumer.lease_table import LeaseTable
from tests.events import SHARD_ID, T0_MS, sample, sequence
from tests.integration.conftest import DUMMY_KEY, REGION, AwsStack
from tests.integration.fault_proxy import FaultProxy, dynamodb_error

pytestmark = pytest.mark.integration


def item(key: str, name: str, value: str) -> dict[str, Any]:
    return {key: {"S": value}, "note": {"S": name}}


def test_boto3_calls_are_counted_exactly(aws: AwsStack) -> None:
    requests = RequestCounter()
    dynamodb = client(aws.session, "dynamodb", aws.settings, requests=requests)
    s3 = client(aws.session, "s3", aws.settings, requests=requests)
    history, state = aws.settings.alert_history_table, aws.settings.device_state_table

    for n in range(5):
        dynamodb.put_item(TableName=history, Item=item("alertId", "put", f"a-{n}"))
    dynamodb.batch_write_item(
        RequestItems={
            state: [{"PutRequest": {"Item": item("deviceId", "batch", f"d-{n}")}} for n in range(7)]
        }
    )
    with pytest.raises(ClientError) as refused:
        dynamodb.put_item(
            TableName=history,
            Item=item("alertId", "again", "a-0"),
            ConditionExpression="attribute_not_exists(alertId)",
        )
    assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    dynamodb.batch_get_item(RequestItems={state: {"Keys": [{"deviceId": {"S": f"d-{n}"}} for n in range(4)]}})
    dynamodb.get_item(TableName=history, Key={"alertId": {"S": "a-1"}})
    s3.put_object(Bucket=aws.settings.archive_bucket, Key="accounting/one", Body=b"x")

    counts = requests.snapshot()
    assert counts.requests == {
        ("dynamodb", "PutItem"): 6,
        ("dynamodb", "BatchWriteItem"): 1,
        ("dynamodb", "BatchGetItem"): 1,
        ("dynamodb", "GetItem"): 1,
        ("s3", "PutObject"): 1,
    }
    assert counts.item_writes == {history: 6, state: 7}
    assert counts.item_reads == {state: 4, history: 1}


def test_each_attempt_of_a_retried_call_is_a_request(aws: AwsStack) -> None:
    proxy = FaultProxy(str(aws.settings.endpoint_url)).start()
    try:
        requests = RequestCounter()
        settings = aws.settings.model_copy(update={"endpoint_url": proxy.url})
        retrying = Config(retries={"mode": "standard", "max_attempts": 3})
        dynamodb = client(aws.session, "dynamodb", settings, retrying, requests)
        table = settings.device_state_table
        with proxy.inject(dynamodb_error(table)), pytest.raises(ClientError):
            dynamodb.update_item(
                TableName=table,
                Key={"deviceId": {"S": "d-1"}},
                UpdateExpression="SET note = :n",
                ExpressionAttributeValues={":n": {"S": "x"}},
            )
        assert proxy.injected == {"dynamodb UpdateItem": 4}  # the first attempt and 3 retries
        assert requests.snapshot().requests == {("dynamodb", "UpdateItem"): 4}
    finally:
        proxy.stop()


def test_aiobotocore_calls_are_counted(aws: AwsStack) -> None:
    requests = RequestCounter()
    table = aws.settings.alert_history_table

    async def calls() -> None:
        session = aioboto3.Session(
            aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY, region_name=REGION
        )
        async with session.client("dynamodb", endpoint_url=aws.settings.endpoint_url) as dynamodb:
            requests.attach(dynamodb)
            for n in range(3):
                await dynamodb.put_item(TableName=table, Item=item("alertId", "aio", f"aio-{n}"))
            await dynamodb.scan(TableName=table)

    asyncio.run(calls())
    counts = requests.snapshot()
    assert counts.requests == {("dynamodb", "PutItem"): 3, ("dynamodb", "Scan"): 1}
    assert counts.item_writes == {table: 3}
    assert counts.item_reads == {table: 1}


def test_build_pipeline_counts_every_sink(aws: AwsStack) -> None:
    requests = RequestCounter()
    pipeline = build_pipeline(aws.settings, aws.session, requests=requests)
    devices = [f"dev-{n}" for n in range(4)]
    records = [
        KinesisRecord(json.dumps(sample(d, n, 72)).encode(), SHARD_ID, sequence(n), T0_MS)
        for n, d in enumerate(devices)
    ]
    records.append(KinesisRecord(b"not json", SHARD_ID, sequence(len(devices)), T0_MS))
    outcome = pipeline.run(SHARD_ID, records, now_ms=int(time.time() * 1000))
    assert outcome.failures == []

    counts = requests.snapshot()
    state = aws.settings.device_state_table
    assert counts.item_writes[state] == len(devices)  # one conditional UpdateItem per device
    assert counts.item_reads[state] == len(devices)  # one BatchGetItem key per device
    assert counts.calls("s3", "PutObject") >= 1  # the archive object
    assert counts.calls("sqs") >= 1  # the poison record's dead letter

    # capacity: what the emulator reports, or — where it reports none — the item estimate, named so
    for kind, items in ((Kind.WRITE, counts.item_writes), (Kind.READ, counts.item_reads)):
        sources = {source for (table, k, source) in counts.capacity_units if table == state and k == kind}
        assert len(sources) == 1, f"{kind} units of the device table from one source, not {sources}"
        if Source.ESTIMATED in sources:
            assert counts.units(kind, Source.ESTIMATED, state) == items[state]
        else:
            assert counts.units(kind, Source.REPORTED, state) >= 0.5 * items[state]


def test_what_ministack_reports(aws: AwsStack, backend: str) -> None:
    """MiniStack (1.5.x) reports ConsumedCapacity by item size for single-item calls and Scan (half for
    an eventually consistent read) and omits it for BatchGetItem: those units are the named estimate."""
    if backend != "ministack":
        pytest.skip("what MiniStack returns")
    requests = RequestCounter()
    dynamodb = client(aws.session, "dynamodb", aws.settings, requests=requests)
    history, state = aws.settings.alert_history_table, aws.settings.device_state_table
    dynamodb.put_item(TableName=history, Item=item("alertId", "x" * 2500, "cap-1"))  # ≈ 2.5 KB: 3 units
    dynamodb.get_item(TableName=history, Key={"alertId": {"S": "cap-1"}})  # eventually consistent
    dynamodb.batch_get_item(RequestItems={state: {"Keys": [{"deviceId": {"S": "cap-none"}}] * 1}})
    units = requests.snapshot().capacity_units
    assert units[(history, Kind.WRITE, Source.REPORTED)] == 3.0
    assert units[(history, Kind.READ, Source.REPORTED)] == 0.5
    assert units[(state, Kind.READ, Source.ESTIMATED)] == 1.0


def test_the_lease_round_scan_is_eventually_consistent(aws: AwsStack) -> None:
    """``list_leases()`` (every lease round) reads eventually consistent; the shard sync's
    ``list_leases(consistent=True)`` and ``get`` strongly; every Scan asks for its capacity."""
    requests = RequestCounter()
    scans: list[dict[str, Any]] = []

    async def calls() -> None:
        session = aioboto3.Session(
            aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY, region_name=REGION
        )
        async with session.client("dynamodb", endpoint_url=aws.settings.endpoint_url) as dynamodb:
            requests.attach(dynamodb)
            dynamodb.meta.events.register("provide-client-params.dynamodb", record_params)
            table = LeaseTable(dynamodb, f"leases-{time.time_ns()}")
            await table.ensure_table()
            await table.create("shard-0")
            assert [lease.shard_id for lease in await table.list_leases()] == ["shard-0"]
            await table.list_leases(consistent=True)
            assert (await table.get("shard-0")) is not None

    def record_params(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in ("Scan", "GetItem"):
            scans.append({"operation": model.name, **params})

    asyncio.run(calls())
    assert [(s["operation"], s["ConsistentRead"]) for s in scans] == [
        ("Scan", False),
        ("Scan", True),
        ("GetItem", True),
    ]
    units = requests.snapshot()
    assert units.units(Kind.READ) > 0  # reported or estimated, each Scan and GetItem is counted


def test_the_proxy_counts_the_same_capacity_as_the_client(aws: AwsStack) -> None:
    """The bench's outside count (the proxy reads ConsumedCapacity from the responses it forwards)
    agrees with the replicas' own, source by source."""
    proxy = FaultProxy(str(aws.settings.endpoint_url)).start()
    try:
        requests = RequestCounter()
        settings = aws.settings.model_copy(update={"endpoint_url": proxy.url})
        dynamodb = client(aws.session, "dynamodb", settings, requests=requests)
        history, state = settings.alert_history_table, settings.device_state_table
        dynamodb.put_item(TableName=history, Item=item("alertId", "proxy", "p-1"))
        with pytest.raises(ClientError):
            dynamodb.put_item(
                TableName=history,
                Item=item("alertId", "proxy", "p-1"),
                ConditionExpression="attribute_not_exists(alertId)",
            )
        dynamodb.batch_get_item(RequestItems={state: {"Keys": [{"deviceId": {"S": "p-none"}}]}})
        dynamodb.scan(TableName=history)
        own = requests.snapshot().capacity_units
        assert own  # something was counted
        assert proxy.capacity_units == own
    finally:
        proxy.stop()
