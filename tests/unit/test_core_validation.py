"""Every rule of the telemetry contract, one row each; unknown fields; KPL; Lambda framing."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from service.core import RejectReason, iso_ms, records_from_lambda_event
from service.core.kpl import KPL_MAGIC
from tests.unit.builders import OMIT, SEQ0, SHARD, T0, kpl_aggregate, record, records, run, telemetry

INVALID: list[tuple[str, bytes | dict[str, Any], RejectReason, str | None]] = [
    ("not utf-8", b'{"deviceId":"\xff\xfe"}', RejectReason.INVALID_UTF8, None),
    ("not json", b"garbage", RejectReason.INVALID_JSON, None),
    ("truncated json", b'{"deviceId":"dev-1",', RejectReason.INVALID_JSON, None),
    ("empty payload", b"", RejectReason.INVALID_JSON, None),
    ("array", b"[1,2]", RejectReason.NOT_AN_OBJECT, None),
    ("string", b'"hello"', RejectReason.NOT_AN_OBJECT, None),
    ("no deviceId", telemetry(deviceId=OMIT), RejectReason.MISSING_FIELD, "deviceId"),
    ("deviceId null", telemetry(deviceId=None), RejectReason.MISSING_FIELD, "deviceId"),
    ("deviceId number", telemetry(deviceId=7), RejectReason.WRONG_TYPE, "deviceId"),
    ("deviceId empty", telemetry(deviceId=""), RejectReason.INVALID_DEVICE_ID, "deviceId"),
    ("deviceId 129 chars", telemetry(deviceId="a" * 129), RejectReason.INVALID_DEVICE_ID, "deviceId"),
    ("deviceId slash", telemetry(deviceId="dev/1"), RejectReason.INVALID_DEVICE_ID, "deviceId"),
    ("deviceId space", telemetry(deviceId="dev 1"), RejectReason.INVALID_DEVICE_ID, "deviceId"),
    ("deviceId unicode", telemetry(deviceId="dév-1"), RejectReason.INVALID_DEVICE_ID, "deviceId"),
    ("no timestamp", telemetry(timestamp=OMIT), RejectReason.MISSING_FIELD, "timestamp"),
    ("timestamp number", telemetry(timestamp=1700000000), RejectReason.WRONG_TYPE, "timestamp"),
    (
        "timestamp no offset",
        telemetry(timestamp="2026-11-28T02:31:24"),
        RejectReason.INVALID_TIMESTAMP,
        "timestamp",
    ),
    ("timestamp date only", telemetry(timestamp="2026-11-28"), RejectReason.INVALID_TIMESTAMP, "timestamp"),
    (
        "timestamp month 13",
        telemetry(timestamp="2026-13-28T02:31:24Z"),
        RejectReason.INVALID_TIMESTAMP,
        "timestamp",
    ),
    (
        "timestamp words",
        telemetry(timestamp="yesterday at noon"),
        RejectReason.INVALID_TIMESTAMP,
        "timestamp",
    ),
    (
        "timestamp canonical but second 61",
        telemetry(timestamp="2026-11-28T02:31:61.000Z"),
        RejectReason.INVALID_TIMESTAMP,
        "timestamp",
    ),
    ("no heartRate", telemetry(heartRate=OMIT), RejectReason.MISSING_FIELD, "heartRate"),
    ("heartRate string", telemetry(heartRate="72"), RejectReason.WRONG_TYPE, "heartRate"),
    ("heartRate float", telemetry(heartRate=72.5), RejectReason.WRONG_TYPE, "heartRate"),
    ("heartRate bool", telemetry(heartRate=True), RejectReason.WRONG_TYPE, "heartRate"),
    ("heartRate negative", telemetry(heartRate=-1), RejectReason.OUT_OF_RANGE, "heartRate"),
    ("heartRate 301", telemetry(heartRate=301), RejectReason.OUT_OF_RANGE, "heartRate"),
    ("no steps", telemetry(steps=OMIT), RejectReason.MISSING_FIELD, "steps"),
    ("steps negative", telemetry(steps=-3), RejectReason.OUT_OF_RANGE, "steps"),
    ("steps list", telemetry(steps=[1]), RejectReason.WRONG_TYPE, "steps"),
    ("spo2 49", telemetry(spo2=49), RejectReason.OUT_OF_RANGE, "spo2"),
    ("spo2 101", telemetry(spo2=101), RejectReason.OUT_OF_RANGE, "spo2"),
    ("spo2 string", telemetry(spo2="97"), RejectReason.WRONG_TYPE, "spo2"),
    ("battery 101", telemetry(battery=101), RejectReason.OUT_OF_RANGE, "battery"),
    ("battery -1", telemetry(battery=-1), RejectReason.OUT_OF_RANGE, "battery"),
    ("skinTemp string", telemetry(skinTemp="hot"), RejectReason.WRONG_TYPE, "skinTemp"),
    ("skinTemp bool", telemetry(skinTemp=False), RejectReason.WRONG_TYPE, "skinTemp"),
    ("seq negative", telemetry(seq=-1), RejectReason.OUT_OF_RANGE, "seq"),
    ("seq float", telemetry(seq=1.5), RejectReason.WRONG_TYPE, "seq"),
    ("seq beyond int64", telemetry(seq=2**63), RejectReason.OUT_OF_RANGE, "seq"),
]


@pytest.mark.parametrize(
    ("payload", "reason", "field"), [row[1:] for row in INVALID], ids=[row[0] for row in INVALID]
)
def test_each_broken_rule_is_a_reject_with_its_reason(
    payload: bytes | dict[str, Any], reason: RejectReason, field: str | None
) -> None:
    result = run([record(payload, SEQ0)])

    assert result.processed == []
    [reject] = result.rejects
    assert (reject.reason, reject.field) == (reason, field)
    assert reject.sequence_number == str(SEQ0)
    assert reject.shard_id == SHARD
    body = reject.to_dict()
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    assert base64.b64decode(str(body["data"])) == raw
    assert body["reason"] == reason.value


VALID: list[tuple[str, dict[str, Any]]] = [
    ("minimal", {"deviceId": "d", "timestamp": "2026-11-28T02:31:24Z", "heartRate": 0, "steps": 0}),
    ("offset timestamp", telemetry(timestamp="2026-11-28T03:31:24.5+01:00")),
    ("microseconds", telemetry(timestamp="2026-11-28T02:31:24.123456Z")),
    ("bounds high", telemetry(heartRate=300, spo2=100, battery=100)),
    ("bounds low", telemetry(heartRate=0, spo2=50, battery=0)),
    ("integer skinTemp", telemetry(skinTemp=33)),
    ("nulls for optional fields", telemetry(spo2=None, skinTemp=None, battery=None, seq=None)),
    ("all id characters", telemetry(deviceId="Az09_.:-" + "x" * 120)),
]


@pytest.mark.parametrize("payload", [row[1] for row in VALID], ids=[row[0] for row in VALID])
def test_valid_samples_are_processed(payload: dict[str, Any]) -> None:
    result = run([record(payload, SEQ0)])

    assert result.rejects == []
    [processed] = result.processed
    assert processed.device_id == payload["deviceId"]


def test_offset_timestamps_resolve_to_the_same_instant() -> None:
    result = run(
        records(
            [
                telemetry(deviceId="a", timestamp="2026-11-28T02:00:00.250Z"),
                telemetry(deviceId="b", timestamp="2026-11-28T03:00:00.250+01:00"),
                telemetry(deviceId="c", timestamp="2026-11-27T21:30:00.25-04:30"),
            ]
        )
    )

    assert len({p.event_ms for p in result.processed}) == 1


def test_unknown_fields_pass_through_and_enrichment_is_appended() -> None:
    payload = telemetry(seq=4, firmware={"version": "1.2.3"}, tags=["wrist"])
    result = run([record(payload, SEQ0 + 7)], now_ms=T0 + 1_234)

    line = json.loads(result.processed[0].to_json())
    assert {k: line[k] for k in payload} == payload
    assert line["processedAt"] == "2026-11-28T02:00:01.234Z"
    assert line["status"] == "NORMAL"
    assert line["anomalies"] == []
    assert line["shardId"] == SHARD
    assert line["sequenceNumber"] == str(SEQ0 + 7)
    assert line["latencyMs"] == 1_234


def test_enrichment_keys_sent_by_a_device_are_replaced_not_duplicated() -> None:
    payload = telemetry(status="HACKED", latencyMs=-5, shardId="mine")
    result = run([record(payload, SEQ0)], now_ms=T0 + 10)

    text = result.processed[0].to_json()
    assert text.count(b'"status"') == 1
    line = json.loads(text)
    assert (line["status"], line["latencyMs"], line["shardId"]) == ("NORMAL", 10, SHARD)


def test_high_heart_rate_status_is_the_seed_contract() -> None:
    result = run(
        records([telemetry(heartRate=141, steps=40), telemetry(heartRate=140, steps=40, timestamp=iso(5))])
    )

    assert [p.status.value for p in result.processed] == ["HIGH_HEART_RATE", "NORMAL"]


def iso(seconds: int) -> str:
    return iso_ms(T0 + seconds * 1000)


def test_kpl_aggregated_record_is_deaggregated_with_sub_sequence_numbers() -> None:
    inner = [
        ("dev-a", json.dumps(telemetry(deviceId="dev-a")).encode()),
        ("dev-b", json.dumps(telemetry(deviceId="dev-b")).encode()),
        ("dev-a", b"not json"),
    ]
    blob = kpl_aggregate(inner)
    assert blob.startswith(KPL_MAGIC)

    result = run([record(blob, SEQ0)])

    assert [(p.device_id, p.sub_sequence_number) for p in result.processed] == [("dev-a", 0), ("dev-b", 1)]
    [reject] = result.rejects
    assert (reject.reason, reject.sub_sequence_number, reject.data) == (
        RejectReason.INVALID_JSON,
        2,
        b"not json",
    )
    assert json.loads(result.processed[1].to_json())["subSequenceNumber"] == 1


def test_corrupt_aggregate_is_rejected_whole() -> None:
    blob = bytearray(kpl_aggregate([("dev-a", json.dumps(telemetry(deviceId="dev-a")).encode())]))
    blob[-1] ^= 0xFF  # break the MD5 trailer

    result = run([record(bytes(blob), SEQ0)])

    assert result.processed == []
    assert [r.reason for r in result.rejects] == [RejectReason.INVALID_AGGREGATE]


def _lambda_event(entries: list[str]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "kinesis": {
                    "partitionKey": "dev-1",
                    "sequenceNumber": str(SEQ0 + i),
                    "data": data,
                    "approximateArrivalTimestamp": 1795831200.25,
                },
                "eventID": f"{SHARD}:{SEQ0 + i}",
            }
            for i, data in enumerate(entries)
        ]
    }


def test_lambda_event_is_base64_decoded_and_bad_base64_is_a_reject() -> None:
    good = base64.b64encode(json.dumps(telemetry()).encode()).decode()
    batch = records_from_lambda_event(_lambda_event([good, "@@not-base64@@"]))

    assert [(r.shard_id, r.sequence_number, r.arrival_ms) for r in batch.records] == [
        (SHARD, str(SEQ0), 1_795_831_200_250)
    ]
    assert json.loads(batch.records[0].data) == telemetry()
    [reject] = batch.rejects
    assert (reject.reason, reject.sequence_number, reject.data) == (
        RejectReason.INVALID_BASE64,
        str(SEQ0 + 1),
        b"@@not-base64@@",
    )
