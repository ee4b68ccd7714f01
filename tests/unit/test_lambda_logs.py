"""Lambda mode's JSON log lines: Powertools Logger's keys, the shard and sequence range, one line per
distinct sink-error cause with its AWS error code — in the shape the consumer's lines have too."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from typing import Any

from service.runtime.invocation import EventSpan, Invocation, Mode, context_fields, log_lines
from service.runtime.logs import JsonFormatter
from service.runtime.ports import Sink, SinkError
from tests.events import SHARD_ID, sequence

SPAN = EventSpan(SHARD_ID, sequence(0), sequence(2), 3)
POWERTOOLS_KEYS = ["level", "message", "timestamp", "service"]


@dataclass(frozen=True)
class LambdaContext:
    aws_request_id: str = "c0ffee"
    function_name: str = "vitalstream-processor"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:vitalstream-processor"


def lines(invocation: Invocation, context: object = LambdaContext()) -> list[dict[str, Any]]:
    fields = context_fields(context, cold_start=False)
    return [json.loads(line) for line in log_lines(invocation, service="svc", context=fields, now_ms=1_000)]


def test_one_summary_line_with_powertools_keys_shard_and_sequence_range() -> None:
    (line,) = lines(Invocation(Mode.BATCH, SPAN, failures=1))
    assert list(line)[:4] == POWERTOOLS_KEYS
    assert line == {
        "level": "INFO",
        "message": "batch processed",
        "timestamp": "1970-01-01T00:00:01.000Z",
        "service": "svc",
        "cold_start": False,
        "function_name": "vitalstream-processor",
        "function_memory_size": 512,
        "function_arn": "arn:aws:lambda:us-east-1:123456789012:function:vitalstream-processor",
        "function_request_id": "c0ffee",
        "shard_id": SHARD_ID,
        "first_sequence": SPAN.first,
        "last_sequence": SPAN.last,
        "batch_size": 3,
        "mode": "batch",
        "failures": 1,
    }


def test_one_line_per_distinct_cause_with_its_aws_error_code() -> None:
    denied = SinkError(Sink.ARCHIVE, "AccessDenied", "archive-bucket", permanent=True)
    throttled = SinkError(Sink.ALERTS, "Throttled", "arn:aws:sns:us-east-1:1:alerts", permanent=False)

    summary, *causes = lines(Invocation(Mode.BATCH, SPAN, errors=(denied, throttled, denied)))

    assert summary["message"] == "batch processed"
    assert [
        (c["level"], c["message"], c["sink"], c["code"], c["resource"], c["permanent"], c["error"])
        for c in causes
    ] == [
        ("ERROR", "sink error", "archive", "AccessDenied", "archive-bucket", True, "SinkError"),
        (
            "WARNING",
            "sink error",
            "alerts",
            "Throttled",
            "arn:aws:sns:us-east-1:1:alerts",
            False,
            "SinkError",
        ),
    ]
    for cause in causes:
        assert list(cause)[:4] == POWERTOOLS_KEYS
        assert (cause["shard_id"], cause["first_sequence"], cause["function_request_id"]) == (
            SHARD_ID,
            SPAN.first,
            "c0ffee",
        )


def test_a_failed_window_commit_is_an_error_line() -> None:
    denied = SinkError(Sink.DEVICE_STATE, "AccessDeniedException", "table", permanent=True)
    failed = Invocation(Mode.WINDOW, SPAN, errors=(denied,), error="WindowCommitError")
    summary, cause = lines(failed)
    assert (summary["level"], summary["message"], summary["mode"], summary["error"]) == (
        "ERROR",
        "invocation failed",
        "window",
        "WindowCommitError",
    )
    assert cause["code"] == "AccessDeniedException"


def test_without_a_context_the_lines_still_say_why() -> None:
    denied = SinkError(Sink.DEAD_LETTER, "QueueDoesNotExist", "https://sqs/q.fifo", permanent=True)
    _, cause = lines(Invocation(Mode.BATCH, SPAN, errors=(denied,)), context=None)
    assert "function_request_id" not in cause
    assert (cause["code"], cause["cold_start"]) == ("QueueDoesNotExist", False)


def test_the_consumer_formatter_renders_the_same_shape() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("svc", worker="worker-1"))
    log = logging.getLogger("tests.lambda_logs")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("sink error", extra={"shard_id": SHARD_ID, "code": "AccessDenied"})
    finally:
        log.removeHandler(handler)
    consumer = json.loads(stream.getvalue())
    (_, lambda_line) = lines(
        Invocation(Mode.BATCH, SPAN, errors=(SinkError(Sink.ARCHIVE, "AccessDenied", "b", permanent=False),))
    )
    assert list(consumer)[:4] == list(lambda_line)[:4] == POWERTOOLS_KEYS
    assert (consumer["service"], consumer["shard_id"], consumer["code"]) == ("svc", SHARD_ID, "AccessDenied")
