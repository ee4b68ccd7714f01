"""``KinesisPublisher`` against a scripted fake client: batching limits, retry of failed entries only,
per-device order, back-off bounds and the rate limit, all without sleeping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from service.runtime.adapters.kinesis_writer import MAX_BYTES_PER_REQUEST, KinesisPublisher, PublishError
from service.runtime.adapters.pacing import Backoff, TokenBucket
from service.runtime.publishing import Message

THROTTLED = "ProvisionedThroughputExceededException"
Entry = tuple[str, bytes]  # partition key, data
Script = Callable[[int, list[Entry]], list[str | None] | Exception]


class FakeKinesis:
    """Records every PutRecords request; ``script(call_number, entries)`` returns per-entry error codes
    (None = accepted) or an exception to raise. Default: accept everything."""

    def __init__(self, script: Script | None = None) -> None:
        self.requests: list[list[Entry]] = []
        self.accepted: list[Entry] = []
        self._script = script or (lambda _n, entries: [None] * len(entries))

    def put_records(self, *, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        entries = [(r["PartitionKey"], r["Data"]) for r in Records]
        self.requests.append(entries)
        outcome = self._script(len(self.requests), entries)
        if isinstance(outcome, Exception):
            raise outcome
        self.accepted += [entry for entry, error in zip(entries, outcome, strict=True) if error is None]
        records = [
            {"ErrorCode": error, "ErrorMessage": "x"} if error else {"SequenceNumber": "1"}
            for error in outcome
        ]
        return {"FailedRecordCount": sum(e is not None for e in outcome), "Records": records}


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def message(device: str, n: int, size: int = 0) -> Message:
    payload = f'{{"deviceId":"{device}","seq":{n}}}'.encode() + b" " * size
    return Message(device_id=device, payload=payload, event_ms=n, send_ms=n)


def publisher(client: FakeKinesis, fake_time: FakeTime, **kwargs: Any) -> KinesisPublisher:
    kwargs.setdefault("backoff", Backoff(unit_random=lambda: 1.0))
    return KinesisPublisher(client, "telemetry", sleep=fake_time.sleep, clock=fake_time.clock, **kwargs)  # type: ignore[arg-type]


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutRecords"
    )


def test_requests_hold_at_most_500_records_and_partition_key_is_the_device() -> None:
    client, clock = FakeKinesis(), FakeTime()
    messages = [message(f"dev-{i}", 0) for i in range(1200)]
    report = publisher(client, clock).publish(messages)
    assert [len(r) for r in client.requests] == [500, 500, 200]
    assert sorted(client.accepted) == sorted((m.device_id, m.payload) for m in messages)
    assert (report.sent, report.retried, report.failed) == (1200, 0, 0)


def test_requests_stay_under_5_mib_and_an_oversized_record_fails_unsent() -> None:
    client, clock = FakeKinesis(), FakeTime()
    big = [message(f"dev-{i}", 0, size=900 * 1024) for i in range(12)]
    too_big = message("dev-huge", 0, size=1024 * 1024)
    report = publisher(client, clock).publish([*big, too_big])
    assert all(sum(len(k) + len(d) for k, d in r) <= MAX_BYTES_PER_REQUEST for r in client.requests)
    assert len(client.requests) == 3
    assert "dev-huge" not in {k for r in client.requests for k, _ in r}
    assert (report.sent, report.failed) == (12, 1)


def test_only_the_failed_entries_are_sent_again() -> None:
    def script(call: int, entries: list[Entry]) -> list[str | None]:
        return [THROTTLED if call == 1 and i in (1, 3) else None for i in range(len(entries))]

    client, clock = FakeKinesis(script), FakeTime()
    messages = [message(f"dev-{i}", 0) for i in range(5)]
    report = publisher(client, clock).publish(messages)
    assert [k for k, _ in client.requests[1]] == ["dev-1", "dev-3"]
    assert len(client.accepted) == len(set(client.accepted)) == 5
    assert (report.sent, report.retried, report.failed) == (5, 2, 0)


def test_a_device_never_overtakes_its_failed_message() -> None:
    failed_once: set[Entry] = set()

    def script(_call: int, entries: list[Entry]) -> list[str | None]:
        errors: list[str | None] = []
        for entry in entries:
            first_try = entry[0] == "dev-a" and entry not in failed_once
            failed_once.add(entry)
            errors.append(THROTTLED if first_try else None)
        return errors

    client, clock = FakeKinesis(script), FakeTime()
    messages = [message(d, n) for n in range(4) for d in ("dev-a", "dev-b")]
    report = publisher(client, clock).publish(messages)
    assert all(len({k for k, _ in r}) == len(r) for r in client.requests), (
        "one message per device per request"
    )
    for device in ("dev-a", "dev-b"):
        sent = [d for k, d in client.accepted if k == device]
        assert sent == [m.payload for m in messages if m.device_id == device]
    assert (report.sent, report.retried) == (8, 4)


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap() -> None:
    client, clock = (
        FakeKinesis(lambda call, e: [THROTTLED] * len(e) if call <= 8 else [None] * len(e)),
        FakeTime(),
    )
    publisher(client, clock, backoff=Backoff(base_s=0.1, cap_s=1.0, unit_random=lambda: 1.0)).publish(
        [message("dev-a", 0)]
    )
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0])
    draws = iter([0.0, 0.5, 0.999])
    jittered = Backoff(base_s=0.1, cap_s=1.0, unit_random=lambda: next(draws))
    assert [jittered.delay(3) for _ in range(3)] == pytest.approx([0.0, 0.2, 0.3996])


def test_retry_budget_and_non_retryable_entry_errors_count_as_failed() -> None:
    def script(_call: int, entries: list[Entry]) -> list[str | None]:
        return [THROTTLED if k == "dev-a" else "KMSAccessDeniedException" for k, _ in entries]

    client, clock = FakeKinesis(script), FakeTime()
    report = publisher(client, clock, max_attempts=3).publish([message("dev-a", 0), message("dev-b", 0)])
    assert [k for r in client.requests for k, _ in r].count("dev-a") == 3
    assert [k for r in client.requests for k, _ in r].count("dev-b") == 1
    assert (report.sent, report.retried, report.failed) == (0, 2, 2)


def test_throttled_or_5xx_calls_are_retried_whole_and_other_call_errors_raise() -> None:
    outcomes: list[Exception] = [client_error(THROTTLED), client_error("InternalFailure", 500)]
    client = FakeKinesis(lambda call, e: outcomes[call - 1] if call <= 2 else [None] * len(e))
    report = publisher(client, FakeTime()).publish([message("dev-a", 0), message("dev-b", 0)])
    assert (report.sent, report.retried, len(client.requests)) == (2, 4, 3)

    missing = FakeKinesis(lambda _call, _e: client_error("ResourceNotFoundException"))
    with pytest.raises(PublishError):
        publisher(missing, FakeTime()).publish([message("dev-a", 0)])


def test_token_bucket_allows_a_burst_then_makes_callers_wait_and_repays_debt() -> None:
    clock = FakeTime()
    bucket = TokenBucket(rate=10, burst=10, clock=clock.clock)
    assert bucket.reserve(10) == 0
    assert bucket.reserve(5) == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.reserve(5) == pytest.approx(0.5)  # the debt of 5 was repaid by the 0.5 s just waited
    clock.now += 100
    assert bucket.reserve(10) == 0  # refill is capped at the burst
    assert bucket.reserve(30) == pytest.approx(3.0)
    assert TokenBucket(rate=0).reserve(10**6) == 0


def test_rate_limits_the_publisher_over_time() -> None:
    client, clock = FakeKinesis(), FakeTime()
    report = publisher(client, clock, rate=100).publish([message(f"dev-{i}", 0) for i in range(500)])
    assert report.sent == 500
    assert max(len(r) for r in client.requests) == 100
    assert clock.now == pytest.approx(4.0)  # 100 at once, then 400 more at 100/s
