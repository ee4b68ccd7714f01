"""The archive role (Lambda mode's archive files): one file per invocation at the consumer's key,
put-if-absent, and exactly one copy of every sample across retries, bisects and re-invocations.

S3 here is an in-memory bucket with S3's conditional write (``If-None-Match: *``); the integration
tests run the same role on MiniStack through the local event source mapping."""

from __future__ import annotations

import gzip
import io
import json
from collections import Counter
from typing import Any

from botocore.exceptions import ClientError

from service.runtime.adapters.s3_archive import S3Archive, archive_file_stem
from service.runtime.archive_role import MARK_KEY, ArchiveRole
from service.tools.esm.windows import Window, windowed_event
from tests.events import (
    FIRST_SEQUENCE,
    SHARD_ID,
    STREAM_ARN,
    T0_MS,
    batched,
    kinesis_event,
    sample,
    sequences,
)

NOW_MS = T0_MS + 60_000
WINDOW = Window.of(T0_MS, 900)


class ConditionalS3:
    """A bucket that honours ``If-None-Match: *`` as S3 does; ``fail_puts`` refuses the next puts."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.fail_puts = 0

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str, **kwargs: Any) -> None:  # noqa: N803
        if self.fail_puts:
            self.fail_puts -= 1
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow"}}, "PutObject")
        if kwargs.get("IfNoneMatch") == "*" and Key in self.objects:
            raise ClientError({"Error": {"Code": "PreconditionFailed", "Message": "taken"}}, "PutObject")
        self.objects[Key] = Body

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        return {"Body": io.BytesIO(self.objects[Key])}

    def lines(self) -> list[dict[str, Any]]:
        return [
            json.loads(line) for body in self.objects.values() for line in gzip.decompress(body).splitlines()
        ]

    def copies(self) -> Counter[tuple[str, int | None]]:
        return Counter((line["sequenceNumber"], line.get("subSequenceNumber")) for line in self.lines())


def role(s3: ConditionalS3) -> ArchiveRole:
    return ArchiveRole(S3Archive(s3, "archive", "telemetry/"))  # type: ignore[arg-type]


def event(count: int, first: int = FIRST_SEQUENCE, state: dict[str, Any] | None = None) -> dict[str, Any]:
    items = [
        sample(f"d{i % 3}", i, 70 + i, seq=i)
        for i in range(first - FIRST_SEQUENCE, first - FIRST_SEQUENCE + count)
    ]
    return windowed_event(
        kinesis_event(items, first_sequence=first), WINDOW, state or {}, SHARD_ID, STREAM_ARN
    )


def test_one_file_per_invocation_at_the_consumers_key() -> None:
    s3 = ConditionalS3()
    outcome = role(s3).invoke(event(5), NOW_MS)
    first = str(FIRST_SEQUENCE)
    arrival = event(5)["Records"][0]["kinesis"]["approximateArrivalTimestamp"]
    assert list(s3.objects) == [
        archive_file_stem("telemetry/", SHARD_ID, first, int(arrival * 1000)) + ".jsonl.gz"
    ]
    assert outcome.keys == (next(iter(s3.objects)),)
    assert outcome.response() == {"batchItemFailures": [], "state": {MARK_KEY: str(FIRST_SEQUENCE + 4)}}
    assert [line["sequenceNumber"] for line in s3.lines()] == sequences(event(5))


def test_a_line_is_the_sample_with_the_decode_enrichment_and_no_detection_fields() -> None:
    s3 = ConditionalS3()
    [message] = batched([sample("d1", 0, 72, seq=1, status="FAKE"), sample("d1", 5, 73, seq=2)], 2)
    role(s3).invoke(windowed_event(kinesis_event([message]), WINDOW, {}, SHARD_ID, STREAM_ARN), NOW_MS)
    lines = s3.lines()
    assert [line["subSequenceNumber"] for line in lines] == [0, 1]
    assert next(iter(lines[0])) == "deviceId"
    for line in lines:
        assert {"processedAt", "shardId", "sequenceNumber", "latencyMs"} <= set(line)
        assert not {"status", "anomalies", "outOfOrder"} & set(line)


def test_a_crash_after_the_upload_then_the_same_batch_again_archives_once() -> None:
    s3 = ConditionalS3()
    role(s3).invoke(event(6), NOW_MS)  # uploaded; the response never reached Lambda
    role(s3).invoke(event(6), NOW_MS + 1_000)
    assert len(s3.objects) == 1
    assert set(s3.copies().values()) == {1}
    assert len(s3.copies()) == 6


def test_a_longer_retry_writes_only_what_the_file_does_not_hold_at_the_next_files_key() -> None:
    s3 = ConditionalS3()
    role(s3).invoke(event(4), NOW_MS)
    outcome = role(s3).invoke(event(9), NOW_MS)
    assert len(s3.objects) == 2
    assert outcome.keys[1].endswith(f"{FIRST_SEQUENCE + 4:040d}.jsonl.gz")
    assert set(s3.copies().values()) == {1}
    assert len(s3.copies()) == 9


def test_a_bisected_retry_after_a_crash_archives_once() -> None:
    s3 = ConditionalS3()
    archive = role(s3)
    archive.invoke(event(8), NOW_MS)  # uploaded, then the invocation failed: Lambda bisects
    first_half = archive.invoke(event(4), NOW_MS).state
    assert first_half == {MARK_KEY: str(FIRST_SEQUENCE + 7)}  # the file at its key reaches further
    second = archive.invoke(event(4, FIRST_SEQUENCE + 4, first_half), NOW_MS)
    assert second.keys == ()
    assert len(s3.objects) == 1
    assert set(s3.copies().values()) == {1}
    assert len(s3.copies()) == 8


def test_records_at_or_below_the_mark_are_skipped_and_the_file_starts_after_it() -> None:
    s3 = ConditionalS3()
    outcome = role(s3).invoke(event(6, state={MARK_KEY: str(FIRST_SEQUENCE + 2)}), NOW_MS)
    assert sorted(s3.copies()) == [(str(FIRST_SEQUENCE + i), None) for i in range(3, 6)]
    (key,) = outcome.keys
    assert key.endswith(f"{FIRST_SEQUENCE + 3:040d}.jsonl.gz")


def test_a_failed_upload_retries_the_whole_batch_with_the_state_it_was_given() -> None:
    s3 = ConditionalS3()
    s3.fail_puts = 1
    given = {MARK_KEY: str(FIRST_SEQUENCE - 1)}
    outcome = role(s3).invoke(event(3, state=given), NOW_MS)
    assert outcome.response() == {
        "batchItemFailures": [{"itemIdentifier": str(FIRST_SEQUENCE)}],
        "state": given,
    }
    assert [error.code for error in outcome.errors] == ["SlowDown"]
    assert not s3.objects


def test_the_final_invocation_ends_the_window_state_and_a_windowless_event_has_none() -> None:
    s3 = ConditionalS3()
    final = windowed_event({"Records": []}, WINDOW, {MARK_KEY: "5"}, SHARD_ID, STREAM_ARN, final=True)
    assert role(s3).invoke(final, NOW_MS).response() == {"batchItemFailures": [], "state": {}}
    assert role(s3).invoke(kinesis_event([sample("d1", 0, 70)]), NOW_MS).response() == {
        "batchItemFailures": []
    }


def test_a_batch_of_rejects_only_writes_nothing_and_moves_the_mark() -> None:
    s3 = ConditionalS3()
    outcome = role(s3).invoke(
        windowed_event(kinesis_event([b"not json"]), WINDOW, {}, SHARD_ID, STREAM_ARN), NOW_MS
    )
    assert not s3.objects
    assert outcome.state == {MARK_KEY: str(FIRST_SEQUENCE)}


def test_a_replay_from_an_earlier_checkpoint_cut_differently_finds_the_files_already_written() -> None:
    s3 = ConditionalS3()
    archive = role(s3)
    state: dict[str, Any] = {}
    for first in range(0, 12, 4):  # the first run: three invocations of four records
        state = archive.invoke(event(4, FIRST_SEQUENCE + first, state), NOW_MS).state
    files = dict(s3.objects)
    state = {}
    for first in range(0, 12, 5):  # the mapping recreated at the same checkpoint, batches of five
        state = archive.invoke(event(min(5, 12 - first), FIRST_SEQUENCE + first, state), NOW_MS).state
    assert s3.objects == files
    assert set(s3.copies().values()) == {1}
    assert len(s3.copies()) == 12
