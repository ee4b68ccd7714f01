"""Properties of batched messages over generated inputs: nothing raises, every sample is accounted for
once, and the one-call fast path decides exactly as the sample-by-sample path does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core import DecodedBatch, decode_records, envelope
from tests.unit.builders import SEQ0, T0, record
from tests.unit.test_core_properties import json_values, valid_samples

samples = st.one_of(
    valid_samples.map(lambda s: {k: v for k, v in s.items() if k != "deviceId"}),
    valid_samples.map(lambda s: s | {"deviceId": "dev-1"}),
    valid_samples,  # its own deviceId, most likely another device's
    st.dictionaries(st.sampled_from(["timestamp", "heartRate", "steps", "spo2", "seq"]), json_values),
    json_values,
)
batches = st.lists(samples, min_size=1, max_size=12)


def decoded(payload: bytes) -> DecodedBatch:
    return decode_records([record(payload, SEQ0, arrival_ms=T0)])


def outcome(batch: DecodedBatch) -> tuple[list[Any], list[Any]]:
    kept = [(s.sub, s.index, s.device_id, s.event_ms, s.raw, s.telemetry) for s in batch.samples]
    refused = [(r.sub_sequence_number, r.sample_index, r.reason, r.field, r.data) for r in batch.rejects]
    return kept, refused


@given(batches)
def test_every_sample_of_a_batch_is_kept_or_rejected_once(items: list[Any]) -> None:
    payload = json.dumps({"deviceId": "dev-1", "samples": items}).encode()

    batch = decoded(payload)

    positions = sorted([s.sub for s in batch.samples] + [r.sub_sequence_number for r in batch.rejects])
    assert positions == list(range(len(items)))


@given(batches)
def test_the_fast_path_decides_as_the_sample_by_sample_path(items: list[Any]) -> None:
    payload = json.dumps({"deviceId": "dev-1", "samples": items}, separators=(",", ":")).encode()
    fast = outcome(decoded(payload))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(envelope, "_readings", lambda _: None)
        slow = outcome(decoded(payload))

    assert fast == slow


@given(st.dictionaries(st.sampled_from(["deviceId", "samples", "firmware"]), json_values))
def test_arbitrary_envelopes_never_raise(obj: dict[str, Any]) -> None:
    batch = decoded(json.dumps(obj).encode())

    assert len(batch.samples) + len(batch.rejects) >= 1
