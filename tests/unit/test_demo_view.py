"""The demo's live line: what a person watching the run reads about once a second."""

from __future__ import annotations

import io
from collections import Counter

from service.runtime.accounting import RequestCounts
from service.tools.demo.ledger import LatencySummary
from service.tools.demo.view import LiveView, Progress

REQUESTS = RequestCounts({("kinesis", "GetRecords"): 30, ("dynamodb", "UpdateItem"): 120})


def line(progress: Progress) -> str:
    out = io.StringIO()  # not a terminal: one line per update
    LiveView(out).update(4_000, progress, Counter({"TACHYCARDIA": 2}), force=True)
    return out.getvalue()


def test_the_line_shows_detection_latency_and_calls_per_thousand_records() -> None:
    progress = Progress(
        3_000, LatencySummary(3_000, 80.0, 300.0, 450.0), REQUESTS, LatencySummary(2, 120.0, 600.0, 640.0)
    )
    text = line(progress)
    assert "sent 4,000  processed 3,000" in text
    assert "lag 1,000" in text
    assert "sinks p50 80ms p99 450ms" in text
    assert "detection p50 120ms p99 640ms" in text
    assert "calls/1K 50" in text  # 150 requests over 3,000 records
    assert "TACHYCARDIA 2" in text


def test_before_any_record_or_where_detection_is_not_measured_it_says_so() -> None:
    text = line(Progress(0, LatencySummary(0, None, None, None), RequestCounts()))
    assert "detection -" in text
    assert "calls/1K -" in text
    assert "sinks p50 - p99 -" in text
