"""A run's request counts per 1,000 records (the demo report's accounting) and S3's price tiers."""

from __future__ import annotations

import pytest

from service.runtime.accounting import RequestCounts
from service.tools.cost.counts import PerThousand, s3_tier


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


@pytest.mark.parametrize(
    ("operation", "tier"),
    [
        ("PutObject", "put"),
        ("ListObjectsV2", "put"),
        ("CompleteMultipartUpload", "put"),
        ("GetObject", "get"),
        ("HeadObject", "get"),
        ("DeleteObject", None),
    ],
)
def test_s3_operations_are_billed_at_their_tier(operation: str, tier: str | None) -> None:
    assert s3_tier(operation) == tier


def test_the_demo_report_prices_its_counts_all_in_without_the_lease_table() -> None:
    from service.tools.demo.report import priced  # noqa: PLC0415 - the demo's module, for this test only

    counts = PerThousand(
        requests={("s3", "PutObject"): 1.0, ("sns", "Publish"): 4.9},
        item_writes={
            "vitalstream-device-state": 92.4,
            "vitalstream-alerts": 30.0,
            "vitalstream-leases": 300.0,
        },
        item_reads={"vitalstream-device-state": 20.8, "vitalstream-leases": 300.0},
    )
    at_10k = priced(counts, "consumer", 10_000)
    assert at_10k.biggest().service == "iot-core"
    assert {"iot-core", "kinesis", "compute", "dynamodb", "s3", "sns"} <= set(at_10k.by_service())
    samples = 2_000 * 730 * 3600
    # the run's own alert rate; its writes less the 60 s reference and 4 writes per alert the model prices
    sns = next(line for line in at_10k.lines if line.service == "sns")
    assert sns.quantity == pytest.approx(4.9 / 1000 * samples)
    other = next(line for line in at_10k.lines if line.item.startswith("other write"))
    assert other.quantity == pytest.approx((92.4 + 30.0 - 1000 * 5 / 60 - 4 * 4.9) / 1000 * samples)
    assert priced(counts, "lambda", 500).total < at_10k.total
