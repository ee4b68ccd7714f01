"""The S3 archive: gzip JSON Lines objects, written once and never overwritten.

The consumer writes archive *files* (``write_file``; see ``core.archive_file``), keyed
``{prefix}dt=YYYY-MM-DD/shard={shard}/{first}.jsonl.gz`` by the first record's arrival date and its
sequence number zero-padded to 40 digits; a replay from the same checkpoint writes the same key. The
Lambda shim in per-batch mode (``VITALSTREAM_LAMBDA_ARCHIVE=per-batch``) writes one object per batch
(``write``), keyed as below.

Key: ``{prefix}dt=YYYY-MM-DD/shard={shard}/{first}-{last}.jsonl.gz``, the sequence numbers
zero-padded to 40 digits (``padded_sequence``, as the device table's ``lastSeq``) so that a shard's
keys list in stream order. With a ``BatchSpan`` (the pipeline always gives one) the date is the
batch's first Kinesis record's arrival date (UTC) and ``first``/``last`` are the batch's first and
last Kinesis sequence numbers, whatever subset of it is archived: a batch read again, in whole, finds
its own key, even when some of its devices were committed the first time and are skipped now.
Without a span they are those of the records archived (event date; ``{seq}.{sub}`` for a KPL user
record, ``seq`` padded). The gzip stream is byte-deterministic (mtime 0).

Lambda mode's archive role (``service.runtime.archive_role``) writes files too, at the same keys, with
``write_run``: it also says how far a taken key's object reaches (``WrittenRun.held_through``), so a
bisected or shortened retry of a batch whose file is already uploaded can tell that its tail is
archived, and a replay cut differently finds the earlier run's next file.

Idempotence: objects are written put-if-absent (``If-None-Match: *``). A redelivery that finds its
key taken reads the existing object; records it already holds are done. Records it does not hold
(a retry can carry a different set over the same span, e.g. a device whose alert failed the first
time) go to ``{first}-{last}.{digest}.jsonl.gz``, where the digest names exactly those records, so
no record is ever lost or archived twice by a redelivery.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import msgspec

from service.core import ProcessedRecord, padded_sequence
from service.runtime.adapters._errors import calling
from service.runtime.adapters._s3_put import put_if_absent
from service.runtime.ports import BatchSpan, Sink

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

SUFFIX = ".jsonl.gz"
CONTENT_TYPE = "application/gzip"

Position = tuple[str, int | None]


class ArchiveLine(Protocol):
    """What an archive file holds a line of: a ``ProcessedRecord``, or the archive role's
    ``ReceivedSample``."""

    @property
    def sequence_number(self) -> str: ...

    @property
    def sub_sequence_number(self) -> int | None: ...

    def to_json(self) -> bytes: ...


class RunLine(ArchiveLine, Protocol):
    """A line of an archive role's file: its record's arrival time dates the key."""

    @property
    def arrival_ms(self) -> int: ...


@dataclass(frozen=True, slots=True)
class WrittenRun:
    """The keys ``write_run`` wrote or found its lines at, and the highest sequence number held by a
    file it found already written (None when it found none)."""

    keys: tuple[str, ...]
    held_through: str | None = None


class _ArchivedLine(msgspec.Struct, rename="camel"):
    sequence_number: str
    sub_sequence_number: int | None = None


_LINE_DECODER = msgspec.json.Decoder(_ArchivedLine)


def record_position(record: ArchiveLine) -> Position:
    return record.sequence_number, record.sub_sequence_number


def _label(position: Position) -> str:
    sequence, sub = position
    return sequence if sub is None else f"{sequence}.{sub}"


def _key_label(position: Position) -> str:
    sequence, sub = position
    return padded_sequence(sequence) if sub is None else f"{padded_sequence(sequence)}.{sub}"


def archive_stem(
    prefix: str, shard_id: str, records: Sequence[ProcessedRecord], span: BatchSpan | None = None
) -> str:
    """The key without its suffix, fixed by the shard, a date and the span; a shard's stems sort in
    stream order."""
    if span is None:
        day_ms = records[0].event_ms
        label = f"{_key_label(record_position(records[0]))}-{_key_label(record_position(records[-1]))}"
    else:
        day_ms, label = span.arrival_ms, f"{padded_sequence(span.first)}-{padded_sequence(span.last)}"
    day = datetime.fromtimestamp(day_ms / 1000, UTC).strftime("%Y-%m-%d")
    return f"{prefix}dt={day}/shard={shard_id}/{label}"


def archive_file_stem(prefix: str, shard_id: str, first_sequence: str, arrival_ms: int) -> str:
    """An archive file's key without its suffix: its first record's arrival date, shard and sequence
    number (zero-padded, so a shard's files list in stream order)."""
    day = datetime.fromtimestamp(arrival_ms / 1000, UTC).strftime("%Y-%m-%d")
    return f"{prefix}dt={day}/shard={shard_id}/{padded_sequence(first_sequence)}"


def encode_lines(records: Sequence[ArchiveLine]) -> bytes:
    """Gzip JSON Lines, byte-identical for identical records."""
    return gzip.compress(b"".join(r.to_json() + b"\n" for r in records), mtime=0)


class S3Archive:
    """``Archive`` on one bucket. Raises ``SinkError`` (sink ``archive``, resource the bucket) when S3
    refuses a read or write or cannot be reached."""

    def __init__(self, client: S3Client, bucket: str, prefix: str = "") -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix

    def write(
        self, shard_id: str, records: Sequence[ProcessedRecord], span: BatchSpan | None = None
    ) -> str | None:
        if not records:
            return None
        return self._write_at(archive_stem(self._prefix, shard_id, records, span), records)

    def write_file(
        self, shard_id: str, first_sequence: str, arrival_ms: int, records: Sequence[ProcessedRecord]
    ) -> str | None:
        if not records:
            return None
        stem = archive_file_stem(self._prefix, shard_id, first_sequence, arrival_ms)
        return self._write_at(stem, records)

    def write_run(self, shard_id: str, lines: Sequence[RunLine]) -> WrittenRun:
        """The archive role's file: ``lines`` (in stream order) at the key of the first one's record,
        put-if-absent. When the key is taken (a retry, or a replay from an earlier checkpoint), the
        lines the file holds are done, those the file's range skipped go beside it (a digest key, as in
        ``write``), and those past its range start over at the key of the first of them — where the
        earlier run's next file would be, since files are cut where invocations were."""
        keys: list[str] = []
        through: str | None = None
        remaining = list(lines)
        with calling(Sink.ARCHIVE, self._bucket):
            while remaining:
                first = remaining[0]
                stem = archive_file_stem(self._prefix, shard_id, first.sequence_number, first.arrival_ms)
                if self._put_if_absent(stem + SUFFIX, encode_lines(remaining)):
                    keys.append(stem + SUFFIX)
                    break
                held = self._positions(stem + SUFFIX)
                end = max((int(sequence) for sequence, _ in held), default=int(first.sequence_number))
                through = str(end) if through is None else str(max(int(through), end))
                inside = [r for r in remaining if int(r.sequence_number) <= end]
                missing = [r for r in inside if record_position(r) not in held]
                keys.append(stem + SUFFIX)
                if missing:
                    keys.append(self._beside(stem, missing))
                remaining = [r for r in remaining if int(r.sequence_number) > end]
        return WrittenRun(tuple(keys), through)

    def _write_at(self, stem: str, records: Sequence[ArchiveLine]) -> str:
        key = stem + SUFFIX
        with calling(Sink.ARCHIVE, self._bucket):
            if self._put_if_absent(key, encode_lines(records)):
                return key
            held = self._positions(key)
            missing = [r for r in records if record_position(r) not in held]
            if not missing:
                return key
            return self._beside(stem, missing)

    def _beside(self, stem: str, missing: Sequence[ArchiveLine]) -> str:
        """Records a taken key does not hold, at a key named by a digest of exactly them."""
        names = "\n".join(_label(record_position(r)) for r in missing).encode()
        key = f"{stem}.{hashlib.sha256(names).hexdigest()[:16]}{SUFFIX}"
        self._put_if_absent(key, encode_lines(missing))  # taken: exactly these records are there
        return key

    def _put_if_absent(self, key: str, body: bytes) -> bool:
        """True when this call created the object; False when the key already existed."""
        return put_if_absent(self._client, self._bucket, key, body, CONTENT_TYPE)

    def _positions(self, key: str) -> set[Position]:
        body = self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        lines = gzip.decompress(body).splitlines()
        return {(line.sequence_number, line.sub_sequence_number) for line in map(_LINE_DECODER.decode, lines)}
