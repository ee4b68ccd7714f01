"""Archive-file cut points: decided by the records alone (count, payload bytes, arrival age), or by a
recorded end; the same records always cut the same files."""

from __future__ import annotations

import pytest

from service.core import KinesisRecord
from service.core.archive_file import ArchiveFile, FilePolicy
from tests.unit.builders import SEQ0, SHARD, T0


def stream(count: int, *, size: int = 10, every_ms: int = 1_000) -> list[KinesisRecord]:
    return [KinesisRecord(b"x" * size, SHARD, str(SEQ0 + i), T0 + i * every_ms) for i in range(count)]


def cut(policy: FilePolicy, records: list[KinesisRecord], batch_size: int) -> list[tuple[int, int]]:
    """Feed ``records`` in batches of ``batch_size``; the (first, last) offsets of every file cut."""
    file, files, pending = ArchiveFile(policy), [], list(records)
    for start in range(0, len(records), batch_size):
        pending = records[start : start + batch_size]
        while pending:
            room = file.room(pending)
            if room == 0:
                files.append(file.close())
                continue
            file.take(pending[:room])
            pending = pending[room:]
            if pending or file.full():
                files.append(file.close())
    if not file.empty:
        files.append(file.close())
    return [(int(f.first) - SEQ0, int(f.last) - SEQ0) for f in files]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (FilePolicy(max_records=4), [(0, 3), (4, 7), (8, 9)]),
        (FilePolicy(max_bytes=35), [(0, 2), (3, 5), (6, 8), (9, 9)]),  # 10-byte payloads, ≤ 35 bytes
        (FilePolicy(max_age_ms=3_000), [(0, 2), (3, 5), (6, 8), (9, 9)]),  # arrivals 1 s apart
        (FilePolicy(max_records=100, max_bytes=1_000, max_age_ms=60_000), [(0, 9)]),
    ],
)
@pytest.mark.parametrize("batch_size", [1, 3, 10])
def test_cut_points_depend_on_the_records_not_on_how_they_were_batched(
    policy: FilePolicy, expected: list[tuple[int, int]], batch_size: int
) -> None:
    assert cut(policy, stream(10), batch_size) == expected


def test_a_recorded_end_cuts_there_whatever_the_policy_says() -> None:
    file = ArchiveFile(FilePolicy(max_records=2), forced_last=SEQ0 + 4)
    records = stream(8)

    assert file.room(records) == 5
    file.take(records[:5])
    assert file.full()
    closed = file.close()

    assert (closed.first, closed.last) == (str(SEQ0), str(SEQ0 + 4))
    assert file.forced_last is None
    assert file.room(records[5:]) == 2  # then the policy again


def test_an_idle_file_expires_by_the_callers_clock_but_never_while_a_recorded_end_is_pending() -> None:
    file = ArchiveFile(FilePolicy(max_age_ms=60_000))
    assert not file.expired(T0 + 10**9)  # empty
    file.take(stream(1))
    assert not file.expired(T0 + 59_999)
    assert file.expired(T0 + 60_000)

    forced = ArchiveFile(FilePolicy(max_age_ms=60_000), forced_last=SEQ0 + 5)
    forced.take(stream(1))
    assert not forced.expired(T0 + 10**9)


def test_an_empty_file_cannot_be_closed() -> None:
    with pytest.raises(ValueError, match="empty"):
        ArchiveFile(FilePolicy()).close()
