"""Ground truth: what the fleet injected, as JSON Lines.

One line per item, times RFC 3339 in the device's clock (the same clock as the telemetry's
``timestamp``, so they compare directly with an alert's ``startedAt``/``detectedAt``)::

    {"kind":"episode","deviceId":"…","type":"TACHYCARDIA","start":"…","end":"…"}
    {"kind":"fault","deviceId":"…","type":"MALFORMED","start":"…","end":"…","detail":"TRUNCATED"}
    {"kind":"activity","deviceId":"…","type":"RUN","start":"…","end":"…"}

``start``/``end`` of an episode are the event times of its first and last sample; a run's ``end``
includes its recovery window (heart rate still above resting). ``detail`` is optional.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from service.core.records import iso_ms
from service.core.telemetry import parse_rfc3339_ms
from service.tools.jsonl import read_objects

KINDS = ("episode", "fault", "activity")


@dataclass(frozen=True, slots=True)
class TruthEntry:
    kind: str
    device_id: str
    type: str
    start_ms: int
    end_ms: int
    detail: str = ""

    def to_json(self) -> bytes:
        body = {
            "kind": self.kind,
            "deviceId": self.device_id,
            "type": self.type,
            "start": iso_ms(self.start_ms),
            "end": iso_ms(self.end_ms),
        }
        if self.detail:
            body["detail"] = self.detail
        return msgspec.json.encode(body)


class TruthFormatError(ValueError):
    """A ground-truth line cannot be read; the message names the line."""


def encode_truth(entries: Iterable[TruthEntry]) -> bytes:
    """The entries as JSON Lines (each line ends with a newline)."""
    return b"".join(entry.to_json() + b"\n" for entry in entries)


def read_truth(path: Path) -> Iterator[TruthEntry]:
    """Entries of a ground-truth file. Raises ``OSError`` or ``TruthFormatError`` (with line number)."""
    for number, body in read_objects(path, TruthFormatError):
        yield _entry(body, number)


def _entry(body: dict[str, Any], number: int) -> TruthEntry:
    fields = [body.get(name) for name in ("kind", "deviceId", "type", "start", "end")]
    if not all(isinstance(value, str) for value in fields):
        raise TruthFormatError(f"line {number}: kind, deviceId, type, start and end must be strings")
    kind, device_id, anomaly, start, end = (str(value) for value in fields)
    if kind not in KINDS:
        raise TruthFormatError(f"line {number}: unknown kind {kind!r}")
    start_ms, end_ms = parse_rfc3339_ms(start), parse_rfc3339_ms(end)
    if start_ms is None or end_ms is None or end_ms < start_ms:
        raise TruthFormatError(f"line {number}: start/end must be RFC 3339 times with start ≤ end")
    detail = body.get("detail")
    return TruthEntry(kind, device_id, anomaly, start_ms, end_ms, detail if isinstance(detail, str) else "")
