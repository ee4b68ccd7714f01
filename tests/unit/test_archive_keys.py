"""Archive keys list in stream order: sequence numbers are zero-padded as the device table pads them,
so an emulator's short numbers (9, 10) and a stream's long ones sort as integers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.core import padded_sequence
from service.runtime.adapters.s3_archive import archive_stem
from service.runtime.ports import BatchSpan
from tests.unit.builders import records, run, telemetry

SHARD = "shardId-000000000000"
ARRIVAL_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z
SEQUENCES = st.integers(min_value=0, max_value=2**128 - 1)


def stem(first: int, last: int) -> str:
    return archive_stem("telemetry/", SHARD, [], BatchSpan(str(first), str(last), ARRIVAL_MS))


def test_a_span_key_names_both_ends_padded() -> None:
    assert stem(9, 12) == (
        f"telemetry/dt=2026-03-01/shard={SHARD}/{padded_sequence('9')}-{padded_sequence('12')}"
    )
    assert padded_sequence("9") == "0" * 39 + "9"


@given(SEQUENCES, SEQUENCES)
def test_span_keys_sort_as_their_first_sequence_numbers(a: int, b: int) -> None:
    assert (stem(a, a) < stem(b, b)) == (a < b)


def test_keys_without_a_span_are_padded_too() -> None:
    processed = run(records([telemetry(deviceId="d0"), telemetry(deviceId="d1")], first_seq=9)).processed
    label = archive_stem("", SHARD, processed).rsplit("/", 1)[1]
    assert label == f"{padded_sequence('9')}-{padded_sequence('10')}"
