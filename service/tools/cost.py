"""What a deployment costs per month in AWS requests, from measured request counts and list prices.

The formula (documented with the prices in ``docs/cost.md``): counts measured over ``records``
records become figures per 1,000 records (``PerThousand``); at a fleet's rate of ``events_per_s``
a month holds ``events_per_s * 3600 * HOURS_PER_MONTH`` records, and each figure is scaled to it:

- DynamoDB: item writes x the write request unit price, item reads x the read request unit price
  (one unit per item: items up to 1 KB written, 4 KB read strongly consistent; the project issues no
  transactions, which would cost 2 units per item); DynamoDB charges nothing per request;
- S3: PUT, COPY, POST and LIST requests at the PUT price, DELETE free, every other request (GET,
  HEAD) at the GET price;
- SNS and SQS: every request at its request price (each message under 64 KB);
- Kinesis: shard-hours for ``ceil(events_per_s / 1000)`` shards (1,000 records/s of writes per
  shard) plus one PUT payload unit per record (records under 25 KB); GetRecords is not charged.

Compute (Lambda duration, Kubernetes nodes), data transfer and storage are not in it. Figures are
per record, so whatever a run spends per unit of time (lease renewals, idle polls) is spread over
that run's records: a short or slow run overstates it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from service.runtime.accounting import RequestCounts

PRICES_AS_OF = "2026-12-02"
HOURS_PER_MONTH = 730
FLEET_DEVICES = 10_000
FLEET_EVENTS_PER_S = 2_000
SHARD_RECORDS_PER_S = 1_000

S3_PUT_TIER = frozenset(
    {
        "PutObject",
        "CopyObject",
        "PostObject",
        "ListObjects",
        "ListObjectsV2",
        "ListObjectVersions",
        "ListBuckets",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
    }
)
S3_FREE = frozenset({"DeleteObject", "DeleteObjects", "AbortMultipartUpload"})


@dataclass(frozen=True, slots=True)
class Prices:
    """US dollars per unit: on-demand list prices in us-east-1, as this project took them on
    ``PRICES_AS_OF``."""

    dynamodb_write_unit: float = 0.625 / 1e6
    dynamodb_read_unit: float = 0.125 / 1e6
    s3_put: float = 0.005 / 1e3
    s3_get: float = 0.0004 / 1e3
    sns_request: float = 0.50 / 1e6
    sqs_request: float = 0.40 / 1e6
    kinesis_shard_hour: float = 0.015
    kinesis_put_unit: float = 0.014 / 1e6


LIST_PRICES = Prices()


@dataclass(frozen=True, slots=True)
class PerThousand:
    """Requests by (service, operation) and DynamoDB items by table, per 1,000 records."""

    requests: Mapping[tuple[str, str], float] = field(default_factory=dict)
    item_writes: Mapping[str, float] = field(default_factory=dict)
    item_reads: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, counts: RequestCounts, records: int) -> PerThousand:
        """``counts`` spread over ``records`` records (all zero when there were none)."""
        scale = 1000 / records if records > 0 else 0.0
        return cls(
            {key: n * scale for key, n in counts.requests.items()},
            {table: n * scale for table, n in counts.item_writes.items()},
            {table: n * scale for table, n in counts.item_reads.items()},
        )

    def calls(self, service: str | None = None, operation: str | None = None) -> float:
        return sum(
            n
            for (s, o), n in self.requests.items()
            if (service is None or s == service) and (operation is None or o == operation)
        )


@dataclass(frozen=True, slots=True)
class MonthlyCost:
    """US dollars per month, by what is billed."""

    dynamodb_writes: float
    dynamodb_reads: float
    s3: float
    sns: float
    sqs: float
    kinesis: float

    @property
    def total(self) -> float:
        return self.dynamodb_writes + self.dynamodb_reads + self.s3 + self.sns + self.sqs + self.kinesis


def records_per_month(events_per_s: float) -> float:
    return events_per_s * 3600 * HOURS_PER_MONTH


def monthly_cost(
    per_1k: PerThousand, events_per_s: float = FLEET_EVENTS_PER_S, prices: Prices = LIST_PRICES
) -> MonthlyCost:
    """The month's bill for ``per_1k`` at ``events_per_s`` records per second (module docstring)."""
    thousands = records_per_month(events_per_s) / 1000
    s3_put = sum(n for (s, o), n in per_1k.requests.items() if s == "s3" and o in S3_PUT_TIER)
    s3_get = sum(n for (s, o), n in per_1k.requests.items() if s == "s3" and o not in S3_PUT_TIER | S3_FREE)
    shards = max(math.ceil(events_per_s / SHARD_RECORDS_PER_S), 1)
    return MonthlyCost(
        dynamodb_writes=sum(per_1k.item_writes.values()) * thousands * prices.dynamodb_write_unit,
        dynamodb_reads=sum(per_1k.item_reads.values()) * thousands * prices.dynamodb_read_unit,
        s3=(s3_put * prices.s3_put + s3_get * prices.s3_get) * thousands,
        sns=per_1k.calls("sns") * thousands * prices.sns_request,
        sqs=per_1k.calls("sqs") * thousands * prices.sqs_request,
        kinesis=shards * HOURS_PER_MONTH * prices.kinesis_shard_hour
        + records_per_month(events_per_s) * prices.kinesis_put_unit,
    )
