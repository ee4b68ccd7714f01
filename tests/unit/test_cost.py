"""The cost model: per-1K figures from counts, and the monthly bill at list prices."""

from __future__ import annotations

import pytest

from service.runtime.accounting import RequestCounts
from service.tools.cost import LIST_PRICES, PerThousand, monthly_cost, records_per_month

MONTH_AT_2K = 2_000 * 3600 * 730  # records in a month at 2,000 events/s: 5.256 billion
KINESIS_AT_2K = 2 * 730 * 0.015 + MONTH_AT_2K * 0.014 / 1e6  # 2 shards and one PUT unit per record


def test_per_thousand_scales_counts_by_records() -> None:
    counts = RequestCounts(
        {("dynamodb", "UpdateItem"): 500, ("s3", "PutObject"): 4}, {"state": 500}, {"state": 250}
    )
    per_1k = PerThousand.of(counts, 2_000)
    assert per_1k.requests == {("dynamodb", "UpdateItem"): 250.0, ("s3", "PutObject"): 2.0}
    assert per_1k.item_writes == {"state": 250.0}
    assert per_1k.item_reads == {"state": 125.0}
    assert per_1k.calls() == 252.0
    assert per_1k.calls("s3") == 2.0
    assert PerThousand.of(counts, 0).calls() == 0.0


def test_prices_are_the_documented_list_prices() -> None:
    documented = {
        "dynamodb_write_unit": 0.625e-6,
        "dynamodb_read_unit": 0.125e-6,
        "s3_put": 0.005e-3,
        "s3_get": 0.0004e-3,
        "sns_request": 0.50e-6,
        "sqs_request": 0.40e-6,
        "kinesis_shard_hour": 0.015,
        "kinesis_put_unit": 0.014e-6,
    }
    assert {name: getattr(LIST_PRICES, name) for name in documented} == pytest.approx(documented)
    assert records_per_month(2_000) == MONTH_AT_2K


@pytest.mark.parametrize(
    ("per_1k", "expected"),
    [
        (  # per-event state I/O: one item write and one item read per record
            PerThousand(item_writes={"state": 1000.0}, item_reads={"state": 1000.0}),
            {"dynamodb_writes": 3285.0, "dynamodb_reads": 657.0, "kinesis": KINESIS_AT_2K},
        ),
        (  # S3: PUT and LIST at the PUT price, GET and HEAD at the GET price, DELETE free
            PerThousand(
                requests={
                    ("s3", "PutObject"): 2.0,
                    ("s3", "ListObjectsV2"): 1.0,
                    ("s3", "GetObject"): 10.0,
                    ("s3", "HeadObject"): 10.0,
                    ("s3", "DeleteObject"): 100.0,
                }
            ),
            {"s3": MONTH_AT_2K / 1000 * (3 * 0.005e-3 + 20 * 0.0004e-3), "kinesis": KINESIS_AT_2K},
        ),
        (  # SNS and SQS: every request; DynamoDB and Kinesis requests themselves are free
            PerThousand(
                requests={
                    ("sns", "Publish"): 1.0,
                    ("sqs", "SendMessageBatch"): 2.0,
                    ("dynamodb", "BatchGetItem"): 50.0,
                    ("kinesis", "GetRecords"): 30.0,
                }
            ),
            {
                "sns": MONTH_AT_2K / 1000 * 0.5e-6,
                "sqs": MONTH_AT_2K / 1000 * 2 * 0.4e-6,
                "kinesis": KINESIS_AT_2K,
            },
        ),
    ],
)
def test_monthly_cost(per_1k: PerThousand, expected: dict[str, float]) -> None:
    cost = monthly_cost(per_1k, 2_000)
    parts = ("dynamodb_writes", "dynamodb_reads", "s3", "sns", "sqs", "kinesis")
    for part in parts:
        assert getattr(cost, part) == pytest.approx(expected.get(part, 0.0)), part
    assert cost.total == pytest.approx(sum(expected.values()))


def test_kinesis_shards_follow_the_write_rate() -> None:
    assert monthly_cost(PerThousand(), 999).kinesis == pytest.approx(
        730 * 0.015 + records_per_month(999) * 0.014e-6
    )
    assert monthly_cost(PerThousand(), 2_001).kinesis == pytest.approx(
        3 * 730 * 0.015 + records_per_month(2_001) * 0.014e-6
    )
