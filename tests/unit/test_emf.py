"""The EMF line of a Lambda invocation: valid against the specification's schema, bounded dimensions
only, and the quantities consumer mode's ``/metrics`` gives, counted from the invocation."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from service.core import DEFAULT_CONFIG, Detector, records_from_lambda_event
from service.runtime import emf
from service.runtime.accounting import Kind, RequestCounts, Source
from service.runtime.invocation import EventSpan, Invocation, Mode, WindowFacts, of_batch
from service.runtime.pipeline import Pipeline
from service.runtime.ports import Sink, SinkError
from tests.emf import check_emf
from tests.events import SHARD_ID, episode, interleave, kinesis_event, sample, sequences
from tests.fakes import FakeAlertPublisher, FakeArchive, FakeDeadLetters, FakeStateStore
from tests.unit.test_window import NOW_MS, calm

CONTEXT = {"cold_start": True, "function_name": "vitalstream-processor", "function_request_id": "c0ffee"}
TABLE = "vitalstream-device-state"
REQUESTS = RequestCounts(
    requests={("dynamodb", "BatchGetItem"): 1, ("dynamodb", "UpdateItem"): 3, ("sns", "Publish"): 1},
    item_writes={TABLE: 3},
    item_reads={TABLE: 3},
    capacity_units={(TABLE, Kind.WRITE, Source.REPORTED): 3.0, (TABLE, Kind.READ, Source.ESTIMATED): 1.5},
)


def mixed_event() -> dict[str, Any]:
    """Two devices (one raises TACHYCARDIA), a record that is not JSON and one out of range."""
    good = interleave(calm("watch-calm", 0, 40), episode("watch-racing", 0, 35, 130))
    out_of_range = {**sample("watch-calm", 40, 72), "heartRate": 400}
    return kinesis_event([*good, b"{not json", out_of_range])


def run(event: dict[str, Any], alerts: FakeAlertPublisher | None = None) -> Invocation:
    sinks = (FakeStateStore(), FakeArchive(), alerts or FakeAlertPublisher(), FakeDeadLetters())
    batch = records_from_lambda_event(event)
    outcome = Pipeline(Detector(DEFAULT_CONFIG), *sinks).run(
        SHARD_ID, batch.records, NOW_MS, rejects=batch.rejects
    )
    return of_batch(EventSpan.of(event), outcome)


def only_line(invocation: Invocation, service: str = "vitalstream") -> dict[str, Any]:
    (line,) = emf.invocation_lines(
        invocation, namespace="VitalStream", service=service, context=CONTEXT, now_ms=NOW_MS
    )
    document: dict[str, Any] = json.loads(line)
    check_emf(document)
    return document


def test_one_valid_line_with_powertools_shape_and_bounded_dimensions() -> None:
    event = mixed_event()
    invocation = Invocation(
        Mode.WINDOW,
        EventSpan.of(event),
        duration_ms=42,
        requests=REQUESTS,
        result=run(event).result,
        window=WindowFacts(
            state_bytes=2_048, devices_loaded=2, devices_written=0, devices_queued=0, closed=False
        ),
    )

    line = only_line(invocation)

    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert line["_aws"]["Timestamp"] == NOW_MS
    assert directive["Namespace"] == "VitalStream"
    assert directive["Dimensions"] == [["service", "mode"]]
    assert (line["service"], line["mode"]) == ("vitalstream", "window")
    names = {m["Name"] for m in directive["Metrics"]}
    assert not any("watch" in name for name in names)  # never a device id in a metric's identity
    assert "watch-calm" not in json.dumps(line)
    seqs = sequences(event)
    assert (line["shard_id"], line["first_sequence"], line["last_sequence"], line["batch_size"]) == (
        SHARD_ID,
        seqs[0],
        seqs[-1],
        len(seqs),
    )
    assert (line["function_request_id"], line["cold_start"]) == ("c0ffee", True)
    assert {"shard_id", "function_request_id"}.isdisjoint(names)  # metadata, not metrics


def test_the_quantities_of_consumer_mode() -> None:
    event = mixed_event()
    invocation = run(event)
    invocation = Invocation(Mode.BATCH, invocation.span, 7, REQUESTS, invocation.result)

    line = only_line(invocation)

    units = {m["Name"]: m["Unit"] for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert (line["KinesisRecords"], line["Samples_processed"], line["Samples_rejected"]) == (18, 16, 2)
    assert (line["Samples_duplicate"], line["Samples_retried"], line["LateSamples"]) == (0, 0, 0)
    assert (line["Rejects_invalid_json"], line["Rejects_out_of_range"]) == (1, 1)
    assert (line["Alerts"], line["Alerts_TACHYCARDIA"]) == (1, 1)
    assert "Alerts_BRADYCARDIA" not in line  # keyed metrics only when above 0
    assert len(line["SinkLatency"]) == 16
    assert units["SinkLatency"] == units["DetectionLatency"] == "Milliseconds"
    # detected at t=30 s of the episode; NOW_MS is T0 + 120 s
    assert line["DetectionLatency"] == [90_000]
    assert line["AwsRequests"] == 5
    assert (line["AwsRequests_dynamodb_UpdateItem"], line["AwsRequests_sns_Publish"]) == (3, 1)
    assert (line[f"ItemWrites_{TABLE}"], line[f"ItemReads_{TABLE}"]) == (3, 3)
    assert (line[f"WriteCapacityUnits_{TABLE}"], line[f"ReadCapacityUnits_{TABLE}"]) == (3.0, 1.5)
    assert (line["InvocationDuration"], units["InvocationDuration"]) == (7, "Milliseconds")
    assert (line["Invocations"], line["InvocationErrors"], line["SinkErrors"]) == (1, 0, 0)
    assert "WindowStateSize" not in line  # per-batch mode has no window


def test_a_device_whose_alert_failed_counts_as_retried_with_its_sink_error() -> None:
    invocation = run(mixed_event(), FakeAlertPublisher(down=True))

    line = only_line(invocation)

    assert line["Samples_retried"] == 8  # watch-racing's samples come again
    assert line["Samples_processed"] == 8  # watch-calm's landed
    assert line["Alerts"] == 0
    assert "DetectionLatency" not in line
    assert (line["SinkErrors"], line["SinkErrors_alerts"]) == (1, 1)
    assert line["BatchItemFailures"] == 1


def test_an_invocation_that_raised_still_counts_and_says_so() -> None:
    denied = SinkError(Sink.DEVICE_STATE, "AccessDeniedException", TABLE, permanent=True)
    invocation = Invocation(
        Mode.WINDOW, EventSpan(SHARD_ID, None, None, 0), errors=(denied,), error="WindowCommitError"
    )

    line = only_line(invocation)

    assert (line["InvocationErrors"], line["SinkErrors_device_state"], line["Samples_processed"]) == (1, 1, 0)
    assert "first_sequence" not in line  # an empty event has no range: left out, never null


def test_window_state_size_is_reported_in_bytes() -> None:
    facts = WindowFacts(
        state_bytes=900_000,
        devices_loaded=5,
        devices_written=5,
        devices_queued=3,
        closed=True,
        devices_adopted=7,
        devices_handed_off=4,
    )
    line = only_line(Invocation(Mode.WINDOW, EventSpan(SHARD_ID, "1", "2", 2), window=facts))
    units = {m["Name"]: m["Unit"] for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert (line["WindowStateSize"], units["WindowStateSize"]) == (900_000, "Bytes")
    assert (line["WindowDevicesLoaded"], line["WindowDevicesWritten"], line["WindowsClosed"]) == (5, 5, 1)
    assert line["WindowDevicesQueued"] == 3
    assert (line["WindowDevicesAdopted"], line["WindowDevicesHandedOff"]) == (7, 4)


def test_latency_arrays_keep_at_most_100_values_with_the_extremes() -> None:
    values = [float(v) for v in range(1_000, 0, -1)]
    kept = emf.bounded(values)
    assert len(kept) == 100
    assert (kept[0], kept[-1]) == (1.0, 1_000.0)
    assert list(kept) == sorted(kept)
    assert kept[49] == pytest.approx(500, abs=10)  # the median stays the median
    assert emf.bounded([3.0, 1.0]) == (3.0, 1.0)


def test_a_large_batch_stays_within_the_limits() -> None:
    items = [sample(f"watch-{i:03d}", t, 70) for i in range(60) for t in range(0, 20, 5)]
    line = only_line(run(kinesis_event(items)))
    assert line["Samples_processed"] == 240
    assert len(line["SinkLatency"]) == 100


def test_past_100_metrics_each_line_is_complete_and_valid() -> None:
    metrics = [emf.Metric(f"M{i}", emf.Unit.COUNT, i) for i in range(150)]
    documents = emf.documents(
        metrics, namespace="VitalStream", dimensions={"service": "svc", "mode": "batch"}, timestamp_ms=1
    )
    assert [len(d["_aws"]["CloudWatchMetrics"][0]["Metrics"]) for d in documents] == [100, 50]
    for document in documents:
        check_emf(document)
    assert documents[1]["M149"] == 149


@pytest.mark.parametrize(
    "broken",
    [
        lambda d: d["_aws"].pop("Timestamp"),
        lambda d: d["_aws"]["CloudWatchMetrics"][0].update(Dimensions=[]),
        lambda d: d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0].update(Unit="Furlongs"),
        lambda d: d.update(Invocations="one"),
        lambda d: d.pop("service"),
        lambda d: d.update(SinkLatency=list(range(101))),
    ],
)
def test_the_checker_refuses_what_the_specification_forbids(broken: Any) -> None:
    document = only_line(run(mixed_event()))
    broken(document)
    with pytest.raises((jsonschema.ValidationError, AssertionError, KeyError)):
        check_emf(document)
