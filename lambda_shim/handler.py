"""The Lambda entry point for a Kinesis event source mapping with ``ReportBatchItemFailures``.

One call into the pipeline per event. The returned ``batchItemFailures`` name, for each device whose
effects did not all land, its first record in the batch (and each reject that could not be stored);
Lambda retries from the lowest, and records already applied are skipped on the way. ``REQUESTS``
counts every AWS request of this container's clients (``service.accounting``).
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

from service.accounting import RequestCounter
from service.core import records_from_lambda_event

if TYPE_CHECKING:
    from service.pipeline import Pipeline

REQUESTS = RequestCounter()


@functools.cache
def _runtime() -> Pipeline:
    """Built once per container, on the first invocation (never at import)."""
    from lambda_shim.bootstrap import build_pipeline  # noqa: PLC0415 - keeps the cold import small
    from service.config import Settings  # noqa: PLC0415 - as above

    return build_pipeline(Settings(), requests=REQUESTS)


def handler(event: dict[str, Any], context: object) -> dict[str, list[dict[str, str]]]:
    batch = records_from_lambda_event(event)
    framed = batch.records or batch.rejects
    if not framed:
        return {"batchItemFailures": []}
    outcome = _runtime().run(
        framed[0].shard_id, batch.records, now_ms=int(time.time() * 1000), rejects=batch.rejects
    )
    return {"batchItemFailures": [{"itemIdentifier": seq} for seq in outcome.failures]}
