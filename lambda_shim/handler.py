"""The Lambda entry point for a Kinesis event source mapping with ``ReportBatchItemFailures``.

One call into a processor per event. Without a tumbling window (``TumblingWindowInSeconds`` 0) that is
the pipeline: device states are read and written in the device table every batch. With one (the event
carries ``window``) it is the window processor (``service.runtime.window``): device states travel in the
window's ``state`` and reach the table once per window. Either way the returned ``batchItemFailures``
name, for each device whose effects did not all land, its first record in the batch (and each reject
that could not be stored); Lambda retries from the lowest, and records already applied are skipped on
the way. ``REQUESTS`` counts every AWS request of this container's clients (``service.runtime.accounting``).

Every invocation, whether it returns or raises, writes to ``OUTPUT`` (stdout, which Lambda sends to
CloudWatch Logs, when None) its JSON log lines (``service.runtime.invocation``: shard, sequence range,
batch size, request id, and one line per distinct sink-error cause with its AWS error code), then its
Embedded Metric Format line (``service.runtime.emf``), which counts this invocation's share of
``REQUESTS``. A sandbox runs one invocation at a time, so that share is exact; a local tool that runs
the shim from several threads of one process shares ``REQUESTS`` between them.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from service.core import records_from_lambda_event
from service.runtime import emf
from service.runtime.accounting import RequestCounter, RequestCounts
from service.runtime.invocation import (
    EventSpan,
    Invocation,
    Mode,
    context_fields,
    log_lines,
    of_batch,
    of_window,
)

if TYPE_CHECKING:
    from service.runtime.config import Settings
    from service.runtime.pipeline import Pipeline
    from service.runtime.window import WindowProcessor

REQUESTS = RequestCounter()
OUTPUT: TextIO | None = None  # where the invocation's lines go; None: sys.stdout when they are written
_INVOCATIONS = itertools.count()


@functools.cache
def _settings() -> Settings:
    """Read from the environment once per container, and again whenever ``_runtime`` is rebuilt."""
    from service.runtime.config import Settings  # noqa: PLC0415 - keeps the cold import small

    return Settings()


@functools.cache
def _runtime() -> Pipeline:
    """Built once per container, on the first invocation (never at import)."""
    from lambda_shim.bootstrap import build_pipeline  # noqa: PLC0415 - keeps the cold import small

    _settings.cache_clear()  # a rebuild (``_runtime.cache_clear()``) reads the environment again
    return build_pipeline(_settings(), requests=REQUESTS)


def _window_budget() -> int:
    return _settings().window_state_budget_bytes


def _window_writes() -> int:
    return _settings().window_writes_per_invocation


def _windows() -> WindowProcessor:
    """The window processor over ``_runtime()``'s sinks (it holds nothing of its own)."""
    from service.runtime.window import WindowProcessor  # noqa: PLC0415 - keeps the cold import small

    pipeline = _runtime()  # first: a rebuild reads the environment again
    if pipeline.handoffs is None:
        raise RuntimeError("tumbling windows need the pipeline's window handoffs (build_pipeline sets them)")
    return WindowProcessor(pipeline, pipeline.handoffs, _window_budget(), _window_writes())


def _window(event: dict[str, Any], span: EventSpan, now_ms: int) -> tuple[dict[str, Any], Invocation]:
    outcome = _windows().invoke(event, now_ms)
    response = outcome.response()
    return response, of_window(span, outcome, len(json.dumps(response["state"])))


def _batch(event: dict[str, Any], span: EventSpan, now_ms: int) -> tuple[dict[str, Any], Invocation]:
    batch = records_from_lambda_event(event)
    framed = batch.records or batch.rejects
    if not framed:
        return {"batchItemFailures": []}, of_batch(span, None)
    outcome = _runtime().run(framed[0].shard_id, batch.records, now_ms=now_ms, rejects=batch.rejects)
    return {"batchItemFailures": [{"itemIdentifier": s} for s in outcome.failures]}, of_batch(span, outcome)


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    cold_start, now_ms, before = next(_INVOCATIONS) == 0, int(time.time() * 1000), REQUESTS.snapshot()
    span, windowed = EventSpan.of(event), "window" in event
    try:
        response, invocation = (_window if windowed else _batch)(event, span, now_ms)
    except Exception as exc:  # Lambda retries the invocation (a refused window commit); CloudWatch says why
        mode = Mode.WINDOW if windowed else Mode.BATCH
        failed = Invocation(mode, span, errors=getattr(exc, "errors", ()), error=type(exc).__name__)
        report(failed, context, cold_start, now_ms, before)
        raise
    report(invocation, context, cold_start, now_ms, before)
    return response


def report(
    invocation: Invocation, context: object, cold_start: bool, started_ms: int, before: RequestCounts
) -> None:
    """Write the invocation's log lines and EMF line, with its duration and its share of ``REQUESTS``."""
    settings, now_ms = _settings(), int(time.time() * 1000)
    done = dataclasses.replace(
        invocation,
        duration_ms=max(now_ms - started_ms, 0),
        requests=REQUESTS.snapshot().since(before),
    )
    fields, service = context_fields(context, cold_start), settings.service_name
    lines = log_lines(done, service=service, context=fields, now_ms=now_ms)
    lines += emf.invocation_lines(
        done, namespace=settings.metrics_namespace, service=service, context=fields, now_ms=now_ms
    )
    out = OUTPUT or sys.stdout
    out.write("".join(line + "\n" for line in lines))
    out.flush()
