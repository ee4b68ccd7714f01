"""The month's bill of a deployment: every line, from the price file and the measured figures."""

from __future__ import annotations

from service.tools.cost import ingest, processing
from service.tools.cost.data import Measured, Prices, list_prices, measured
from service.tools.cost.model import Bill, Deployment, Mode


def bill(d: Deployment, prices: Prices | None = None, figures: Measured | None = None) -> Bill:
    """``d``'s bill at ``prices`` (the price file) with ``figures`` (measured.json for ``d.mode``)."""
    prices = prices or list_prices()
    figures = figures or measured(d.mode.value)
    sample_bytes = figures.sample_bytes
    shards = ingest.stream_shards(d, prices, sample_bytes) if d.devices else 0
    pods = processing.replicas(d, figures, shards)
    lines = [
        *ingest.iot_core(d, prices, sample_bytes),
        *ingest.bridge(d, prices),
        *ingest.kinesis(d, prices, sample_bytes),
    ]
    if d.mode is Mode.LAMBDA:
        lines += processing.lambda_lines(d, prices, figures, shards)
    else:
        lines += processing.consumer_compute(d, prices, figures, pods)
    lines += [
        *processing.dynamodb(d, prices, figures, shards, pods if d.mode is Mode.CONSUMER else 0),
        *processing.s3(d, prices, figures, shards),
        *processing.messaging(d, prices, figures),
    ]
    return Bill(
        d,
        lines,
        ingest.kinesis_on_demand(d, prices, sample_bytes),
        prices_as_of=prices.as_of,
        measured_at=figures.measured_at,
    )
