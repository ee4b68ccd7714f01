"""The JSON shapes Lambda uses around a Kinesis event source mapping: the invocation event and the
on-failure destination record."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from typing import Any

from service.core import KinesisRecord, iso_ms


def lambda_event(records: Sequence[KinesisRecord], stream_arn: str, region: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": base64.b64encode(r.data).decode("ascii"),
                    "approximateArrivalTimestamp": r.arrival_ms / 1000,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{r.shard_id}:{r.sequence_number}",
                "eventName": "aws:kinesis:record",
                "awsRegion": region,
                "eventSourceARN": stream_arn,
            }
            for r in records
        ]
    }


def failure_record(
    records: Sequence[KinesisRecord],
    stream_arn: str,
    function_arn: str,
    condition: str,
    invoke_count: int,
    now_ms: int,
) -> dict[str, Any]:
    """Metadata only, as Lambda sends it: the records themselves stay in the stream."""
    first, last = records[0], records[-1]
    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": iso_ms(now_ms),
        "KinesisBatchInfo": {
            "shardId": first.shard_id,
            "startSequenceNumber": first.sequence_number,
            "endSequenceNumber": last.sequence_number,
            "approximateArrivalOfFirstRecord": iso_ms(first.arrival_ms),
            "approximateArrivalOfLastRecord": iso_ms(last.arrival_ms),
            "batchSize": len(records),
            "streamArn": stream_arn,
        },
    }
