"""``vitalstream replay``: run the core offline over a telemetry JSON Lines file.

Contract:

- Lines are applied in file order, in batches of ``batch_size`` records, as one shard (``shard_id``).
  Each non-blank line is one Kinesis record whose sequence number is its 1-based line number, so a
  reject names its line. Blank lines are skipped and counted.
- Per-device detector state lives in memory across batches; nothing else does. The input is read
  and the outputs are written one batch at a time, so memory is bounded by the batch size plus one
  state per device, whatever the file's length.
- ``processed.jsonl``, ``alerts.jsonl`` and ``rejects.jsonl`` are (re)written in ``out_dir``. A reject
  line is the dead-letter body (``Reject.to_dict``) plus ``"line"``. No payload makes replay fail.
- ``processedAt`` and the records' arrival time come from ``clock`` (epoch seconds), read once per
  batch: the core itself reads no clock. A line dated more than the detection config's
  ``max_future_skew_ms`` after that clock is rejected (``timestamp_in_future``); the backfill
  horizon is not applied, since a replayed file is history by definition.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

import msgspec

from service.cli.args import positive_int
from service.core import BatchResult, Detector, DeviceState, KinesisRecord, decode_records, process_batch

DEFAULT_BATCH_SIZE = 500
DEFAULT_SHARD_ID = "replay"
PROCESSED_FILE = "processed.jsonl"
ALERTS_FILE = "alerts.jsonl"
REJECTS_FILE = "rejects.jsonl"


@dataclass(slots=True)
class ReplaySummary:
    """What a replay did. ``records`` counts the non-blank lines handed to the core."""

    records: int = 0
    blank_lines: int = 0
    processed: int = 0  # samples (a batched line holds several)
    late: int = 0
    duplicates: int = 0
    redelivered: int = 0
    devices: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def lines(self) -> int:
        return self.records + self.blank_lines

    @property
    def samples_per_s(self) -> float:
        samples = self.processed + self.rejected.total() + self.duplicates + self.redelivered
        return samples / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def render(self) -> str:
        return "\n".join(
            (
                f"lines       {self.lines:,} ({self.records:,} records, {self.blank_lines:,} blank), "
                f"{self.devices:,} devices",
                f"processed   {self.processed:,} samples ({self.late:,} late)",
                f"rejected    {self.rejected.total():,}{_breakdown(self.rejected)}",
                f"duplicates  {self.duplicates:,} (device repeats), {self.redelivered:,} redelivered",
                f"alerts      {self.alerts.total():,}{_breakdown(self.alerts)}",
                f"elapsed     {self.elapsed_s:.2f} s ({self.samples_per_s:,.0f} samples/s)",
            )
        )


def _breakdown(counts: Counter[str]) -> str:
    if not counts:
        return ""
    return " (" + ", ".join(f"{key} {n:,}" for key, n in sorted(counts.items())) + ")"


def read_records(lines: Iterable[bytes], summary: ReplaySummary) -> Iterator[tuple[int, bytes]]:
    """``(line number, payload)`` for each non-blank line; blank lines are counted in ``summary``."""
    for number, line in enumerate(lines, start=1):
        payload = line.rstrip(b"\r\n")
        if not payload.strip():
            summary.blank_lines += 1
            continue
        yield number, payload


def replay(
    input_path: Path,
    out_dir: Path,
    detector: Detector,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    shard_id: str = DEFAULT_SHARD_ID,
    clock: Callable[[], float] = time.time,
) -> ReplaySummary:
    """Replay ``input_path`` into ``out_dir`` (created if missing). Raises ``OSError`` on I/O failure."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    with (
        input_path.open("rb") as source,
        (out_dir / PROCESSED_FILE).open("wb") as processed_out,
        (out_dir / ALERTS_FILE).open("wb") as alerts_out,
        (out_dir / REJECTS_FILE).open("wb") as rejects_out,
    ):
        session = _Session(
            detector=Detector(replace(detector.config, backfill_horizon_ms=0)),
            shard_id=shard_id,
            clock=clock,
            processed_out=processed_out,
            alerts_out=alerts_out,
            rejects_out=rejects_out,
        )
        batch: list[tuple[int, bytes]] = []
        for item in read_records(source, session.summary):
            batch.append(item)
            if len(batch) >= batch_size:
                session.apply(batch)
                batch.clear()
        if batch:
            session.apply(batch)
    summary = session.summary
    summary.devices = len(session.states)
    summary.elapsed_s = time.perf_counter() - started
    return summary


class _Session:
    """One replay in progress: device states, counters and the three output files."""

    def __init__(
        self,
        *,
        detector: Detector,
        shard_id: str,
        clock: Callable[[], float],
        processed_out: IO[bytes],
        alerts_out: IO[bytes],
        rejects_out: IO[bytes],
    ) -> None:
        self.detector, self.shard_id, self.clock = detector, shard_id, clock
        self.processed_out, self.alerts_out, self.rejects_out = processed_out, alerts_out, rejects_out
        self.states: dict[str, DeviceState] = {}
        self.summary = ReplaySummary()

    def apply(self, batch: list[tuple[int, bytes]]) -> None:
        now_ms = int(self.clock() * 1000)
        records = [KinesisRecord(payload, self.shard_id, str(number), now_ms) for number, payload in batch]
        result = process_batch(decode_records(records), self.states, self.detector, now_ms)
        self.states.update(result.states)
        self._write(result)
        summary = self.summary
        summary.records += len(records)
        summary.processed += len(result.processed)
        summary.late += result.late
        summary.duplicates += result.duplicates
        summary.redelivered += result.redelivered
        summary.rejected.update(reject.reason.value for reject in result.rejects)
        summary.alerts.update(alert.type.value for alert in result.alerts)

    def _write(self, result: BatchResult) -> None:
        if result.processed:
            self.processed_out.write(b"\n".join(record.to_json() for record in result.processed) + b"\n")
        if result.alerts:
            self.alerts_out.write(b"\n".join(alert.to_json() for alert in result.alerts) + b"\n")
        for reject in result.rejects:
            body = reject.to_dict()
            body["line"] = int(reject.sequence_number)
            self.rejects_out.write(msgspec.json.encode(body) + b"\n")


# --- command line -------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, metavar="INPUT.jsonl", help="telemetry, one JSON object per line")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        help=f"records per core batch (default {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--shard-id",
        default=DEFAULT_SHARD_ID,
        help=f"shard id stamped on records (default {DEFAULT_SHARD_ID})",
    )


def run(args: argparse.Namespace) -> int:
    """Validate paths (usage errors exit 2), replay, print the summary. Detection thresholds come
    from ``VITALSTREAM_DETECTION__*``."""
    input_path: Path = args.input
    out_dir: Path = args.out
    if not input_path.is_file():
        what = "is a directory" if input_path.is_dir() else "not found"
        return _usage_error(f"input file {what}: {input_path}")
    if out_dir.exists() and not out_dir.is_dir():
        return _usage_error(f"--out must be a directory, but {out_dir} is a file")

    # pydantic-settings costs import time: loaded only when this command runs, not for every command.
    from service.runtime.config import Settings  # noqa: PLC0415

    detector = Detector(Settings().detection)
    try:
        summary = replay(input_path, out_dir, detector, batch_size=args.batch_size, shard_id=args.shard_id)
    except OSError as exc:
        print(f"vitalstream replay: error: {exc}", file=sys.stderr)
        return 1
    print(f"replay {input_path} → {out_dir}/{{{PROCESSED_FILE},{ALERTS_FILE},{REJECTS_FILE}}}")
    print(summary.render())
    return 0


def _usage_error(message: str) -> int:
    print(f"vitalstream replay: error: {message}", file=sys.stderr)
    return 2
