"""AWS IoT Data Plane publisher: one ``Publish`` (QoS 1) per message to the Basic Ingest topic
``$aws/rules/{rule}/wearables/{deviceId}/telemetry`` (``service.runtime.ingest_topic``).

For a real IoT Core endpoint (``https://<prefix>-ats.iot.<region>.amazonaws.com``) or the embedded
emulator, where the IoT rule ``rule`` (the template's ``TelemetryRuleName``) forwards to Kinesis: Basic
Ingest runs that rule directly, without the message broker's per-message charge. Messages are sent one
at a time in call order, so per-device order holds. Throttling, internal and 5xx errors and connection
failures are retried with exponential back-off and full jitter up to ``max_attempts`` sends; a message
still refused, or refused for another reason (too large, bad topic), counts as failed. Authorization
failures raise ``PublishError``: no message could succeed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, Protocol

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as EndpointConnectionError

from service.runtime.adapters.kinesis_writer import PublishError
from service.runtime.adapters.pacing import Backoff, TokenBucket
from service.runtime.ingest_topic import DEFAULT_RULE, telemetry_topic
from service.runtime.publishing import Message, PublishReport

RETRYABLE_ERRORS = frozenset(
    {"ThrottlingException", "InternalFailureException", "ServiceUnavailableException"}
)
FATAL_ERRORS = frozenset({"UnauthorizedException", "ForbiddenException", "AccessDeniedException"})


class _Outcome(Enum):
    ACCEPTED = "accepted"
    RETRY = "retry"
    REFUSED = "refused"


class IotDataClient(Protocol):
    """The slice of boto3's ``iot-data`` client this publisher uses."""

    def publish(self, *, topic: str, qos: int, payload: bytes) -> Any: ...


class IotDataPublisher:
    """``Publisher`` through the IoT Data Plane ``Publish`` API (see the module contract)."""

    def __init__(
        self,
        client: IotDataClient,
        *,
        rule: str = DEFAULT_RULE,
        rate: float = 0.0,
        max_attempts: int = 6,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._rule = rule
        self._bucket = TokenBucket(rate, clock=clock)
        self._max_attempts = max_attempts
        self._backoff = backoff or Backoff()
        self._sleep = sleep

    def publish(self, messages: Sequence[Message]) -> PublishReport:
        report = PublishReport()
        for message in messages:
            outcome = _Outcome.RETRY
            attempt = 0
            while outcome is _Outcome.RETRY and attempt < self._max_attempts:
                if attempt:
                    report.retried += 1
                    self._sleep(self._backoff.delay(attempt))
                attempt += 1
                wait = self._bucket.reserve(1)
                if wait > 0:
                    self._sleep(wait)
                outcome = self._send(message)
            if outcome is _Outcome.ACCEPTED:
                report.sent += 1
            else:
                report.failed += 1
        return report

    def close(self) -> None:
        """Nothing is buffered; the boto3 client belongs to the caller."""

    def _send(self, message: Message) -> _Outcome:
        """One Publish call; raises ``PublishError`` when no retry can help."""
        try:
            topic = telemetry_topic(message.device_id, self._rule)
            self._client.publish(topic=topic, qos=1, payload=message.payload)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if code in FATAL_ERRORS:
                raise PublishError(f"IoT Data Publish: {code}") from exc
            return _Outcome.RETRY if code in RETRYABLE_ERRORS or status >= 500 else _Outcome.REFUSED
        except (EndpointConnectionError, HTTPClientError):
            return _Outcome.RETRY
        return _Outcome.ACCEPTED
