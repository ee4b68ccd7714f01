"""Properties of decoding and enrichment over generated inputs."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from service.core import Reject, RejectReason, iso_ms
from service.core.telemetry import (
    TELEMETRY_DECODER,
    TimestampParser,
    check_device_id,
    explain_object,
    parse_rfc3339_ms,
)
from service.runtime.bridge_routing import route
from service.runtime.ingest_topic import telemetry_topic
from tests.unit.builders import SEQ0, T0, record, run

settings.register_profile("vitalstream", max_examples=200, deadline=None)
settings.load_profile("vitalstream")

device_ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,128}", fullmatch=True)
moments = st.integers(min_value=0, max_value=4_102_444_800_000)  # 1970 .. 2100
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
valid_samples = st.fixed_dictionaries(
    {
        "deviceId": device_ids,
        "timestamp": moments.map(iso_ms),
        "heartRate": st.integers(0, 300),
        "steps": st.integers(0, 100_000),
    },
    optional={
        "spo2": st.integers(50, 100),
        "skinTemp": st.floats(20, 45),
        "battery": st.integers(0, 100),
        "seq": st.integers(0, 2**63 - 1),
        "firmware": st.text(max_size=10),
        "extra": json_values,
    },
)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    result = run([record(data, SEQ0)])

    assert len(result.processed) + len(result.rejects) == 1


_FIELDS = st.sampled_from(["deviceId", "timestamp", "heartRate", "steps", "spo2", "seq"])


@given(st.dictionaries(_FIELDS, json_values))
def test_arbitrary_objects_never_raise(obj: dict[str, Any]) -> None:
    result = run([record(json.dumps(obj).encode(), SEQ0)])

    assert len(result.processed) + len(result.rejects) == 1


@given(valid_samples)
def test_valid_samples_round_trip_through_enrichment(sample: dict[str, Any]) -> None:
    result = run([record(json.dumps(sample).encode(), SEQ0)], now_ms=T0)

    assert result.rejects == []
    [processed] = result.processed
    line = json.loads(processed.to_json())
    assert {k: line[k] for k in sample} == sample
    assert line == {**sample, **processed.enrichment()}


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "deviceId": st.one_of(device_ids, json_values),
            "timestamp": st.one_of(moments.map(iso_ms), st.text(max_size=30), json_values),
            "heartRate": st.one_of(st.integers(-5, 305), json_values),
            "steps": st.one_of(st.integers(-5, 10), json_values),
            "spo2": st.one_of(st.integers(45, 105), json_values),
            "skinTemp": json_values,
            "battery": st.one_of(st.integers(-5, 105), json_values),
            "seq": st.one_of(st.integers(-5, 2**64), json_values),
        },
    )
)
def test_fast_decoder_and_explainer_agree(obj: dict[str, Any]) -> None:
    data = json.dumps(obj).encode()
    try:
        telemetry = TELEMETRY_DECODER.decode(data)
    except Exception:  # any refusal by the fast path must be explained
        fast_ok = False
    else:
        fast_ok = check_device_id(telemetry.deviceId) and parse_rfc3339_ms(telemetry.timestamp) is not None

    assert fast_ok == (explain_object(obj) is None)


@given(moments)
def test_canonical_and_general_timestamp_parsers_agree(epoch_ms: int) -> None:
    text = iso_ms(epoch_ms)

    assert TimestampParser().event_ms(text) == parse_rfc3339_ms(text) == epoch_ms


# Bytes that are never valid UTF-8 wherever they stand: a lone continuation byte, a truncated
# two-byte lead, an overlong encoding, a surrogate, a code point above U+10FFFF, and 0xFF.
_NOT_UTF8 = st.sampled_from([b"\x80", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xff"])


@given(valid_samples, st.data())
def test_invalid_utf8_anywhere_is_invalid_utf8(sample: dict[str, Any], data: st.DataObject) -> None:
    # inside a value, inside a key, between tokens, in an unknown field the decoder skips: all the same
    text = json.dumps({**sample, "note": "ok"}, separators=(",", ":")).encode()
    position = data.draw(st.integers(0, len(text)), label="position")
    payload = text[:position] + data.draw(_NOT_UTF8, label="bad") + text[position:]

    (reject,) = run([record(payload, SEQ0)]).rejects
    routed = route(telemetry_topic(sample["deviceId"]), payload, arrival_ms=T0, sequence_number="1")

    assert reject.reason is RejectReason.INVALID_UTF8
    assert isinstance(routed, Reject)
    assert routed.reason is RejectReason.INVALID_UTF8
