"""Shard snapshots and window states: bytes written before they shared one codec still decode, and the
codec writes them again to the letter; both refuse what they are not and what a newer release wrote.

``fixtures/state_wire_v1.json`` holds a snapshot and a window state (four devices, arrivals, latest
views, two dirty devices) as the release before the shared state codec wrote them.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from service.core import StateFormatError
from service.core.snapshot import SNAPSHOT_VERSION, decode_resident, encode_snapshot
from service.core.window_state import WINDOW_STATE_VERSION, decode_window_state, encode_window_state
from tests.unit.builders import SEQ0, SHARD

WIRE = json.loads((Path(__file__).parent / "fixtures" / "state_wire_v1.json").read_text())
DEVICES = ["dev-0", "dev-1", "dev-2", "dev-3"]


def test_a_snapshot_written_before_the_shared_codec_restores_and_encodes_to_the_same_bytes() -> None:
    blob = bytes.fromhex(WIRE["snapshot"])

    snapshot = decode_resident(blob)

    assert (snapshot.shard_id, snapshot.sequence) == (SHARD, str(SEQ0 + 3))
    assert sorted(snapshot.states) == DEVICES
    assert snapshot.arrivals == {d: 1_795_831_200_000 + i for i, d in enumerate(DEVICES)}
    assert snapshot.states["dev-2"].last_sequence == str(SEQ0 + 2)
    again = encode_snapshot(snapshot.shard_id, snapshot.sequence, snapshot.states, snapshot.arrivals)
    assert again == blob


def test_a_window_state_written_before_the_shared_codec_decodes_and_encodes_to_the_same_bytes() -> None:
    blob = bytes.fromhex(WIRE["windowState"])

    window = decode_window_state(blob)

    assert window.shard_id == SHARD
    assert sorted(window.states) == sorted(window.latest) == DEVICES
    assert window.dirty == {"dev-1", "dev-3"}
    assert window.latest["dev-3"].heart_rate == 150
    assert encode_window_state(window) == blob


@pytest.mark.parametrize(
    ("decode", "header"),
    [
        (decode_resident, {"v": SNAPSHOT_VERSION + 1, "shard": SHARD, "seq": "1", "devices": {}}),
        (
            decode_window_state,
            {"v": WINDOW_STATE_VERSION + 1, "shard": SHARD, "devices": {}, "latest": {}, "dirty": []},
        ),
    ],
    ids=["snapshot", "window state"],
)
def test_state_from_a_newer_release_is_refused(decode: Callable[[bytes], object], header: object) -> None:
    with pytest.raises(StateFormatError, match="newer"):
        decode(gzip.compress(msgspec.msgpack.encode(header)))


@pytest.mark.parametrize("decode", [decode_resident, decode_window_state], ids=["snapshot", "window state"])
@pytest.mark.parametrize("blob", [b"", b"not gzip", gzip.compress(b"\x93\x01\x02\x03")])
def test_bytes_that_are_not_device_states_are_refused(decode: Callable[[bytes], object], blob: bytes) -> None:
    with pytest.raises(StateFormatError):
        decode(blob)


def test_a_device_state_that_does_not_decode_is_refused_in_either_kind() -> None:
    snapshot = {"v": SNAPSHOT_VERSION, "shard": SHARD, "seq": "1", "devices": {"dev-0": b"\x00junk"}}
    window = {
        "v": WINDOW_STATE_VERSION,
        "shard": SHARD,
        "devices": {"dev-0": b"\x00junk"},
        "latest": {},
        "dirty": [],
    }
    with pytest.raises(StateFormatError):
        decode_resident(gzip.compress(msgspec.msgpack.encode(snapshot)))
    with pytest.raises(StateFormatError):
        decode_window_state(gzip.compress(msgspec.msgpack.encode(window)))
