"""Lambda mode's archive role: one archive file per invocation of a second event source mapping.

The detection mapping keeps a short batching window (alerts stay fast) and, with
``VITALSTREAM_LAMBDA_ARCHIVE=files``, archives nothing; a second mapping on the same stream, with a
long batching window and large batches, invokes ``lambda_shim.archive_handler``, which calls
``ArchiveRole.invoke``. Each invocation decodes its records with the core's ``decode_records`` (a
batched message gives one line per sample) and writes ONE gzip JSON Lines file at the consumer's key,
``{prefix}dt=YYYY-MM-DD/shard={shard}/{first sequence number, padded}.jsonl.gz``, put-if-absent, so one
Athena/Glue table reads both modes' files.

The line (``ReceivedSample``): the sample as received (``deviceId`` first) plus ``processedAt``,
``shardId``, ``sequenceNumber``, ``subSequenceNumber`` (batched samples) and ``latencyMs`` — the
consumer's line without ``status``, ``anomalies`` and ``outOfOrder``, which need a device's detector
state that only the detection role holds (its alerts carry the anomalies). A device's resent sample
(same ``seq``) is a record of its own here, kept with its own stream position; rejects are left to
the detection role, which dead-letters them.

Exactly once, across retries, bisects and re-invocations:

- the key is fixed by the first sample the invocation has to archive, and the write is put-if-absent:
  a retry of a batch whose file was uploaded (a crash between the upload and the checkpoint) finds
  its key taken and reads that file; the samples it holds are done, and those past its end start
  over at their own first sample's key — where the earlier run's next file is, if there was one: a
  replay from any checkpoint (a checkpoint is where an invocation, so a file, ended) finds the files
  it already wrote (``S3Archive.write_run``);
- the mapping has a tumbling window and the window's state carries ``archivedThrough``, the highest
  sequence number known to be archived; records at or below it are skipped. A retried batch that
  finds a longer file at its key (a bisected or shortened retry) moves the mark to that file's end, so
  the next half, whose first record is inside the file, writes nothing twice. A failed invocation
  returns its input state, so the mark never runs ahead of what is uploaded.

A failed upload reports the batch's first record in ``batchItemFailures`` (the whole batch comes
again) and keeps its ``SinkError`` in ``errors`` for the handler to log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from service.core import KinesisRecord, iso_ms, records_from_lambda_event
from service.core.decode import Sample, decode_records
from service.core.envelope import DEFAULT_LIMITS, MessageLimits
from service.runtime.adapters.s3_archive import RunLine, WrittenRun
from service.runtime.effects import batch_span
from service.runtime.ports import SinkError
from service.runtime.window import WindowEvent

MARK_KEY = "archivedThrough"
_DETECTION_KEYS = ("status", "anomalies", "outOfOrder")  # need detector state: never from a device


class ArchiveRuns(Protocol):
    def write_run(self, shard_id: str, lines: Sequence[RunLine]) -> WrittenRun:
        """One file at the key of the first line's record, put-if-absent (``S3Archive.write_run``:
        what a taken key holds is done, the rest goes beside it or on to the next file's key)."""
        ...


class ReceivedSample(msgspec.Struct, frozen=True, gc=False):
    """A valid sample as the archive role archives it (see the module docstring for the line)."""

    raw: bytes
    event_ms: int
    arrival_ms: int
    processed_at_ms: int
    processed_at: str
    shard_id: str
    sequence_number: str
    sub_sequence_number: int | None

    @classmethod
    def of(cls, sample: Sample, processed_at_ms: int, processed_at: str) -> ReceivedSample:
        record = sample.record
        return cls(
            sample.raw,
            sample.event_ms,
            record.arrival_ms,
            processed_at_ms,
            processed_at,
            record.shard_id,
            record.sequence_number,
            sample.sub,
        )

    def to_json(self) -> bytes:
        line: dict[str, Any] = msgspec.json.decode(self.raw)
        for key in _DETECTION_KEYS:
            line.pop(key, None)
        line |= {
            "processedAt": self.processed_at,
            "shardId": self.shard_id,
            "sequenceNumber": self.sequence_number,
            "latencyMs": self.processed_at_ms - self.event_ms,
        }
        if self.sub_sequence_number is not None:
            line["subSequenceNumber"] = self.sub_sequence_number
        return msgspec.json.encode(line)


@dataclass(frozen=True, slots=True)
class ArchiveOutcome:
    """``response`` is what the handler returns; the rest is for logs and tests."""

    shard_id: str
    windowed: bool
    state: dict[str, str]
    failures: list[str]
    keys: tuple[str, ...] = ()  # the files that hold this invocation's lines (written now or before)
    lines: int = 0
    errors: tuple[SinkError, ...] = ()

    def response(self) -> dict[str, Any]:
        body: dict[str, Any] = {"batchItemFailures": [{"itemIdentifier": s} for s in self.failures]}
        if self.windowed:
            body["state"] = self.state
        return body


@dataclass(frozen=True, slots=True)
class ArchiveRole:
    archive: ArchiveRuns
    limits: MessageLimits = DEFAULT_LIMITS

    def invoke(self, event: Mapping[str, Any], now_ms: int) -> ArchiveOutcome:
        """Archive the event's records not yet archived as one file; see the module's guarantees."""
        meta = WindowEvent.of(event)
        windowed = "window" in event
        given = {k: v for k, v in meta.state.items() if k == MARK_KEY and isinstance(v, str)}
        through = int(given[MARK_KEY]) if given.get(MARK_KEY, "").isdigit() else -1
        batch = records_from_lambda_event(event)
        records = [r for r in batch.records if r.seq_int > through]
        span = batch_span(records, [r for r in batch.rejects if int(r.sequence_number) > through])
        ended = meta.final or meta.terminated_early
        if span is None:
            return ArchiveOutcome(meta.shard_id, windowed, {} if ended else given, [])
        lines = _lines(records, self.limits, now_ms)
        keys: tuple[str, ...] = ()
        reached = int(span.last)
        if lines:
            try:
                written = self.archive.write_run(meta.shard_id, lines)
            except SinkError as exc:
                return ArchiveOutcome(meta.shard_id, windowed, given, [span.first], errors=(exc,))
            keys = written.keys
            if written.held_through is not None:
                reached = max(reached, int(written.held_through))
        state = {} if ended else {MARK_KEY: str(reached)}
        return ArchiveOutcome(meta.shard_id, windowed, state, [], keys, len(lines))


def _lines(records: list[KinesisRecord], limits: MessageLimits, now_ms: int) -> list[ReceivedSample]:
    processed_at = iso_ms(now_ms)
    decoded = decode_records(records, (), limits)
    return [ReceivedSample.of(sample, now_ms, processed_at) for sample in decoded.samples]
