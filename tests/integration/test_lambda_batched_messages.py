"""The Lambda handler over batched messages, against real AWS APIs: every sample archived once, across
redelivery and a partial failure that fails a message from its failed sample on."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambda_shim import handler as shim
from lambda_shim.bootstrap import build_pipeline
from tests.events import batched, episode, kinesis_event, sample, tail
from tests.integration.conftest import AwsStack
from tests.integration.test_lambda_handler import Invoke, archived_lines, invoke, state_item

pytestmark = pytest.mark.integration
__all__ = ["invoke"]  # the fixture


def batched_event() -> dict[str, Any]:
    """A calm device in two 12-sample messages and a racing one whose episode spans two messages."""
    calm = batched([sample("watch-calm", t, 72, steps=3, fw="2.4.1") for t in range(0, 120, 5)], 12)
    racing = batched(episode("watch-racing", 0, 55, 130), 6)
    return kinesis_event([calm[0], racing[0], racing[1], calm[1]])


def samples_archived(aws: AwsStack) -> Counter[tuple[str, str, int]]:
    return Counter(
        (line["deviceId"], line["timestamp"], line["subSequenceNumber"]) for line in archived_lines(aws)
    )


def test_each_sample_of_a_batched_message_is_archived_once_and_a_redelivery_changes_nothing(
    aws: AwsStack, invoke: Invoke
) -> None:
    event = batched_event()

    assert invoke(event) == []
    archived = samples_archived(aws)
    assert (len(archived), max(archived.values())) == (36, 1)
    alerts = aws.drain(aws.alert_queue_url)
    assert [(a["body"]["deviceId"], a["body"]["type"]) for a in alerts] == [("watch-racing", "TACHYCARDIA")]
    assert "publishedAt" in alerts[0]["body"]
    lines = archived_lines(aws)
    assert {line["fw"] for line in lines if line["deviceId"] == "watch-calm"} == {"2.4.1"}
    state = aws.scan(aws.settings.device_state_table)

    assert invoke(event) == []

    assert samples_archived(aws) == archived
    assert aws.scan(aws.settings.device_state_table) == state
    assert aws.drain(aws.alert_queue_url) == []
    assert aws.drain(aws.settings.dead_letter_queue_url) == []


def test_a_bad_sample_in_a_batch_is_one_dead_letter_with_its_index(aws: AwsStack, invoke: Invoke) -> None:
    samples = [sample("watch-x", t, 70) for t in range(0, 60, 5)]
    samples[5]["heartRate"] = 999

    assert invoke(kinesis_event(batched(samples, 12))) == []

    assert len(archived_lines(aws)) == 11
    (letter,) = [m["body"] for m in aws.drain(aws.settings.dead_letter_queue_url)]
    assert (letter["reason"], letter["sampleIndex"], letter["deviceId"]) == ("out_of_range", 5, "watch-x")


def test_a_failed_device_retries_its_messages_and_every_sample_lands_once(
    aws: AwsStack, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    faulty = {"watch-racing"}

    def refuse_publish(params: dict[str, Any], **_: Any) -> None:
        if params["MessageAttributes"]["deviceId"]["StringValue"] in faulty:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "Publish")

    aws.session.events.register("before-parameter-build.sns.Publish", refuse_publish)
    monkeypatch.setattr(shim, "_runtime", lambda: build_pipeline(aws.settings, aws.session))
    event = batched_event()
    racing_first = event["Records"][1]["kinesis"]["sequenceNumber"]

    failures = invoke(event)

    assert failures == [racing_first]
    assert state_item(aws, "watch-racing") is None
    assert {line["deviceId"] for line in archived_lines(aws)} == {"watch-calm"}

    faulty.clear()
    assert invoke(tail(event, racing_first)) == []

    archived = samples_archived(aws)
    assert (len(archived), max(archived.values())) == (36, 1)
    alerts = aws.drain(aws.alert_queue_url)
    assert [(a["body"]["deviceId"], a["body"]["type"]) for a in alerts] == [("watch-racing", "TACHYCARDIA")]
