"""The Lambda entry point for a Kinesis event source mapping with ``ReportBatchItemFailures``.

One call into a processor per event. Without a tumbling window (``TumblingWindowInSeconds`` 0) that is
the pipeline: device states are read and written in the device table every batch. With one (the event
carries ``window``) it is the window processor (``service.runtime.window``): device states travel in the
window's ``state`` and reach the table once per window. Either way the returned ``batchItemFailures``
name, for each device whose effects did not all land, its first record in the batch (and each reject
that could not be stored); Lambda retries from the lowest, and records already applied are skipped on
the way. ``REQUESTS`` counts every AWS request of this container's clients (``service.runtime.accounting``).
Each distinct sink-error cause of an invocation is logged once, as a JSON line on stdout (CloudWatch),
with its sink, AWS error code, resource, shard and the request id (``service.runtime.sink_health``).
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from service.core import records_from_lambda_event
from service.runtime.accounting import RequestCounter

if TYPE_CHECKING:
    from service.runtime.pipeline import Pipeline
    from service.runtime.ports import SinkError
    from service.runtime.window import WindowProcessor

REQUESTS = RequestCounter()


@functools.cache
def _runtime() -> Pipeline:
    """Built once per container, on the first invocation (never at import)."""
    from lambda_shim.bootstrap import build_pipeline  # noqa: PLC0415 - keeps the cold import small
    from service.runtime.config import Settings  # noqa: PLC0415 - as above

    return build_pipeline(Settings(), requests=REQUESTS)


@functools.cache
def _window_budget() -> int:
    from service.runtime.config import Settings  # noqa: PLC0415 - keeps the cold import small

    return Settings().window_state_budget_bytes


def _windows() -> WindowProcessor:
    """The window processor over ``_runtime()``'s sinks (it holds nothing of its own)."""
    from service.runtime.window import WindowProcessor  # noqa: PLC0415 - keeps the cold import small

    return WindowProcessor(_runtime(), _window_budget())


def _log_sink_errors(errors: Iterable[SinkError], shard: str, context: object, now_ms: int) -> None:
    from service.runtime.sink_health import invocation_lines  # noqa: PLC0415 - keeps the cold import small

    service = os.environ.get("POWERTOOLS_SERVICE_NAME", "vitalstream")
    for line in invocation_lines(errors, shard=shard, context=context, service=service, now_ms=now_ms):
        sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _window(event: dict[str, Any], context: object, now_ms: int) -> dict[str, Any]:
    from service.runtime.window import WindowCommitError, WindowEvent  # noqa: PLC0415 - as above

    shard = WindowEvent.of(event).shard_id
    try:
        outcome = _windows().invoke(event, now_ms)
    except WindowCommitError as exc:  # Lambda retries the invocation; CloudWatch says why
        _log_sink_errors(exc.errors, shard, context, now_ms)
        raise
    _log_sink_errors(outcome.errors, shard, context, now_ms)
    return outcome.response()


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    if "window" in event:
        return _window(event, context, now_ms)
    batch = records_from_lambda_event(event)
    framed = batch.records or batch.rejects
    if not framed:
        return {"batchItemFailures": []}
    shard = framed[0].shard_id
    outcome = _runtime().run(shard, batch.records, now_ms=now_ms, rejects=batch.rejects)
    if outcome.errors:
        _log_sink_errors(outcome.errors, shard, context, now_ms)
    return {"batchItemFailures": [{"itemIdentifier": seq} for seq in outcome.failures]}
