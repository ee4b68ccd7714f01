"""Sink errors: classification by error code and HTTP status, and adapters that wrap every call error.

The adapters are real boto3 clients whose requests never leave the process: a ``before-send`` hook
answers each one (an AWS error document, or a raised ``EndpointConnectionError``), as botocore's
own tests do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from service.core import Alert, AnomalyType, DeviceState, ProcessedRecord, Reject, Severity
from service.runtime.adapters._errors import classify, sink_error
from service.runtime.adapters.dead_letter import S3DeadLetterStore, SqsDeadLetterStore
from service.runtime.adapters.dynamodb_state import DynamoDeviceStateStore
from service.runtime.adapters.s3_archive import S3Archive
from service.runtime.adapters.s3_snapshots import S3SnapshotStore
from service.runtime.adapters.sns_alerts import SnsAlertPublisher
from service.runtime.ports import Access, FailedDevices, FailedRejects, Sink, SinkError, SnapshotMissingError
from tests.unit.builders import records as kinesis_records
from tests.unit.builders import run, telemetry


def client_error(code: str, status: int | None, operation: str = "PutObject") -> ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": "any text at all"}}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, operation)  # type: ignore[arg-type]


TRANSIENT = [
    ("ThrottlingException", 400),
    ("ProvisionedThroughputExceededException", 400),
    ("RequestLimitExceeded", 400),
    ("SlowDown", 503),
    ("TooManyRequestsException", 429),
    ("Throttled", 429),  # SNS
    ("RequestThrottled", 403),  # SQS: the code decides, not the status
    ("KMSThrottlingException", 400),
    ("InternalServerError", 500),
    ("InternalFailure", 500),
    ("ServiceUnavailable", 503),
    ("SomethingNew", 502),  # any 5xx
    ("SomethingNew", 429),
    ("SomethingNew", None),  # no status, unknown code: retry
]
PERMANENT = [
    ("AccessDenied", 403),
    ("AccessDeniedException", 400),
    ("AuthorizationError", 403),
    ("UnauthorizedOperation", 403),
    ("ValidationException", 400),
    ("ResourceNotFoundException", 400),
    ("NoSuchBucket", 404),
    ("NotFound", 404),
    ("KMS.DisabledException", 400),
    ("KMSAccessDeniedException", 400),
    ("InvalidParameter", 400),
    ("InvalidParameterValue", 400),
    ("AccessDenied", None),  # known code, no status
    ("SomethingNew", 400),  # any other 4xx
    ("", 403),  # a HEAD's bare status
]


@pytest.mark.parametrize(("code", "status"), TRANSIENT)
def test_throttling_5xx_and_unknown_answers_are_transient(code: str, status: int | None) -> None:
    classified = classify(client_error(code, status))
    assert classified.permanent is False
    assert classified.code == (code or str(status))


@pytest.mark.parametrize(("code", "status"), PERMANENT)
def test_refusals_and_missing_resources_are_permanent(code: str, status: int | None) -> None:
    classified = classify(client_error(code, status))
    assert classified.permanent is True
    assert classified.code == (code or str(status))


def test_the_message_text_never_decides() -> None:
    throttled = ClientError(
        {"Error": {"Code": "AccessDenied", "Message": "Rate exceeded, slow down"}},  # type: ignore[typeddict-item]
        "PutObject",
    )
    assert classify(throttled).permanent is True


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), False),
        (ConnectTimeoutError(endpoint_url="http://127.0.0.1:9"), False),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:9"), False),
        (ConnectionResetError(), False),
        (NoCredentialsError(), True),
        (ParamValidationError(report="Bucket is required"), True),
    ],
)
def test_sdk_and_network_errors_by_type(error: Exception, permanent: bool) -> None:
    classified = classify(error)
    assert classified.permanent is permanent
    assert classified.code == type(error).__name__


def test_a_sink_error_names_sink_code_resource_and_is_chained() -> None:
    cause = client_error("AccessDenied", 403)
    error = sink_error(Sink.ARCHIVE, "archive-bucket", cause)
    assert (error.sink, error.code, error.resource, error.permanent) == (
        Sink.ARCHIVE,
        "AccessDenied",
        "archive-bucket",
        True,
    )
    assert error.cause == (Sink.ARCHIVE, "AccessDenied", "archive-bucket")
    assert error.__cause__ is cause


# --- adapters on real clients, answered in-process ------------------------------------------------

Answer = Callable[..., Any]  # a before-send handler: (request=..., **kwargs)


def error_answer(code: str, status: int) -> Answer:
    """An AWS error document in the service's protocol (S3 and SNS: XML; DynamoDB and SQS: JSON)."""

    def answer(request: Any, **_: Any) -> AWSResponse:
        if request.headers.get("X-Amz-Target"):  # DynamoDB, SQS: JSON
            body = b'{"__type": "%s", "message": "no"}' % code.encode()
        elif request.method == "POST":  # SNS: query protocol
            body = (
                b"<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>no</Message>"
                b"</Error></ErrorResponse>" % code.encode()
            )
        else:  # S3: REST-XML
            body = b"<Error><Code>%s</Code><Message>no</Message></Error>" % code.encode()
        return AWSResponse(request.url, status, {}, _Raw(body))

    return answer


def unreachable(request: Any, **_: Any) -> None:
    raise EndpointConnectionError(endpoint_url=request.url)


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def answered_client(service: str, answer: Answer) -> Any:
    client = boto3.client(
        service,  # type: ignore[call-overload]
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",  # never reached: the hook answers first
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 1}, s3={"addressing_style": "path"}),
    )
    client.meta.events.register("before-send", answer)
    return client


def batch() -> tuple[list[ProcessedRecord], list[Reject]]:
    result = run(kinesis_records([telemetry(deviceId="watch-a"), b"{not json"]))
    return result.processed, result.rejects


def records() -> list[ProcessedRecord]:
    return batch()[0]


def test_an_unreachable_s3_during_an_archive_upload_is_a_transient_sink_error_chained() -> None:
    archive = S3Archive(answered_client("s3", unreachable), "archive-bucket")
    with pytest.raises(SinkError) as raised:
        archive.write_file("shardId-0", "1", 0, records())
    error = raised.value
    assert (error.sink, error.code, error.resource, error.permanent) == (
        Sink.ARCHIVE,
        "EndpointConnectionError",
        "archive-bucket",
        False,
    )
    assert isinstance(error.__cause__, EndpointConnectionError)


def test_an_unreachable_s3_during_a_snapshot_upload_is_a_sink_error_chained() -> None:
    snapshots = S3SnapshotStore(answered_client("s3", unreachable), "archive-bucket")
    with pytest.raises(SinkError) as raised:
        snapshots.put("shardId-0", "1", b"blob")
    assert raised.value.sink is Sink.SNAPSHOTS
    assert isinstance(raised.value.__cause__, EndpointConnectionError)


def test_access_denied_on_an_archive_upload_is_permanent() -> None:
    archive = S3Archive(answered_client("s3", error_answer("AccessDenied", 403)), "archive-bucket")
    with pytest.raises(SinkError) as raised:
        archive.write_file("shardId-0", "1", 0, records())
    assert (raised.value.code, raised.value.permanent) == ("AccessDenied", True)
    assert isinstance(raised.value.__cause__, ClientError)


def test_a_missing_snapshot_is_its_own_permanent_error() -> None:
    snapshots = S3SnapshotStore(answered_client("s3", error_answer("NoSuchKey", 404)), "archive-bucket")
    with pytest.raises(SnapshotMissingError) as raised:
        snapshots.get("snapshots/shard=shardId-0/1.msgpack.gz")
    assert raised.value.permanent is True
    assert raised.value.sink is Sink.SNAPSHOTS


def alert() -> Alert:
    return Alert(
        alertId="a-1",
        deviceId="watch-a",
        type=AnomalyType.TACHYCARDIA,
        severity=Severity.HIGH,
        startedAt="2026-11-28T02:00:00.000Z",
        detectedAt="2026-11-28T02:00:30.000Z",
        value=130,
        message="tachycardia at rest",
        threshold=120,
    )


@pytest.mark.parametrize(
    ("answer", "code", "permanent"),
    [
        (unreachable, "EndpointConnectionError", False),
        (error_answer("AccessDeniedException", 400), "AccessDeniedException", True),
    ],
)
def test_the_alert_publisher_keeps_the_cause_of_each_failed_device(
    answer: Answer, code: str, permanent: bool
) -> None:
    publisher = SnsAlertPublisher(
        answered_client("dynamodb", answer), "alert-history", answered_client("sns", answer), "arn:topic"
    )
    failed = publisher.publish([alert()])
    assert failed == {"watch-a"}
    assert isinstance(failed, FailedDevices)
    (cause,) = failed.causes
    assert (cause.sink, cause.code, cause.resource, cause.permanent) == (
        Sink.ALERTS,
        code,
        "alert-history",
        permanent,
    )
    assert cause.__cause__ is not None


def test_the_device_table_keeps_the_cause_of_failed_reads_and_writes() -> None:
    store = DynamoDeviceStateStore(answered_client("dynamodb", unreachable), "state-table", read_attempts=1)
    loaded = store.load(["watch-a"])
    assert loaded.unavailable == {"watch-a"}
    assert [(c.sink, c.code, c.resource, c.access) for c in loaded.causes] == [
        (Sink.DEVICE_STATE, "EndpointConnectionError", "state-table", Access.READ)
    ]
    (record,) = records()
    state = DeviceState(last_shard=record.shard_id, last_sequence=record.sequence_number)
    failed = store.save({"watch-a": state}, {"watch-a": record})
    assert failed == {"watch-a"}
    assert isinstance(failed, FailedDevices)
    assert [(c.code, c.permanent, c.access) for c in failed.causes] == [
        ("EndpointConnectionError", False, Access.WRITE)
    ]


def reject() -> Reject:
    return batch()[1][0]


def test_dead_letter_stores_keep_their_causes() -> None:
    s3 = S3DeadLetterStore(answered_client("s3", error_answer("AccessDenied", 403)), "dead-bucket")
    failed = s3.put([reject()])
    assert isinstance(failed, FailedRejects)
    assert [(c.sink, c.code, c.resource, c.permanent) for c in failed.causes] == [
        (Sink.DEAD_LETTER, "AccessDenied", "dead-bucket", True)
    ]
    queue = SqsDeadLetterStore(answered_client("sqs", unreachable), "http://queue/dead.fifo")
    with pytest.raises(SinkError) as raised:
        queue.put([reject()])
    assert (raised.value.code, raised.value.resource) == ("EndpointConnectionError", "http://queue/dead.fifo")
    assert isinstance(raised.value.__cause__, EndpointConnectionError)
