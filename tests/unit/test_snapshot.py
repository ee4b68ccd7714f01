"""Shard snapshots: byte-deterministic, restoring every device state exactly, refusing what they are not."""

from __future__ import annotations

import gzip

import pytest

from service.core import DeviceState, StateFormatError
from service.core.snapshot import SNAPSHOT_VERSION, decode_snapshot, encode_snapshot
from tests.unit.builders import SEQ0, SHARD, records, run, telemetry


def states() -> dict[str, DeviceState]:
    batch = records([telemetry(deviceId=f"dev-{i}", heartRate=60 + i, seq=i) for i in range(5)])
    return run(batch).states


def test_a_snapshot_restores_every_state_field_for_field() -> None:
    before = states()

    shard, sequence, after = decode_snapshot(encode_snapshot(SHARD, str(SEQ0), before))

    assert (shard, sequence) == (SHARD, str(SEQ0))
    assert after == before


def test_the_same_states_give_the_same_bytes_whatever_their_order() -> None:
    forward = states()
    backward = dict(reversed(list(forward.items())))

    assert encode_snapshot(SHARD, "1", forward) == encode_snapshot(SHARD, "1", backward)


@pytest.mark.parametrize(
    "blob",
    [b"", b"not gzip", gzip.compress(b"\x01\x02"), gzip.compress(b"\x93\x01\x02\x03")],
)
def test_bytes_that_are_not_a_snapshot_are_refused(blob: bytes) -> None:
    with pytest.raises(StateFormatError):
        decode_snapshot(blob)


def test_a_snapshot_from_a_newer_release_is_refused() -> None:
    import msgspec  # noqa: PLC0415 - builds a newer header by hand

    newer = msgspec.msgpack.encode({"v": SNAPSHOT_VERSION + 1, "shard": SHARD, "seq": "1", "devices": {}})
    with pytest.raises(StateFormatError, match="newer"):
        decode_snapshot(gzip.compress(newer))
