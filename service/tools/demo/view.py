"""The live line: throughput, lag, latency percentiles (device timestamp → every sink acknowledged, and
→ alert published), AWS calls per 1,000 records processed, and alerts, about once a second."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import IO

from service.runtime.accounting import RequestCounts
from service.tools.demo.ledger import LatencySummary


@dataclass(frozen=True, slots=True)
class Progress:
    """Where the processing stands: records settled, their latency to every sink's acknowledgement,
    detection latency, and the AWS requests it sent."""

    settled: int
    latency: LatencySummary
    requests: RequestCounts
    detection: LatencySummary | None = None

    @property
    def calls_per_1k(self) -> float:
        return 1000 * self.requests.calls() / max(self.settled, 1)


class LiveView:
    """On a terminal the line is redrawn in place; otherwise a line is printed every ``every_s``."""

    def __init__(self, stream: IO[str], every_s: float = 5.0) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._every_s = 1.0 if self._tty else every_s
        self._started = self._last = time.monotonic()
        self._last_processed = 0

    def update(self, sent: int, progress: Progress, alerts: Counter[str], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self._every_s:
            return
        processed, latency, detection = progress.settled, progress.latency, progress.detection
        rate = (processed - self._last_processed) / max(now - self._last, 1e-9)
        self._last, self._last_processed = now, processed
        p50, p99 = _ms(latency.p50_ms), _ms(latency.p99_ms)
        detected = "-" if detection is None else f"p50 {_ms(detection.p50_ms)} p99 {_ms(detection.p99_ms)}"
        calls = f"{progress.calls_per_1k:,.0f}" if processed else "-"
        kinds = " ".join(f"{kind} {n}" for kind, n in sorted(alerts.items())) or "none yet"
        line = (
            f"{now - self._started:5.0f} s  sent {sent:,}  processed {processed:,} ({rate:,.0f}/s)  "
            f"lag {max(sent - processed, 0):,}  sinks p50 {p50} p99 {p99}  detection {detected}  "
            f"calls/1K {calls}  alerts: {kinds}"
        )
        if self._tty:
            self._stream.write("\r\x1b[2K" + line)
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}ms"
